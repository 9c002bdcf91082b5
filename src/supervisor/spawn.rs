//! Starting a child: `fork` + `execve` by hand, because the status must come from our reaper
//! (std's `Command::spawn` itself `wait`s for a child whose exec failed, racing the reaper).
//!
//! Everything the child needs (path, argv, envp) is built before `fork`; between `fork` and
//! `execve` the child only makes async-signal-safe calls: its own process group, the terminal's
//! foreground group (if any), stdio, default dispositions, the original signal mask, exec. An
//! exec failure is reported to the parent through a close-on-exec pipe (EOF means exec worked).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::SigSet;

/// Used when the child's environment has no PATH (execvp's default, plus the sbin dirs).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}: not found on PATH ({1})")]
    NotFoundOnPath(String, String),
    #[error("{0}: no such file")]
    NoSuchFile(String),
    #[error("{0}: cannot execute: {1}")]
    CannotExecute(String, io::Error),
    #[error("{0}: cannot start: {1}")]
    Failed(String, io::Error),
}

impl SpawnError {
    /// The shell convention: 127 not found, 126 found but not executable, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFoundOnPath(..) | SpawnError::NoSuchFile(_) => 127,
            SpawnError::CannotExecute(..) => 126,
            SpawnError::Failed(..) => 1,
        }
    }
}

/// What to start.
pub(super) struct Command<'a> {
    pub program: &'a OsStr,
    pub args: &'a [OsString],
    pub env_set: &'a [(OsString, OsString)],
    pub env_remove: &'a [OsString],
}

/// Built before `fork`: the child must not allocate.
pub(super) struct Prepared {
    display: String,
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    mask: libc::sigset_t,
    sig_max: i32,
}

impl Prepared {
    pub(super) fn new(cmd: &Command<'_>, mask: &SigSet) -> Result<Prepared, SpawnError> {
        let display = cmd.program.to_string_lossy().into_owned();
        let failed = |e: io::Error| SpawnError::Failed(display.clone(), e);
        let nul = |what: &str| {
            failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            ))
        };

        let env = child_env(cmd.env_set, cmd.env_remove);
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str());
        let path = resolve(cmd.program, path_var)?;

        let argv: Vec<CString> = std::iter::once(cmd.program)
            .chain(cmd.args.iter().map(OsString::as_os_str))
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| nul("an argument"))?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<Result<_, _>>()
            .map_err(|_| nul("an environment variable"))?;
        Ok(Prepared {
            path: CString::new(path.as_os_str().as_bytes()).map_err(|_| nul("the program path"))?,
            argv_ptrs: argv
                .iter()
                .map(|a| a.as_ptr())
                .chain([std::ptr::null()])
                .collect(),
            _argv: argv,
            envp_ptrs: envp
                .iter()
                .map(|a| a.as_ptr())
                .chain([std::ptr::null()])
                .collect(),
            _envp: envp,
            mask: *mask.as_ref(),
            sig_max: libc::SIGRTMAX(),
            display,
        })
    }

    /// Fork. Returns the child's pid and the pipe on which to learn whether exec worked
    /// ([`ExecReport::wait`]). Call with the reaper's waiter map locked.
    pub(super) fn fork(&self) -> Result<(i32, ExecReport), SpawnError> {
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SpawnError::Failed(self.display.clone(), e.into()))?;
        // SAFETY: the child only runs `exec_child` (async-signal-safe calls, no allocation).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SpawnError::Failed(
                self.display.clone(),
                io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            // SAFETY: in the forked child.
            unsafe { self.exec_child(wr.as_raw_fd()) }
        }
        drop(wr);
        Ok((
            pid,
            ExecReport {
                rd,
                display: self.display.clone(),
            },
        ))
    }

    /// In the child, between fork and exec. Errors before exec are ignored on purpose (no
    /// terminal, an fd already in place): they don't stop the program from running.
    unsafe fn exec_child(&self, report: RawFd) -> ! {
        // The child's group takes the terminal when stdin is one (so a shell under
        // `docker run -it` can read it), as tini does; only if our group has it (not when we
        // run as a background job).
        let take_tty = libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp();
        libc::setpgid(0, 0);
        if take_tty {
            // Allowed from a background group because SIGTTOU is still blocked here.
            libc::tcsetpgrp(0, libc::getpid());
        }
        // Default dispositions for everything: the Rust runtime ignores SIGPIPE, a parent may
        // have left others ignored, and an ignored signal stays ignored across exec. The raw
        // syscall because glibc's sigaction refuses its two internal signals (32, 33), which a
        // parent can leave ignored too. All-zero = SIG_DFL, no flags, empty mask.
        let dfl = [0u64; 4]; // struct k_sigaction (handler, flags, restorer, mask)
        for sig in 1..=self.sig_max {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
        libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        libc::execve(
            self.path.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
        );
        let errno = *libc::__errno_location();
        libc::write(
            report,
            (&raw const errno).cast(),
            std::mem::size_of::<i32>(),
        );
        libc::_exit(127)
    }
}

/// The read end of the exec-report pipe.
pub(super) struct ExecReport {
    rd: OwnedFd,
    display: String,
}

impl ExecReport {
    /// Block until the child has exec'd (EOF) or reported why it could not (an errno). Exec
    /// takes well under a millisecond, so this blocks the calling thread only briefly.
    pub(super) fn wait(self) -> Result<(), SpawnError> {
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < buf.len() {
            match nix::unistd::read(&self.rd, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SpawnError::Failed(self.display, e.into())),
            }
        }
        if got == 0 {
            return Ok(());
        }
        let err = io::Error::from_raw_os_error(i32::from_ne_bytes(buf));
        Err(match err.raw_os_error() {
            Some(libc::ENOENT) => SpawnError::NoSuchFile(self.display),
            _ => SpawnError::CannotExecute(self.display, err),
        })
    }
}

/// Our environment with `remove` taken out and `set` applied.
fn child_env(set: &[(OsString, OsString)], remove: &[OsString]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !remove.contains(k) && !set.iter().any(|(s, _)| s == k))
        .collect();
    env.extend(set.iter().cloned());
    env
}

/// Find `program` like `execvp` does: as given when it contains a slash, else the first
/// executable regular file in `path`.
fn resolve(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let display = program.to_string_lossy().into_owned();
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(SpawnError::NoSuchFile(display));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = None;
    for dir in path.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        if !candidate.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied.get_or_insert(candidate);
    }
    match denied {
        Some(p) => Err(SpawnError::CannotExecute(
            p.display().to_string(),
            io::Error::from_raw_os_error(libc::EACCES),
        )),
        None => Err(SpawnError::NotFoundOnPath(
            display,
            path.to_string_lossy().into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn resolves_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("notes");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());

        assert_eq!(
            resolve(OsStr::new("tool"), Some(OsStr::new(&path))).unwrap(),
            exe
        );
        let e = resolve(OsStr::new("nope-xyz"), Some(OsStr::new(&path))).unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert_eq!(
            e.to_string(),
            format!("nope-xyz: not found on PATH ({path})")
        );
        // A directory named like the program is skipped, as execvp does.
        assert_eq!(
            resolve(OsStr::new("tmp"), Some(OsStr::new("/")))
                .unwrap_err()
                .exit_code(),
            127
        );
        // With a slash the path is used as is; exec reports what is wrong with it.
        assert_eq!(
            resolve(OsStr::new("./x/y"), None).unwrap(),
            PathBuf::from("./x/y")
        );
        // No x bit at all: denied even for root.
        let e = resolve(OsStr::new("notes"), Some(OsStr::new(&path))).unwrap_err();
        assert_eq!(e.exit_code(), 126, "{e}");
    }

    #[test]
    fn env_set_and_remove() {
        let env = child_env(
            &[
                ("ENTRYPOINT_TEST_SET".into(), "1".into()),
                ("PATH".into(), "/x".into()),
            ],
            &["HOME".into()],
        );
        assert!(env.iter().all(|(k, _)| k != "HOME"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(env.contains(&("PATH".into(), "/x".into())));
        assert!(env.contains(&("ENTRYPOINT_TEST_SET".into(), "1".into())));
    }
}
