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
    /// Restore the newest backup that verifies over the state dir (or list the versions).
    Restore {
        /// Restore even while a gateway is running on this state dir.
        #[arg(long)]
        force: bool,
        /// List the versions the store holds, newest first; restores nothing.
        #[arg(long, conflicts_with_all = ["version", "force"])]
        list: bool,
        /// With --list: print JSON instead of a table.
        #[arg(long, requires = "list")]
        json: bool,
        /// Restore exactly this version (an id from --list, or a unique prefix): no fallback.
        #[arg(long, value_name = "ID")]
        version: Option<String>,
    },
    /// Download and check the latest backup, or one version: hash, full archive read,
    /// extraction into a scratch dir and the databases' quick_check; changes nothing.
    Verify {
        /// Check this version (an id from `restore --list`, or a unique prefix).
        #[arg(long, value_name = "ID")]
        version: Option<String>,
    },
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
    /// (default: 15s).
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
            eprintln!("entrypoint: {}", run::one_line(&e, &settings));
            1
        }
    }
}

async fn dispatch(command: Command, settings: &Settings) -> anyhow::Result<i32> {
    let data = datadir::resolve(
        &settings.data_dir_candidate,
        settings.home.as_deref(),
        datadir::Choice::of(settings),
    )?;
    let job = data.job(&settings.backup.excludes);
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
            let service = if data.meta().run_lock_held() {
                service_status(settings).await
            } else {
                None
            };
            print_status(settings, &data, &job, service, json)?;
            Ok(0)
        }
        Command::Backup { force } => {
            let store = open_store(settings, &data).await?;
            let outcome = backup::backup_once(&job, store.as_ref(), force).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
        Command::Restore {
            list: true, json, ..
        } => {
            let store = open_store(settings, &data).await?;
            print_versions(store.as_ref(), json).await?;
            Ok(0)
        }
        Command::Restore { force, version, .. } => {
            let store = open_store(settings, &data).await?;
            if !force && data.meta().run_lock_held() {
                anyhow::bail!(
                    "a gateway is running on {}; stop it first or pass --force",
                    data.state_dir().display()
                );
            }
            let pick = version.map_or(restore::Pick::Newest, restore::Pick::Exactly);
            let outcome =
                restore::restore(&job, store.as_ref(), &pick, &restore::Watch::default()).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
        Command::Verify { version } => {
            let store = open_store(settings, &data).await?;
            let pick = version.map_or(restore::Pick::Newest, restore::Pick::Exactly);
            let outcome = restore::verify(&job, store.as_ref(), &pick).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(0)
        }
    }
}

/// `restore --list`: the store's versions, newest first, as a table or JSON.
async fn print_versions(store: &dyn store::Store, json: bool) -> anyhow::Result<()> {
    let versions = store
        .list_versions()
        .await
        .with_context(|| format!("cannot list the versions in {}", store.describe()))?;
    let where_ = store.describe();
    if json {
        let rows: Vec<serde_json::Value> = versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id, "time": v.time, "size": v.size,
                    "sha256": v.sha256, "store": where_,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if versions.is_empty() {
        println!("no backup in {where_}");
        return Ok(());
    }
    let rows: Vec<[String; 5]> = versions
        .iter()
        .map(|v| {
            [
                v.time.clone().unwrap_or_else(|| "-".into()),
                human_size(v.size),
                v.sha256
                    .as_deref()
                    .map_or_else(|| "(no digest)".into(), |s| s[..12].to_string()),
                where_.clone(),
                v.id.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["TIME", "SIZE", "SHA256", "STORE", "VERSION"], &rows)
    );
    Ok(())
}

/// Left-aligned columns, two spaces apart (the last one unpadded).
fn table(head: &[&str; 5], rows: &[[String; 5]]) -> String {
    let mut width = head.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = width[i]));
            }
        }
        out + "\n"
    };
    let mut out = line(*head);
    for row in rows {
        out += &line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

/// `532 B`, `12.3 KiB`, `1.2 GiB`.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// What the running service's front door says (gateway state, restarts, restore outcome),
/// asked on loopback with the gateway token; None when there is no front door to ask.
async fn service_status(settings: &Settings) -> Option<serde_json::Value> {
    let token = settings.gateway_token.as_ref()?;
    if !settings.front_door {
        return None;
    }
    let url = format!(
        "http://127.0.0.1:{}{}",
        settings.port,
        crate::frontdoor::STATUS_PATH
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()?;
    let r = client
        .get(url)
        .bearer_auth(token.expose())
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn open_store(settings: &Settings, data: &DataDir) -> anyhow::Result<Box<dyn store::Store>> {
    store::open(data.store_settings(&settings.backup).as_ref())
        .await?
        .context(
            "no backup store configured; set HF_DATASET or HF_BUCKET (and HF_TOKEN), or ENTRYPOINT_BACKUP_DIR",
        )
}

fn print_status(
    settings: &Settings,
    data: &DataDir,
    job: &crate::meta::Job,
    service: Option<serde_json::Value>,
    json: bool,
) -> anyhow::Result<()> {
    let last = job.meta.record();
    let status = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": data,
        "state_dir": data.state_dir(),
        "gateway_running": data.meta().run_lock_held(),
        "settings": settings,
        "last_backup": last,
        "service": service,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tables() {
        assert_eq!(human_size(532), "532 B");
        assert_eq!(human_size(12_595), "12.3 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        let t = table(
            &["A", "BB", "C", "D", "E"],
            &[["1".into(), "2".into(), "333".into(), "4".into(), "5".into()]],
        );
        assert_eq!(t, "A  BB  C    D  E\n1  2   333  4  5\n");
    }

    #[test]
    fn restore_flags_combine_sensibly() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["entrypoint"], args].concat());
        assert!(parse(&["restore", "--list", "--json"]).is_ok());
        assert!(
            parse(&["restore", "--json"]).is_err(),
            "--json needs --list"
        );
        assert!(parse(&["restore", "--list", "--version", "x"]).is_err());
        assert!(parse(&["restore", "--version", "x", "--force"]).is_ok());
        assert!(parse(&["verify", "--version", "x"]).is_ok());
    }
}
