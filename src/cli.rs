//! Command line: parse, load settings, dispatch. Thin on purpose: the work is in `run`,
//! `backup` and `restore`.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::backup;
use crate::datadir::{self, DataDir};
use crate::logging;
use crate::openclaw;
use crate::restore;
use crate::run;
use crate::settings::{parse_duration, Env, LogFormat, Overrides, RestartPolicy, Settings};
use crate::store;

#[derive(Debug, Parser)]
#[command(
    name = "entrypoint",
    version,
    about = "PID 1 for the OpenClaw gateway on a Hugging Face Space: supervise, configure, back up, restore."
)]
struct Cli {
    /// Log format [env: ENTRYPOINT_LOG_FORMAT] (default: human).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Restore, write the config, supervise the gateway (or CMD) and back up (the default).
    Run(RunArgs),
    /// Take one backup now.
    Backup {
        /// Upload even if nothing changed, or if the last restore failed.
        #[arg(long)]
        force: bool,
    },
    /// Restore the latest backup over the state dir.
    Restore {
        /// Restore even while a gateway is running on this state dir.
        #[arg(long)]
        force: bool,
    },
    /// Download and check the latest backup (hash and full archive read); changes nothing.
    Verify,
    /// Show resolved settings, data dir and the last backup (secrets redacted).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the openclaw.json that `run` would write (secrets redacted).
    Config,
}

#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// When to restart the child [env: ENTRYPOINT_RESTART] (default: on-failure for the
    /// gateway, never for an explicit CMD).
    #[arg(long, value_enum)]
    restart: Option<RestartPolicy>,
    /// Grace between SIGTERM and SIGKILL when stopping the child [env: ENTRYPOINT_STOP_TIMEOUT]
    /// (default: 10s).
    #[arg(long, value_parser = parse_duration)]
    stop_timeout: Option<Duration>,
    /// The program to supervise instead of `openclaw gateway`.
    #[arg(last = true)]
    cmd: Vec<OsString>,
}

/// Parse, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    let overrides = match &command {
        Command::Run(a) => Overrides {
            restart: a.restart,
            stop_timeout: a.stop_timeout,
            log_format: cli.log_format,
        },
        _ => Overrides {
            log_format: cli.log_format,
            ..Default::default()
        },
    };
    let settings = match Settings::load(&Env::from_process(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("entrypoint: {e}");
            return 2;
        }
    };
    logging::init(settings.log_format, &settings.log_filter);

    if let Command::Run(args) = command {
        let cmd = (!args.cmd.is_empty()).then_some(args.cmd);
        return run::main(settings, cmd);
    }

    let runtime = match run::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("entrypoint: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(command, &settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("entrypoint: {}", one_line(&e, &settings));
            1
        }
    }
}

/// An error chain as one line, with any secret value scrubbed.
pub fn one_line(e: &anyhow::Error, settings: &Settings) -> String {
    openclaw::config::redact(format!("{e:#}"), &settings.secrets())
}

async fn dispatch(command: Command, settings: &Settings) -> anyhow::Result<i32> {
    let data = datadir::resolve(&settings.data_dir_candidate, settings.home.as_deref())?;
    let job = backup::Job {
        state_dir: data.state_dir(),
        meta_dir: data.meta_dir(),
        excludes: settings.backup.excludes.clone(),
    };
    match command {
        Command::Run(_) => unreachable!("handled before the runtime starts"),
        Command::Config => {
            let merged = match openclaw::config::load_existing(
                &data.state_dir().join(openclaw::config::FILE_NAME),
            )? {
                openclaw::config::Existing::Json(v) | openclaw::config::Existing::Json5(v) => v,
                _ => serde_json::json!({}),
            };
            let mut config = openclaw::config::apply_owned(merged, settings);
            crate::settings::redact_secret_values(&mut config);
            let text = serde_json::to_string_pretty(&config)?;
            println!("{}", openclaw::config::redact(text, &settings.secrets()));
            Ok(0)
        }
        Command::Status { json } => {
            print_status(settings, &data, &job, json)?;
            Ok(0)
        }
        Command::Backup { force } => {
            let store = open_store(settings).await?;
            let outcome = backup::backup_once(&job, store.as_ref(), force).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
        Command::Restore { force } => {
            let store = open_store(settings).await?;
            if !force && run::gateway_running(&data) {
                anyhow::bail!(
                    "a gateway is running on {}; stop it first or pass --force",
                    data.state_dir().display()
                );
            }
            let outcome = restore::restore_latest(&job, store.as_ref()).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
        Command::Verify => {
            let store = open_store(settings).await?;
            let outcome = restore::verify_latest(&job, store.as_ref()).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Box<dyn store::Store>> {
    store::open(settings.backup.store.as_ref()).await?.context(
        "no backup store configured; set HF_DATASET (and HF_TOKEN) or ENTRYPOINT_BACKUP_DIR",
    )
}

fn print_status(
    settings: &Settings,
    data: &DataDir,
    job: &backup::Job,
    json: bool,
) -> anyhow::Result<()> {
    let last = backup::last_record(&job.meta_dir);
    let status = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": data,
        "state_dir": data.state_dir(),
        "gateway_running": run::gateway_running(data),
        "settings": settings,
        "last_backup": last,
    });
    let text = if json {
        serde_json::to_string_pretty(&status)?
    } else {
        human_status(&status)
    };
    println!("{}", openclaw::config::redact(text, &settings.secrets()));
    Ok(())
}

/// `key: value` lines, nested keys dotted.
fn human_status(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::String(s) => out.push(format!("{prefix}: {s}")),
            other => out.push(format!("{prefix}: {other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("\n")
}
