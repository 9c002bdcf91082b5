//! The one reaper: `waitpid(-1, WNOHANG)` until nothing is left, on every SIGCHLD, and route each
//! status to whoever waits for that pid (the main child). Everything else
//! (re-parented orphans) is reaped and forgotten.
//!
//! Race: a child can exit before its waiter is registered. [`Reaper::spawn_registered`] forks
//! while holding the waiter map's lock and registers the pid before releasing it; `reap` takes
//! the same lock to route a status, so it cannot look up a pid whose waiter is not in yet.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use tracing::{debug, warn};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the exit code, or 128+N when killed by signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(n) => 128 + n,
        }
    }

    fn from_raw(status: i32) -> Option<Exit> {
        if libc::WIFEXITED(status) {
            Some(Exit::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Exit::Signal(libc::WTERMSIG(status)))
        } else {
            None // stopped/continued: not reported without WUNTRACED, ignore anyway
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(n) => write!(
                f,
                "was killed by {} (exit {})",
                super::signals::name(n),
                128 + n
            ),
        }
    }
}

#[derive(Default)]
pub(super) struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<Exit>>> {
        // A panic while holding this lock leaves a consistent map (insert/remove only).
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `spawn` (which forks and returns the child's pid and anything else) with the map
    /// locked, and register a waiter for that pid before anyone can route its status.
    pub(super) fn spawn_registered<T, E>(
        &self,
        spawn: impl FnOnce() -> Result<(i32, T), E>,
    ) -> Result<(i32, T, oneshot::Receiver<Exit>), E> {
        let mut waiters = self.lock();
        let (pid, extra) = spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(pid, tx);
        Ok((pid, extra, rx))
    }

    /// Reap every child that has exited; returns how many.
    pub(super) fn reap(&self) -> usize {
        let mut n = 0;
        loop {
            let mut status = 0;
            // SAFETY: plain syscall.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                break; // children left, none exited
            }
            if pid < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => break, // no children at all
                    _ => {
                        warn!("waitpid: {err}");
                        break;
                    }
                }
            }
            let Some(exit) = Exit::from_raw(status) else {
                continue;
            };
            n += 1;
            match self.lock().remove(&pid) {
                // The receiver may be gone (its waiter gave up): nothing to do.
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => debug!(pid, "reaped an orphan that {exit}"),
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Exit::Code(42).code(), 42);
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(
            Exit::Signal(15).to_string(),
            "was killed by SIGTERM (exit 143)"
        );
        // Raw wait statuses as the kernel encodes them.
        assert_eq!(Exit::from_raw(3 << 8), Some(Exit::Code(3)));
        assert_eq!(Exit::from_raw(libc::SIGKILL), Some(Exit::Signal(9)));
        assert_eq!(Exit::from_raw(0x137f), None); // stopped by SIGSTOP
    }
}
