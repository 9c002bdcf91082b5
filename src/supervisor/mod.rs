//! The PID-1 supervisor: a generic init for one main child (tini, plus restarts and a stop deadline).
//!
//! TODO(supervisor): implement per issue 2 and ../shared/facts/pid1.md.
//!
//! Contract used by `run`:
//! - [`block_signals`] is called first thing in `main`, before any thread exists, so every
//!   thread inherits the blocked mask and signals are only collected by the supervisor.
//! - [`Supervisor::start`] (inside the tokio runtime) starts signal collection and the one
//!   reaper (`waitpid(-1)`); every process the binary spawns gets its status from that reaper.
//! - [`Supervisor::run`] spawns the child (own process group, clean mask and dispositions),
//!   forwards signals to the group, restarts per [`Policy`], and on SIGTERM/SIGINT (or when
//!   `shutdown` is cancelled by someone else) stops the group: SIGTERM, grace, SIGKILL. It
//!   cancels `shutdown` itself when a stop signal arrives so other tasks (backup loop) stop too.
//!   It returns the exit code to exit with (child's status, 128+N, 127/126 on exec failure).

use std::ffi::OsString;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::settings::RestartPolicy;

/// The original signal mask, restored in children before exec.
#[derive(Debug, Clone)]
pub struct OriginalMask(pub nix::sys::signal::SigSet);

/// Block every asynchronous signal in the calling (main) thread. Call before spawning threads.
pub fn block_signals() -> anyhow::Result<OriginalMask> {
    anyhow::bail!("supervisor: not implemented yet")
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Variables to set (or override) in the child's environment.
    pub env_set: Vec<(OsString, OsString)>,
    /// Variables to remove from the child's environment.
    pub env_remove: Vec<OsString>,
    /// What a SIGHUP sent to us becomes for the child (`None` = forward SIGHUP as-is).
    pub hup_as: Option<Signal>,
}

/// Restart and stop policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub stop_timeout: Duration,
    /// First restart delay; doubles on each consecutive failure.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A run at least this long resets the backoff.
    pub healthy_after: Duration,
}

impl Policy {
    pub fn new(restart: RestartPolicy, stop_timeout: Duration) -> Self {
        Policy {
            restart,
            stop_timeout,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(120),
        }
    }
}

/// Exit code 78 (EX_CONFIG): a configuration error. Never restart-looped.
pub const EX_CONFIG: i32 = 78;

/// Callbacks from the supervisor loop into the caller (e.g. the OpenClaw layer).
pub trait Hooks: Send {
    /// The child exited 78. Return true if the cause was repaired and one more try is wanted.
    fn on_config_error(&mut self) -> bool {
        false
    }
    /// A child was spawned (pid).
    fn on_spawn(&mut self, _pid: i32) {}
}

/// No hooks.
pub struct NoHooks;
impl Hooks for NoHooks {}

pub struct Supervisor {}

impl Supervisor {
    /// Start signal collection and the reaper. Call once, inside the runtime.
    pub fn start(_mask: OriginalMask) -> anyhow::Result<Supervisor> {
        anyhow::bail!("supervisor: not implemented yet")
    }

    /// Supervise `spec` until it is done for good; returns the code to exit with.
    pub async fn run(
        &self,
        _spec: ChildSpec,
        _policy: Policy,
        _hooks: &mut dyn Hooks,
        _shutdown: CancellationToken,
    ) -> i32 {
        1
    }

    /// Run a helper command to completion (status via the one reaper); returns (exit code, stdout).
    pub async fn output(&self, _program: &str, _args: &[&str], _env_set: &[(OsString, OsString)]) -> anyhow::Result<(i32, Vec<u8>)> {
        anyhow::bail!("supervisor: not implemented yet")
    }

    /// Cancelled when a stop signal (TERM/INT) arrives after `run` has returned, e.g. to cut a
    /// final backup short on a second SIGTERM.
    pub fn second_signal(&self) -> CancellationToken {
        CancellationToken::new()
    }
}
