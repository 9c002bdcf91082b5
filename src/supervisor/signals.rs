//! Which signals the entrypoint collects, what each one means, and a `signalfd` stream of them.
//!
//! A namespace init gets no default actions: a signal it neither blocks nor handles is dropped
//! (pid1.md §1). So every asynchronous signal is blocked in all threads (inherited from `main`,
//! see [`block_signals`]) and read from a `signalfd` by one task. The synchronous ones stay
//! unblocked: blocking them would hide our own crashes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::Context;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use tokio::io::unix::AsyncFd;

use super::OriginalMask;

/// Raised by the CPU for the faulting thread; never blocked, so they keep their default action.
const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGBUS,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
];

/// What the supervisor does with a collected signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// SIGCHLD: run the reap loop.
    Reap,
    /// SIGTERM/SIGINT: forward, then stop (grace, SIGKILL).
    Stop,
    /// Forward to the child's process group.
    Forward,
    /// Job-control signals (SIGTSTP/TTIN/TTOU) are dropped, like catatonit does. They come from
    /// a terminal and mean "pause the foreground job"; a service behind PID 1 has no shell to
    /// resume it, and TTIN/TTOU are only meaningful to the process the kernel raised them for.
    /// Blocking them also means the entrypoint itself is never stopped by them (tini ignores
    /// TTIN/TTOU for the same reason). SIGSTOP/SIGCONT sent to the child directly still work.
    Drop,
}

pub(super) fn action(sig: i32) -> Action {
    match sig {
        libc::SIGCHLD => Action::Reap,
        libc::SIGTERM | libc::SIGINT => Action::Stop,
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Action::Drop,
        _ => Action::Forward,
    }
}

/// Every signal except the synchronous ones (SIGKILL/SIGSTOP cannot be blocked anyway).
/// Includes the real-time signals; glibc leaves out the two it uses internally.
fn collected() -> SigSet {
    let mut set = SigSet::all();
    for s in SYNCHRONOUS {
        set.remove(s);
    }
    set
}

/// Block every collected signal in the calling thread and return the mask it had before.
pub fn block_signals() -> anyhow::Result<OriginalMask> {
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&collected()), Some(&mut old))
        .context("pthread_sigmask(SIG_BLOCK)")?;
    Ok(OriginalMask(old))
}

/// A name for logs: `SIGTERM`, or `signal 40` for real-time signals.
pub(super) fn name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) => format!("signal {sig}"),
    }
}

/// The collected signals, read from a non-blocking `signalfd` registered with tokio. Signals
/// sent to the process are pending process-wide (every thread blocks them), and a `signalfd`
/// read returns those too, whichever thread reads it.
pub(super) struct SignalStream {
    fd: AsyncFd<OwnedFd>,
}

impl SignalStream {
    pub(super) fn new() -> anyhow::Result<Self> {
        let set = collected();
        // SAFETY: plain syscall on a valid sigset; the returned fd is owned below.
        let raw =
            unsafe { libc::signalfd(-1, set.as_ref(), libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("signalfd");
        }
        // SAFETY: `raw` is a fresh fd we own.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the fd is owned by the AsyncFd and neither closed nor replaced while registered.
        let fd =
            unsafe { AsyncFd::register(owned) }.context("registering the signalfd with tokio")?;
        Ok(SignalStream { fd })
    }

    /// The next signal: (number, sender pid as the kernel reports it).
    pub(super) async fn next(&self) -> io::Result<(i32, u32)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: all-zero is a valid signalfd_siginfo.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: reading at most `size` bytes into `info`.
                let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                if n as usize != size {
                    return Err(io::Error::other(format!("short signalfd read ({n} bytes)")));
                }
                Ok((info.ssi_signo as i32, info.ssi_pid))
            });
            match res {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_signals_are_not_collected() {
        let set = collected();
        for s in SYNCHRONOUS {
            assert!(!set.contains(s), "{s} must keep its default action");
        }
        for s in [
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGCHLD,
            Signal::SIGWINCH,
            Signal::SIGUSR2,
            Signal::SIGPIPE,
        ] {
            assert!(set.contains(s), "{s} must be collected");
        }
    }

    #[test]
    fn actions() {
        assert_eq!(action(libc::SIGCHLD), Action::Reap);
        assert_eq!(action(libc::SIGTERM), Action::Stop);
        assert_eq!(action(libc::SIGINT), Action::Stop);
        assert_eq!(action(libc::SIGTSTP), Action::Drop);
        assert_eq!(action(libc::SIGHUP), Action::Forward);
        assert_eq!(action(libc::SIGRTMIN() + 3), Action::Forward);
        assert_eq!(name(libc::SIGUSR1), "SIGUSR1");
    }
}
