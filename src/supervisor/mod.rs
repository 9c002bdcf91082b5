//! The PID-1 supervisor: a generic init for one main child (tini, plus restarts and a stop deadline).
//!
//! Contract used by `run`:
//! - [`block_signals`] is called first thing in `main`, before any thread exists, so every
//!   thread inherits the blocked mask and signals are only collected by the supervisor.
//! - [`Supervisor::start`] (inside the tokio runtime) starts signal collection and the one
//!   reaper (`waitpid(-1)`); every process the binary spawns gets its status from that reaper.
//! - [`Supervisor::run`] spawns the child (own process group, clean mask and dispositions),
//!   forwards signals to the group, restarts per [`Policy`], and on SIGTERM/SIGINT (or when
//!   the caller's `stop` token is cancelled) stops the group: SIGTERM, grace, SIGKILL. It
//!   returns [`Ended`]: the exit code to exit with (child's status, 128+N, 127/126 on exec
//!   failure) and why. It never cancels the caller's token; the caller learns of stop signals
//!   from [`Supervisor::stop_signal`] (the first) and [`Supervisor::second_stop_signal`] (one
//!   after `run` returned, e.g. to cut a final backup short).
//!
//! Layout: `signals` (what is collected and what each signal means), `reaper` (waitpid loop and
//! pid -> waiter routing), `spawn` (fork/exec). This file is the loop that ties them together.
//! Background: ../shared/facts/pid1.md.

mod reaper;
mod signals;
mod spawn;

use std::ffi::OsString;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, error, info, warn};

use crate::settings::RestartPolicy;

pub use reaper::Exit;
pub use signals::block_signals;
pub use spawn::SpawnError;

use signals::{action, Action};

/// The original signal mask, restored in children before exec.
#[derive(Debug, Clone)]
pub struct OriginalMask(pub SigSet);

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

/// How `run` ended: the code to exit with, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub code: i32,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A stop signal (TERM/INT) arrived.
    Signal(i32),
    /// The caller's `stop` token was cancelled.
    Stopped,
    /// The child exited and the restart policy says not to start it again.
    Exited,
    /// The child could not be started (not found, not executable).
    CannotStart,
}

/// Where the signal task sends the signals it does not handle itself.
enum Route {
    /// `run` has not started: keep them (a SIGTERM during restore must not be lost).
    Before(Vec<i32>),
    /// `run` is supervising: hand them over.
    During(mpsc::UnboundedSender<i32>),
    /// `run` has returned: a stop signal cancels `second`, the rest has no one to go to.
    After,
}

struct Shared {
    reaper: reaper::Reaper,
    route: Mutex<Route>,
    /// The supervisor's own: cancelled by the first stop signal, whenever it comes.
    first: CancellationToken,
    /// The supervisor's own: cancelled by a stop signal after `run` returned.
    second: CancellationToken,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            reaper: reaper::Reaper::default(),
            route: Mutex::new(Route::Before(Vec::new())),
            first: CancellationToken::new(),
            second: CancellationToken::new(),
        }
    }

    fn route(&self) -> MutexGuard<'_, Route> {
        self.route.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, sig: i32) {
        if action(sig) == Action::Stop {
            self.first.cancel();
        }
        match &mut *self.route() {
            // Bounded: nobody sends thousands of signals before the child starts.
            Route::Before(queue) if queue.len() < 64 => queue.push(sig),
            Route::Before(_) => {}
            Route::During(tx) => {
                let _ = tx.send(sig);
            }
            Route::After if action(sig) == Action::Stop => {
                warn!(
                    "received {} again: cutting the remaining work short",
                    signals::name(sig)
                );
                self.second.cancel();
            }
            Route::After => debug!("no child running; ignoring {}", signals::name(sig)),
        }
    }
}

pub struct Supervisor {
    shared: Arc<Shared>,
    mask: SigSet,
}

impl Supervisor {
    /// Start signal collection and the reaper. Call once, inside the runtime.
    pub fn start(mask: OriginalMask) -> anyhow::Result<Supervisor> {
        // Two `waitpid(-1)` loops would steal each other's statuses.
        static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("the supervisor is already started (there must be one reaper)");
        }
        if nix::unistd::getpid().as_raw() != 1 {
            // Not a namespace init (Spaces Dev Mode, `docker run --init`): without this, our
            // grandchildren's orphans would go to the real PID 1 and we could not reap them.
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                warn!("cannot become a child subreaper ({e}); orphans of the child will not be reaped by us");
            }
        }
        let stream = signals::SignalStream::new()?;
        let shared = Arc::new(Shared::new());
        tokio::spawn(collect(stream, shared.clone()));
        Ok(Supervisor {
            shared,
            mask: mask.0,
        })
    }

    /// Supervise `spec` until it is done for good, or a stop signal or `stop` ends it.
    pub async fn run(
        &self,
        spec: ChildSpec,
        policy: Policy,
        hooks: &mut dyn Hooks,
        stop: &CancellationToken,
    ) -> Ended {
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut route = self.shared.route();
            if let Route::Before(queue) = &*route {
                for sig in queue {
                    let _ = tx.send(*sig);
                }
            }
            *route = Route::During(tx);
        }
        let ended = self.supervise(&spec, &policy, hooks, stop, &mut rx).await;
        *self.shared.route() = Route::After;
        // Anything that arrived while we were finishing counts as arriving after.
        while let Ok(sig) = rx.try_recv() {
            if action(sig) == Action::Stop {
                self.shared.second.cancel();
            }
        }
        ended
    }

    /// Completes when the first stop signal (TERM/INT) arrives, before, during or after `run`.
    pub fn stop_signal(&self) -> WaitForCancellationFutureOwned {
        self.shared.first.clone().cancelled_owned()
    }

    /// Completes when a stop signal arrives after `run` has returned, e.g. to cut a final
    /// backup short on a second SIGTERM.
    pub fn second_stop_signal(&self) -> WaitForCancellationFutureOwned {
        self.shared.second.clone().cancelled_owned()
    }

    /// Spawn the main child in its own process group; returns its pid (= pgid) and its status.
    fn spawn_main(&self, spec: &ChildSpec) -> Result<(i32, oneshot::Receiver<Exit>), SpawnError> {
        let cmd = spawn::Command {
            program: &spec.program,
            args: &spec.args,
            env_set: &spec.env_set,
            env_remove: &spec.env_remove,
        };
        let prepared = spawn::Prepared::new(&cmd, &self.mask)?;
        let (pid, report, exit) = self.shared.reaper.spawn_registered(|| prepared.fork())?;
        report.wait()?;
        Ok((pid, exit))
    }

    /// The loop: spawn, wait, decide, back off, again.
    async fn supervise(
        &self,
        spec: &ChildSpec,
        policy: &Policy,
        hooks: &mut dyn Hooks,
        stop: &CancellationToken,
        rx: &mut mpsc::UnboundedReceiver<i32>,
    ) -> Ended {
        let name = spec.program.to_string_lossy();
        let mut backoff = Backoff::new(policy);
        let mut last: Option<i32> = None;
        let mut restarts = 0u32;
        loop {
            // A stop requested before the (re)start: don't start anything.
            if let Some(ended) = pending_stop(rx, stop, last) {
                return ended;
            }
            let started = Instant::now();
            let (pid, exit_rx) = match self.spawn_main(spec) {
                Ok(x) => x,
                Err(e) => {
                    match e.exit_code() {
                        127 => error!("{e}; install it or pass the command to run after --"),
                        _ => error!("{e}"),
                    }
                    return Ended {
                        code: e.exit_code(),
                        why: Why::CannotStart,
                    };
                }
            };
            hooks.on_spawn(pid);
            info!(pid, "started {name}");
            let (exit, stopped) =
                wait_child(pid, exit_rx, spec.hup_as, policy.stop_timeout, stop, rx).await;
            kill_leftovers(pid);
            let code = exit.code();
            if let Some(why) = stopped {
                info!("{name} {exit} after the stop request");
                return Ended { code, why };
            }
            last = Some(code);
            restarts += 1;
            let delay = match decide(policy.restart, code, hooks) {
                Decision::Exit => {
                    let policy = clap::ValueEnum::to_possible_value(&policy.restart);
                    let policy = policy.as_ref().map_or("?", |v| v.get_name());
                    info!("{name} {exit}; not restarting (restart policy {policy})");
                    return Ended {
                        code,
                        why: Why::Exited,
                    };
                }
                Decision::Now => {
                    warn!(
                        restarts,
                        "{name} {exit} (config error, repaired); restarting now"
                    );
                    Duration::ZERO
                }
                Decision::Backoff => {
                    let delay = backoff.next(started.elapsed());
                    warn!(
                        restarts,
                        delay_ms = delay.as_millis() as u64,
                        "{name} {exit}; restarting in {delay:?}"
                    );
                    delay
                }
            };
            if let Some(ended) = wait_backoff(delay, rx, stop, code).await {
                return ended;
            }
        }
    }
}

/// The signal task: reap on SIGCHLD, route everything else.
async fn collect(stream: signals::SignalStream, shared: Arc<Shared>) {
    shared.reaper.reap(); // anything that exited before we listened
    loop {
        match stream.next().await {
            Ok((sig, from)) => match action(sig) {
                Action::Reap => {
                    shared.reaper.reap();
                }
                Action::Drop => debug!(from, "ignoring job-control signal {}", signals::name(sig)),
                Action::Stop | Action::Forward => {
                    debug!(from, "received {}", signals::name(sig));
                    shared.deliver(sig);
                }
            },
            Err(e) => {
                // Cannot happen short of fd exhaustion games; say so loudly rather than spin.
                error!(
                    "reading signals failed: {e}; signals and child exits are no longer handled"
                );
                return;
            }
        }
    }
}

/// A stop that is already pending (a queued TERM/INT, or `stop` cancelled): the code to
/// exit with is the last child's, or 128+signal when nothing ran yet.
fn pending_stop(
    rx: &mut mpsc::UnboundedReceiver<i32>,
    stop: &CancellationToken,
    last: Option<i32>,
) -> Option<Ended> {
    while let Ok(sig) = rx.try_recv() {
        if action(sig) == Action::Stop {
            info!(
                "received {} with no child running: exiting",
                signals::name(sig)
            );
            return Some(Ended {
                code: last.unwrap_or(128 + sig),
                why: Why::Signal(sig),
            });
        }
        debug!("no child running; ignoring {}", signals::name(sig));
    }
    stop.is_cancelled().then(|| Ended {
        code: last.unwrap_or(128 + libc::SIGTERM),
        why: Why::Stopped,
    })
}

/// Wait for the child's exit, forwarding signals to its group and stopping it on request.
/// Returns its exit and, when we stopped it, why.
async fn wait_child(
    pgid: i32,
    mut exit: oneshot::Receiver<Exit>,
    hup_as: Option<Signal>,
    stop_timeout: Duration,
    stop: &CancellationToken,
    rx: &mut mpsc::UnboundedReceiver<i32>,
) -> (Exit, Option<Why>) {
    let mut stopping: Option<Why> = None;
    let kill_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(kill_timer);
    let mut kill_armed = false;
    loop {
        tokio::select! {
            biased;
            status = &mut exit => {
                let exit = status.unwrap_or_else(|_| {
                    error!("lost the child's status (reaper gone)");
                    Exit::Code(1)
                });
                return (exit, stopping);
            }
            Some(sig) = rx.recv() => {
                if action(sig) == Action::Stop && stopping.is_none() {
                    stopping = Some(Why::Signal(sig));
                    kill_armed = true;
                    kill_timer.as_mut().reset(Instant::now() + stop_timeout);
                    info!("received {}: stopping the child (SIGKILL in {stop_timeout:?})", signals::name(sig));
                }
                let out = match (sig, hup_as) {
                    (libc::SIGHUP, Some(to)) => to as i32,
                    _ => sig,
                };
                forward(pgid, out);
            }
            _ = stop.cancelled(), if stopping.is_none() => {
                stopping = Some(Why::Stopped);
                kill_armed = true;
                kill_timer.as_mut().reset(Instant::now() + stop_timeout);
                info!("shutting down: stopping the child (SIGKILL in {stop_timeout:?})");
                forward(pgid, libc::SIGTERM);
            }
            _ = &mut kill_timer, if kill_armed => {
                kill_armed = false;
                warn!("the child did not stop within {stop_timeout:?} (--stop-timeout / ENTRYPOINT_STOP_TIMEOUT): sending SIGKILL");
                forward(pgid, libc::SIGKILL);
            }
        }
    }
}

/// Sleep `delay` before a restart; a stop request cuts it short with `last` as the exit code.
async fn wait_backoff(
    delay: Duration,
    rx: &mut mpsc::UnboundedReceiver<i32>,
    stop: &CancellationToken,
    last: i32,
) -> Option<Ended> {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return None,
            Some(sig) = rx.recv() => {
                if action(sig) == Action::Stop {
                    info!("received {} while waiting to restart: exiting with {last}", signals::name(sig));
                    return Some(Ended { code: last, why: Why::Signal(sig) });
                }
                debug!("no child running; ignoring {}", signals::name(sig));
            }
            _ = stop.cancelled() => return Some(Ended { code: last, why: Why::Stopped }),
        }
    }
}

/// Send `sig` to the process group `pgid`; a group that is already gone is fine.
fn forward(pgid: i32, sig: i32) {
    // SAFETY: plain syscall.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        debug!(pgid, "forwarded {}", signals::name(sig));
    } else {
        debug!(
            pgid,
            "could not forward {}: {}",
            signals::name(sig),
            std::io::Error::last_os_error()
        );
    }
}

/// The group leader is gone; whatever is left of its group would hold ports and locks across
/// a restart (or outlive us when we are not PID 1), so it goes too. As PID 1 the kernel would
/// SIGKILL it when we exit anyway.
fn kill_leftovers(pgid: i32) {
    // SAFETY: plain syscalls. Signal 0 only checks whether the group has members.
    if unsafe { libc::kill(-pgid, 0) } == 0 {
        info!(
            pgid,
            "processes are left in the child's process group: sending SIGKILL"
        );
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Exit,
    /// Restart without delay (a repaired config error).
    Now,
    Backoff,
}

fn decide(policy: RestartPolicy, code: i32, hooks: &mut dyn Hooks) -> Decision {
    match policy {
        RestartPolicy::Never => Decision::Exit,
        RestartPolicy::OnFailure if code == 0 => Decision::Exit,
        _ if code == EX_CONFIG => {
            if hooks.on_config_error() {
                Decision::Now
            } else {
                Decision::Exit
            }
        }
        _ => Decision::Backoff,
    }
}

/// Exponential restart delay: initial, doubling up to max; back to initial after a run of at
/// least `healthy_after`.
struct Backoff {
    initial: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Backoff {
    fn new(p: &Policy) -> Self {
        let initial = p.backoff_initial.min(p.backoff_max);
        Backoff {
            initial,
            max: p.backoff_max,
            healthy_after: p.healthy_after,
            next: initial,
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new(&Policy::new(RestartPolicy::Always, secs(10)));
        let short = Duration::from_millis(10);
        let delays: Vec<u64> = (0..8).map(|_| b.next(short).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.next(secs(120)), secs(1));
        assert_eq!(b.next(short), secs(2));
    }

    struct Repair(u32);
    impl Hooks for Repair {
        fn on_config_error(&mut self) -> bool {
            self.0 += 1;
            self.0 == 1
        }
    }

    #[test]
    fn restart_decisions() {
        use RestartPolicy::*;
        struct NoHooks;
        impl Hooks for NoHooks {}
        let mut none = NoHooks;
        assert_eq!(decide(Never, 1, &mut none), Decision::Exit);
        assert_eq!(decide(OnFailure, 0, &mut none), Decision::Exit);
        assert_eq!(decide(OnFailure, 137, &mut none), Decision::Backoff);
        assert_eq!(decide(Always, 0, &mut none), Decision::Backoff);
        assert_eq!(decide(Always, EX_CONFIG, &mut none), Decision::Exit);
        let mut repair = Repair(0);
        assert_eq!(decide(OnFailure, EX_CONFIG, &mut repair), Decision::Now);
        assert_eq!(decide(OnFailure, EX_CONFIG, &mut repair), Decision::Exit);
        // `never` means never: the hook (which may move files) is not even asked.
        assert_eq!(decide(Never, EX_CONFIG, &mut repair), Decision::Exit);
        assert_eq!(repair.0, 2);
    }

    /// Runs the calling test again in a copy of this test binary that runs only that test, and
    /// returns true in the copy. A `waitpid(-1)` in this process would steal other tests'
    /// children. The copy reaps every 5 ms from a task ([`test_supervisor`]) in place of the
    /// SIGCHLD-driven one: libtest's own threads don't block signals, so a signalfd would miss
    /// some SIGCHLDs. The integration tests cover the signal path.
    fn in_own_process(test: &str) -> bool {
        const INNER: &str = "ENTRYPOINT_TEST_INNER";
        if std::env::var_os(INNER).is_some() {
            return true;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture"])
            .env(INNER, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        false
    }

    /// The supervisor whose reaper the test reaping thread serves.
    static CURRENT: Mutex<Option<std::sync::Weak<Shared>>> = Mutex::new(None);

    /// A supervisor without signal collection, reaped by polling. There must be one reaper at
    /// a time: a second `waitpid(-1)` loop (say, a previous test supervisor's, still in its
    /// last round) would take this one's child and route its status nowhere. So one thread
    /// per process polls, for whichever supervisor is current, and reaps under the lock that
    /// switches it.
    fn test_supervisor() -> Supervisor {
        static POLLER: std::sync::Once = std::sync::Once::new();
        let sup = Supervisor {
            shared: Arc::new(Shared::new()),
            mask: SigSet::empty(),
        };
        *CURRENT.lock().unwrap() = Some(Arc::downgrade(&sup.shared));
        POLLER.call_once(|| {
            std::thread::spawn(|| loop {
                {
                    let current = CURRENT.lock().unwrap();
                    if let Some(shared) = current.as_ref().and_then(std::sync::Weak::upgrade) {
                        shared.reaper.reap();
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            });
        });
        sup
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    struct Count {
        spawns: u32,
        repairs: u32,
    }
    impl Hooks for Count {
        fn on_spawn(&mut self, _pid: i32) {
            self.spawns += 1;
        }
        fn on_config_error(&mut self) -> bool {
            self.repairs += 1;
            self.repairs == 1
        }
    }

    fn sh(script: &str) -> ChildSpec {
        ChildSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env_set: Vec::new(),
            env_remove: Vec::new(),
            hup_as: None,
        }
    }

    /// `run`'s stop paths and how it reports them: a stop signal that came before it (during
    /// restore), `stop` cancelled by another task, a stop signal after it
    /// (`second_stop_signal`); and the one immediate retry after a repaired config error. The
    /// supervisor never cancels the caller's token.
    #[test]
    fn run_stops_and_retries_as_asked() {
        if !in_own_process("supervisor::tests::run_stops_and_retries_as_asked") {
            return;
        }
        runtime().block_on(async {
            let policy = Policy::new(RestartPolicy::Always, Duration::from_secs(5));

            // TERM before `run`: nothing starts, 128+15, reported as the signal.
            let sup = test_supervisor();
            sup.shared.deliver(libc::SIGTERM);
            assert!(sup.shared.first.is_cancelled(), "`stop_signal` completes");
            let mut hooks = Count {
                spawns: 0,
                repairs: 0,
            };
            let stop = CancellationToken::new();
            let ended = sup
                .run(sh("exit 0"), policy.clone(), &mut hooks, &stop)
                .await;
            assert_eq!(
                ended,
                Ended {
                    code: 143,
                    why: Why::Signal(libc::SIGTERM)
                }
            );
            assert_eq!(hooks.spawns, 0);
            assert!(!stop.is_cancelled(), "the caller's token is the caller's");
            // TERM after `run`: `second_stop_signal`.
            assert!(!sup.shared.second.is_cancelled());
            sup.shared.deliver(libc::SIGTERM);
            sup.second_stop_signal().await;

            // `shutdown` cancelled elsewhere: the child gets SIGTERM, its code comes back.
            drop(sup);
            let sup = test_supervisor();
            let dir = tempfile::tempdir().unwrap();
            let ready = dir.path().join("ready");
            let script = format!(
                "trap 'exit 7' TERM; touch {}; while :; do sleep 1 & wait; done",
                ready.display()
            );
            let stop = CancellationToken::new();
            let stopper = async {
                poll(|| ready.exists()).await;
                stop.cancel();
            };
            let mut hooks = Count {
                spawns: 0,
                repairs: 0,
            };
            let (ended, ()) = tokio::join!(
                sup.run(sh(&script), policy.clone(), &mut hooks, &stop),
                stopper
            );
            assert_eq!((ended.code, ended.why, hooks.spawns), (7, Why::Stopped, 1));
            assert!(!sup.shared.first.is_cancelled() && !sup.shared.second.is_cancelled());

            // Exit 78 whose cause the hook repaired: one retry at once, then no more.
            drop(sup);
            let sup = test_supervisor();
            let mut hooks = Count {
                spawns: 0,
                repairs: 0,
            };
            let t0 = Instant::now();
            let ended = sup
                .run(
                    sh("exit 78"),
                    policy.clone(),
                    &mut hooks,
                    &CancellationToken::new(),
                )
                .await;
            assert_eq!(
                (ended.code, ended.why, hooks.spawns, hooks.repairs),
                (EX_CONFIG, Why::Exited, 2, 2)
            );
            assert!(
                t0.elapsed() < policy.backoff_initial,
                "the retry waited: {:?}",
                t0.elapsed()
            );
        });
    }

    /// Poll `cond` every 10 ms for up to 10 s.
    async fn poll(cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not met within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
