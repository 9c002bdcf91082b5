//! Run the built `entrypoint` as PID 1 of a fresh PID namespace (`unshare --pid --fork
//! --mount-proc`), or directly as an ordinary process, and observe it from the outside: its pid
//! as seen from here (to signal it), marker files its scripted child writes, its exit code.
//!
//! Every wait polls a condition against a deadline; nothing sleeps for a fixed time.

#![allow(dead_code)] // each test file uses a different subset

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Poll `cond` every 20 ms until it returns `Some`, or panic naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when this process can make PID namespaces (root and a working `unshare`). Prints why
/// not once, so a skipped test says so.
pub fn can_unshare() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: PID-namespace tests need root (CI runs them as root)");
            return false;
        }
        let ok = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: `unshare --pid --fork --mount-proc true` does not work here");
        }
        ok
    })
}

/// How to start the entrypoint.
pub struct Launch {
    /// Run as PID 1 of a new PID namespace (else as a plain child of the test).
    pub namespace: bool,
    /// Arguments after `entrypoint run`, e.g. `--restart always`.
    pub run_args: Vec<String>,
    /// The command after `--` (empty: the default child, `openclaw gateway`).
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Prepend to PATH.
    pub path_prepend: Option<PathBuf>,
    /// Signals to ignore and to block in the entrypoint as it starts (what a parent may leave).
    pub inherit_ignored: Vec<i32>,
    pub inherit_blocked: Vec<i32>,
}

impl Launch {
    /// `entrypoint run -- CMD...` (an empty `cmd`: the default child, `openclaw gateway`), as
    /// PID 1 of a new namespace.
    pub fn new(cmd: &[&str]) -> Launch {
        Launch {
            namespace: true,
            run_args: Vec::new(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            path_prepend: None,
            inherit_ignored: Vec::new(),
            inherit_blocked: Vec::new(),
        }
    }

    /// `entrypoint run -- sh -c SCRIPT`; the script finds its marker dir in `$D`.
    pub fn sh(script: &str) -> Launch {
        Launch::new(&["sh", "-c", script])
    }

    pub fn direct(mut self) -> Launch {
        self.namespace = false;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Launch {
        self.run_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn start(self) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["home", "data", "m"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let log = dir.path().join("entrypoint.log");
        let bin = env!("CARGO_BIN_EXE_entrypoint");
        let mut cmd = if self.namespace {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", bin]);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("run").args(&self.run_args);
        if !self.cmd.is_empty() {
            cmd.arg("--").args(&self.cmd);
        }
        let mut path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        if let Some(p) = &self.path_prepend {
            path = format!("{}:{path}", p.display());
        }
        // A clean environment: no store settings leak in from the developer's shell.
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", dir.path().join("home"))
            .env("ENTRYPOINT_DATA_DIR", dir.path().join("data"))
            .env("ENTRYPOINT_LOG", "debug")
            .env("D", dir.path().join("m"))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        let (ignored, blocked) = (self.inherit_ignored.clone(), self.inherit_blocked.clone());
        // SAFETY: only async-signal-safe calls (sigaction, sigprocmask) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for &sig in &ignored {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &sig in &blocked {
                    libc::sigaddset(&mut set, sig);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn entrypoint");
        let outer = child.id() as i32;
        let pid = if self.namespace {
            // unshare forks, and the fork execs the entrypoint: wait for that exec. A quick
            // child may be done before we look: then there is nothing left to signal (pid 0).
            wait_for(
                Duration::from_secs(10),
                "the entrypoint inside the namespace",
                || {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Some(0);
                    }
                    let children =
                        std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                            .ok()?;
                    let pid: i32 = children.split_whitespace().next()?.parse().ok()?;
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                    (comm.trim() == "entrypoint").then_some(pid)
                },
            )
        } else {
            outer
        };
        Running {
            child,
            pid,
            dir,
            log,
            started: Instant::now(),
        }
    }
}

/// A started entrypoint. Dropping it SIGKILLs whatever is left.
pub struct Running {
    child: Child,
    /// The entrypoint's pid as seen from the test (not 1, even in a namespace).
    pub pid: i32,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    pub started: Instant,
}

impl Running {
    /// The marker dir the child sees as `$D`.
    pub fn markers(&self) -> PathBuf {
        self.dir.path().join("m")
    }

    pub fn marker(&self, name: &str) -> PathBuf {
        self.markers().join(name)
    }

    /// Contents of a marker file, or "" if it does not exist yet.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.marker(name)).unwrap_or_default()
    }

    /// Wait until marker `name` exists.
    pub fn wait_marker(&self, name: &str, timeout: Duration) {
        let path = self.marker(name);
        wait_for(
            timeout,
            &format!("marker {name}\n--- log ---\n{}", self.log()),
            || path.exists().then_some(()),
        );
    }

    /// Wait until the marker file has a line equal to `line`.
    pub fn wait_line(&self, name: &str, line: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("line {line:?} in {name} (has {:?})", self.read(name)),
            || self.read(name).lines().any(|l| l == line).then_some(()),
        );
    }

    pub fn signal(&self, sig: i32) {
        assert!(
            self.pid > 0,
            "the entrypoint exited before it could be signalled\n{}",
            self.log()
        );
        // SAFETY: plain syscall.
        let rc = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Wait for the entrypoint to exit; returns its exit code (128+N if killed by N).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let status = wait_for(timeout, "the entrypoint to exit", || {
            self.child.try_wait().expect("try_wait")
        });
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// What the entrypoint (and the child) wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Outside a namespace nobody would kill the entrypoint's child groups for us.
            for child in children(self.pid) {
                // SAFETY: plain syscall.
                unsafe { libc::kill(-child, libc::SIGKILL) };
            }
            // As a namespace init, the entrypoint takes the whole namespace with it.
            if self.pid > 0 {
                // SAFETY: plain syscall; the pid is ours until `child` is reaped.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Direct children of `pid` (all threads).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// `/proc/<pid>/status` field, e.g. `PPid`.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}
