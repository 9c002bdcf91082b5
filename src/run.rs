//! `entrypoint run`: the service. Data dir -> restore -> config -> supervise, with periodic
//! backups beside it and a final one after the child stopped.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backup;
use crate::datadir;
use crate::frontdoor::{self, Door, Phase};
use crate::keepalive;
use crate::meta::Job;
use crate::openclaw;
use crate::restore;
use crate::settings::{RestartPolicy, Settings};
use crate::store::{self, Store};
use crate::supervisor::{self, Ended, Hooks, Policy, Supervisor, Why, EX_CONFIG};

/// Exit code when the entrypoint itself cannot start (bad env, no data dir).
const EX_STARTUP: i32 = 1;

/// Block signals, start the runtime, run the service; returns the exit code.
pub fn main(settings: Settings, cmd: Option<Vec<OsString>>) -> i32 {
    // Before any thread exists, so every thread inherits the blocked mask.
    let mask = match supervisor::block_signals() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("entrypoint: cannot set up signal handling: {e:#}");
            return EX_STARTUP;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("entrypoint: cannot start the async runtime: {e}");
            return EX_STARTUP;
        }
    };
    let code = runtime.block_on(async move {
        let sup = match Supervisor::start(mask) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start the supervisor: {e:#}");
                return EX_STARTUP;
            }
        };
        match service(&settings, cmd, &sup).await {
            Ok(code) => code,
            Err(e) => {
                error!("{}", one_line(&e, &settings));
                EX_STARTUP
            }
        }
    });
    // Don't wait for blocking tasks (an upload cut short by the deadline).
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// The async runtime every command uses: two workers (a Space has two vCPUs; heavy work such
/// as compression runs on blocking threads anyway).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

async fn service(
    settings: &Settings,
    cmd: Option<Vec<OsString>>,
    sup: &Supervisor,
) -> anyhow::Result<i32> {
    let started = Instant::now();
    let is_openclaw = cmd.as_deref().is_none_or(openclaw::is_openclaw);
    if is_openclaw && settings.gateway_token.is_none() {
        anyhow::bail!(
            "OPENCLAW_GATEWAY_TOKEN: not set. The gateway would invent a token nobody knows. \
             Set it as a Secret in the Space settings (Settings -> Variables and secrets), or pass -e OPENCLAW_GATEWAY_TOKEN=... to docker run"
        );
    }

    let data = datadir::resolve(
        &settings.data_dir_candidate,
        settings.home.as_deref(),
        datadir::Choice::of(settings),
    )?;
    info!(data_dir = %data.root.display(), "data dir: {}", data.reason);
    let job = data.job(&settings.backup.excludes);
    let _run_lock = job.meta.hold_run_lock(&data.root)?;
    let door = open_front_door(settings, is_openclaw, &job).await?;
    let store = store::open(data.store_settings(&settings.backup).as_ref()).await?;
    match &store {
        None => info!("backups are off: set HF_DATASET or HF_BUCKET (and HF_TOKEN), or ENTRYPOINT_BACKUP_DIR, to keep state across restarts"),
        Some(s) => {
            if !restore_first(&job, s.as_ref(), door.as_ref().map(|(d, _)| d), sup).await {
                if let Some((_, closed)) = door {
                    closed.cancel();
                }
                return Ok(0);
            }
        }
    }

    if is_openclaw {
        let written = openclaw::config::write(&job.state_dir, settings)?;
        info!("openclaw.json: {written:?}");
    }

    // The service's one shutdown signal, passed down (mini-redis): cancelled here on the
    // first stop signal, or once the child is done for good; every task ends on it. The
    // supervisor only reads it.
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(cancel_when(sup.stop_signal(), stop.clone()));
    if let Some(ka) = settings.keepalive.clone() {
        tasks.spawn(keepalive::run(ka, stop.clone()));
    }
    if let (true, true, Some(token)) = (
        is_openclaw,
        settings.auto_pair,
        settings.gateway_token.clone(),
    ) {
        let port = settings.gateway_listen_port();
        tasks.spawn(crate::pairing::run(port, token, stop.clone()));
    }
    let spec = openclaw::child_spec(cmd.clone(), &data.root);
    let restart = settings.restart.unwrap_or(if cmd.is_none() {
        RestartPolicy::OnFailure
    } else {
        RestartPolicy::Never
    });
    let policy = Policy::new(restart, settings.stop_timeout);
    info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "starting {}",
        spec.program.to_string_lossy()
    );

    let mut hooks = ConfigRecovery {
        state_dir: job.state_dir.clone(),
        settings,
        retried: !is_openclaw,
        door: door.as_ref().map(|(d, _)| d.clone()),
    };
    let ended = match &store {
        None => sup.run(spec, policy, &mut hooks, &stop).await,
        Some(store) => {
            let (ended, ()) = tokio::join!(
                async {
                    let ended = sup.run(spec, policy, &mut hooks, &stop).await;
                    stop.cancel();
                    ended
                },
                backup_loop(&job, store.as_ref(), settings.backup.interval, &stop),
            );
            let (deadline, abort) = (settings.backup.final_deadline, sup.second_stop_signal());
            final_backup(&job, store.as_ref(), deadline, abort).await;
            ended
        }
    };
    if let Some((d, _)) = &door {
        // The port stays up through the final backup, saying why the gateway is gone (unless
        // a hook said it better).
        if !matches!(d.phase(), Phase::Stopped { .. }) {
            d.set_phase(Phase::Stopped {
                why: stopped_because(ended),
            });
        }
    }
    stop.cancel();
    tasks.shutdown().await;
    if let Some((_, closed)) = door {
        closed.cancel();
    }
    info!(code = ended.code, "exiting ({:?})", ended.why);
    Ok(ended.code)
}

/// Why the gateway is gone, for the status page.
fn stopped_because(ended: Ended) -> String {
    match ended.why {
        Why::Signal(_) | Why::Stopped => "the Space is stopping (a final backup runs first)".into(),
        Why::Exited => format!(
            "the gateway exited with code {} and the restart policy says not to start it again; \
             the logs say why. Restart the Space",
            ended.code
        ),
        Why::CannotStart => {
            "the gateway could not be started (is openclaw installed?); the logs say why".into()
        }
    }
}

/// Cancel `token` once `event` happened.
async fn cancel_when(event: impl std::future::Future<Output = ()>, token: CancellationToken) {
    event.await;
    token.cancel();
}

/// Restore before the child starts, the front door showing how far it is. False when a stop
/// signal came first: then the service stops at once, with no gateway and no final backup,
/// which could publish the unrestored state over the good backups. Dropping the restore is
/// safe at any point: the swap is a rename, and a half-done one is finished by the next
/// start's `restore::recover` (the same as after a kill -9).
async fn restore_first(
    job: &Job,
    store: &dyn Store,
    door: Option<&Arc<Door>>,
    sup: &Supervisor,
) -> bool {
    let watch = restore::Watch::default();
    if let Some(d) = door {
        d.set_phase(Phase::Restoring {
            store: store.describe(),
            watch: watch.clone(),
        });
    }
    let (outcome, failed) = tokio::select! {
        r = restore_at_start(job, store, &watch) => r,
        () = sup.stop_signal() => {
            warn!("stop signal during the restore from {}: stopping without starting the gateway or a final backup; the state on disk is as it was (or the restored version, whole)", store.describe());
            return false;
        }
    };
    if let Some(d) = door {
        d.set_restore(store.describe(), outcome, failed);
    }
    true
}

/// Restore before the child starts. Errors never stop the service: the state on disk is kept
/// and `backup` refuses to upload until a restore succeeds or a backup is forced.
/// Returns what happened in one line without secrets (for the front door's status), and
/// whether it failed.
async fn restore_at_start(job: &Job, store: &dyn Store, watch: &restore::Watch) -> (String, bool) {
    let t = Instant::now();
    match restore::restore_latest(job, store, watch).await {
        Ok(restore::Outcome::NoBackup) => {
            info!("no backup in {}: fresh start", store.describe());
            ("no backup yet: fresh start".into(), false)
        }
        // A fallback was already said in one warning line by the restore itself.
        Ok(outcome) if !outcome.skipped().is_empty() => (outcome.to_string(), false),
        Ok(outcome) => {
            info!(
                ms = t.elapsed().as_millis() as u64,
                "restore from {}: {outcome}",
                store.describe()
            );
            (outcome.to_string(), false)
        }
        Err(e) => {
            error!(
                "RESTORE FAILED from {}: {e:#}. Keeping the state on disk and starting anyway; \
                 backups stay paused until a restore succeeds (or run `entrypoint backup --force`)",
                store.describe()
            );
            let what = "restore failed: the state on disk is kept and uploads are paused until a \
                        restore succeeds or `entrypoint backup --force` is run";
            (what.into(), true)
        }
    }
}

/// With `ENTRYPOINT_FRONT_DOOR` and the gateway as the child: listen on `$PORT` now (the
/// status page answers from the first second) and serve until the returned token is cancelled.
async fn open_front_door(
    settings: &Settings,
    is_openclaw: bool,
    job: &Job,
) -> anyhow::Result<Option<(Arc<Door>, CancellationToken)>> {
    if !(settings.front_door && is_openclaw) {
        return Ok(None);
    }
    if settings.gateway_port == settings.port {
        anyhow::bail!(
            "ENTRYPOINT_GATEWAY_PORT: {} is PORT too; the gateway needs a port of its own behind the front door",
            settings.port
        );
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", settings.port))
        .await
        .map_err(|e| anyhow::anyhow!("PORT: cannot listen on {}: {e}", settings.port))?;
    let door = Arc::new(Door::new(
        settings.gateway_port,
        settings.trusted_proxies.clone(),
        (settings.hf_framing && settings.space_host.is_some()).then(|| settings.hub_origin.clone()),
        settings.gateway_token.clone(),
        job.meta.clone(),
    ));
    let closed = CancellationToken::new();
    tokio::spawn(frontdoor::serve(listener, door.clone(), closed.clone()));
    info!(
        "front door on port {}; the gateway on 127.0.0.1:{}",
        settings.port, settings.gateway_port
    );
    Ok(Some((door, closed)))
}

/// Periodic backups with jitter until `done`.
async fn backup_loop(job: &Job, store: &dyn Store, interval: Duration, done: &CancellationToken) {
    loop {
        let jitter = interval.mul_f64(rand::rng().random_range(0.0..0.1));
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(interval + jitter) => {}
        }
        // Not raced against `done`: a backup in flight finishes (its blocking half could not be
        // cancelled anyway, and it holds the backup lock); the final backup then follows it.
        match backup::backup_once(job, store, false).await {
            Ok(o) => info!("backup: {o:?}"),
            Err(e) => warn!("backup failed: {e:#}"),
        }
    }
}

/// After the child stopped (its state consistent, its lease released): one last backup,
/// bounded by `deadline` and cut short by a second stop signal.
async fn final_backup(
    job: &Job,
    store: &dyn Store,
    deadline: Duration,
    abort: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        r = tokio::time::timeout(deadline, backup::backup_once(job, store, false)) => match r {
            Ok(Ok(o)) => info!("final backup: {o:?}"),
            Ok(Err(e)) => warn!("final backup failed: {e:#}"),
            Err(_) => warn!("final backup did not finish within {deadline:?} (ENTRYPOINT_BACKUP_DEADLINE); the previous backup stays the latest"),
        },
        () = abort => warn!("final backup aborted by a second stop signal"),
    }
}

/// On exit 78: move the rejected config aside, fall back, and allow exactly one more try.
struct ConfigRecovery<'a> {
    state_dir: std::path::PathBuf,
    settings: &'a Settings,
    retried: bool,
    /// Told when a gateway starts (its status page says "starting" until it answers).
    door: Option<Arc<Door>>,
}

impl Hooks for ConfigRecovery<'_> {
    fn on_spawn(&mut self, _pid: i32) {
        if let Some(d) = &self.door {
            d.set_phase(Phase::Starting {
                since: Instant::now(),
            });
        }
    }

    fn on_config_error(&mut self) -> bool {
        if self.retried {
            error!("the gateway rejected its config again (exit {EX_CONFIG}); not restarting. Fix openclaw.json or OPENCLAW_CONFIG_PATCH");
            if let Some(d) = &self.door {
                d.set_phase(Phase::Stopped {
                    why: "the gateway rejected its configuration. Fix OPENCLAW_CONFIG_PATCH (or \
                          openclaw.json in the data dir) and restart the Space; the logs name the key"
                        .into(),
                });
            }
            return false;
        }
        self.retried = true;
        match openclaw::config::recover(&self.state_dir, self.settings) {
            Ok(what) => {
                warn!("{what}; retrying once");
                true
            }
            Err(e) => {
                error!("cannot recover from the config error: {e:#}");
                false
            }
        }
    }
}

/// An error chain as one line, with any secret value scrubbed.
pub fn one_line(e: &anyhow::Error, settings: &crate::settings::Settings) -> String {
    crate::openclaw::config::redact(format!("{e:#}"), &settings.secrets())
}
