//! `entrypoint run`: the service. Data dir -> restore -> config -> supervise, with periodic
//! backups beside it and a final one after the child stopped.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backup;
use crate::datadir::{self, DataDir};
use crate::keepalive;
use crate::meta::Job;
use crate::openclaw;
use crate::restore;
use crate::settings::{RestartPolicy, Settings};
use crate::store::{self, Store};
use crate::supervisor::{self, Hooks, Policy, Supervisor, EX_CONFIG};

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
    fs::create_dir_all(data.meta_dir())?;
    let _run_lock = lock_run(&data)?;

    let job = Job {
        state_dir: data.state_dir(),
        meta_dir: data.meta_dir(),
        excludes: settings.backup.excludes.clone(),
    };
    let store = store::open(data.store_settings(&settings.backup).as_ref()).await?;
    match &store {
        None => info!("backups are off: set HF_DATASET (and HF_TOKEN) or ENTRYPOINT_BACKUP_DIR to keep state across restarts"),
        Some(s) => restore_at_start(&job, s.as_ref()).await,
    }

    if is_openclaw {
        let written = openclaw::config::write(&job.state_dir, settings)?;
        info!("openclaw.json: {written:?}");
    }

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(ka) = settings.keepalive.clone() {
        tasks.spawn(keepalive::run(ka, shutdown.clone()));
    }
    if let (true, true, Some(token)) = (
        is_openclaw,
        settings.auto_pair,
        settings.gateway_token.clone(),
    ) {
        tasks.spawn(crate::pairing::run(settings.port, token, shutdown.clone()));
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
    };
    let code = match &store {
        None => sup.run(spec, policy, &mut hooks, shutdown.clone()).await,
        Some(store) => {
            let loop_done = shutdown.child_token();
            let (code, ()) = tokio::join!(
                async {
                    let c = sup.run(spec, policy, &mut hooks, shutdown.clone()).await;
                    loop_done.cancel();
                    c
                },
                backup_loop(
                    &job,
                    store.as_ref(),
                    settings.backup.interval,
                    loop_done.clone()
                ),
            );
            final_backup(
                &job,
                store.as_ref(),
                settings.backup.final_deadline,
                sup.second_signal(),
            )
            .await;
            code
        }
    };
    shutdown.cancel();
    tasks.shutdown().await;
    info!(code, "exiting");
    Ok(code)
}

/// Restore before the child starts. Errors never stop the service: the state on disk is kept
/// and `backup` refuses to upload until a restore succeeds or a backup is forced.
async fn restore_at_start(job: &Job, store: &dyn Store) {
    let t = Instant::now();
    match restore::restore_latest(job, store).await {
        Ok(restore::Outcome::NoBackup) => info!("no backup in {}: fresh start", store.describe()),
        // A fallback was already said in one warning line by the restore itself.
        Ok(outcome) if !outcome.skipped().is_empty() => {}
        Ok(outcome) => info!(
            ms = t.elapsed().as_millis() as u64,
            "restore from {}: {outcome}",
            store.describe()
        ),
        Err(e) => error!(
            "RESTORE FAILED from {}: {e:#}. Keeping the state on disk and starting anyway; \
             backups stay paused until a restore succeeds (or run `entrypoint backup --force`)",
            store.describe()
        ),
    }
}

/// Periodic backups with jitter until `done`.
async fn backup_loop(job: &Job, store: &dyn Store, interval: Duration, done: CancellationToken) {
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
async fn final_backup(job: &Job, store: &dyn Store, deadline: Duration, abort: CancellationToken) {
    tokio::select! {
        r = tokio::time::timeout(deadline, backup::backup_once(job, store, false)) => match r {
            Ok(Ok(o)) => info!("final backup: {o:?}"),
            Ok(Err(e)) => warn!("final backup failed: {e:#}"),
            Err(_) => warn!("final backup did not finish within {deadline:?} (ENTRYPOINT_BACKUP_DEADLINE); the previous backup stays the latest"),
        },
        _ = abort.cancelled() => warn!("final backup aborted by a second stop signal"),
    }
}

/// On exit 78: move the rejected config aside, fall back, and allow exactly one more try.
struct ConfigRecovery<'a> {
    state_dir: std::path::PathBuf,
    settings: &'a Settings,
    retried: bool,
}

impl Hooks for ConfigRecovery<'_> {
    fn on_config_error(&mut self) -> bool {
        if self.retried {
            error!("the gateway rejected its config again (exit {EX_CONFIG}); not restarting. Fix openclaw.json or OPENCLAW_CONFIG_PATCH");
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

/// Held for the life of `run`, so `restore` can tell that a gateway is using the state dir.
fn lock_run(data: &DataDir) -> anyhow::Result<Flock<fs::File>> {
    let path = data.meta_dir().join(crate::meta::RUN_LOCK);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "another entrypoint is already running on {} ({e}); stop it first",
            data.root.display()
        )
    })
}

/// True when a `run` holds the lock on this data dir.
pub fn gateway_running(data: &DataDir) -> bool {
    let path = data.meta_dir().join(crate::meta::RUN_LOCK);
    let Ok(file) = fs::OpenOptions::new().write(true).open(Path::new(&path)) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

/// An error chain as one line, with any secret value scrubbed.
pub fn one_line(e: &anyhow::Error, settings: &crate::settings::Settings) -> String {
    crate::openclaw::config::redact(format!("{e:#}"), &settings.secrets())
}
