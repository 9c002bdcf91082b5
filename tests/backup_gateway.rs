//! Backup and restore with the real OpenClaw gateway: back up while it runs, restore into a
//! fresh data dir, and start a gateway there under another hostname (a new container): it must
//! answer `/healthz` within 40 s, i.e. not wait for the dead gateway's owner lease. A plain
//! `tar czf` of the live dir (the seed method) carries that lease; restore must clear it.
//!
//! Needs root (`unshare --uts`) and the pinned OpenClaw from `scripts/install-openclaw.sh`;
//! skipped (with a message) otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

const TOKEN: &str = "backup-e2e-token-93c1";

fn openclaw_bin_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/install-openclaw.sh"))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace().nth(1)?.parse().ok()
}

struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Gateway {
    /// `openclaw gateway` on `data` in its own UTS namespace with `hostname`, own process group.
    fn start(oc: &Path, data: &Path, home: &Path, hostname: &str) -> Gateway {
        let port = free_port();
        std::fs::create_dir_all(data.join(".openclaw")).unwrap();
        std::fs::create_dir_all(home).unwrap();
        let cfg = format!(
            r#"{{"gateway":{{"mode":"local","port":{port},"bind":"loopback","auth":{{"mode":"token","token":"${{OPENCLAW_GATEWAY_TOKEN}}"}}}},
               "plugins":{{"entries":{{"huggingface":{{"config":{{"discovery":{{"enabled":false}}}}}}}}}}}}"#
        );
        let cfg_path = data.join(".openclaw/openclaw.json");
        if !cfg_path.exists() {
            std::fs::write(&cfg_path, cfg).unwrap();
        } else {
            // A restored config: only move the port.
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
            v["gateway"]["port"] = port.into();
            std::fs::write(&cfg_path, v.to_string()).unwrap();
        }
        let log = home.join("gateway.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args([
                "--uts",
                "sh",
                "-c",
                &format!("hostname {hostname} && exec openclaw gateway"),
            ])
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    oc.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", home)
            .env("OPENCLAW_HOME", data)
            .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        Gateway { child, port, log }
    }

    fn wait_healthy(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if http_status(self.port, "/healthz") == Some(200) {
                return start.elapsed();
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "gateway exited ({s}) before /healthz:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "no /healthz within {limit:?}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(mut self) {
        let pg = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let pg = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
    }
}

fn entrypoint(data: &Path, store: &Path, home: &Path, args: &[&str]) -> serde_json::Value {
    // A data dir that doesn't exist fails the write probe and falls back to $HOME.
    std::fs::create_dir_all(data).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ENTRYPOINT_DATA_DIR", data)
        .env("ENTRYPOINT_BACKUP_DIR", store)
        .env("ENTRYPOINT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "entrypoint {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn owner_leases(db: &Path) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row(
        "SELECT count(*) FROM state_leases WHERE scope = 'gateway-owner'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn live_backup_restores_and_starts_under_another_hostname() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for unshare --uts");
        return;
    }
    let Some(oc) = openclaw_bin_dir() else {
        eprintln!("skipped: scripts/install-openclaw.sh failed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, store) = (t.join("a"), t.join("store"));

    let mut gw = Gateway::start(&oc, &a, &t.join("home-a"), "container-a");
    let took = gw.wait_healthy(Duration::from_secs(180));
    eprintln!("gateway A healthy after {took:?}");

    // The seed method while it runs: a raw tar (its owner lease included).
    let seed = t.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    let st = Command::new("tar")
        .arg("czf")
        .arg(seed.join("latest_backup.tar.gz"))
        .arg(".openclaw")
        .current_dir(&a)
        .status()
        .unwrap();
    assert!(st.code().is_some_and(|c| c <= 1), "tar failed");
    // Ours, live.
    let up = entrypoint(&a, &store, t, &["backup"]);
    assert_eq!(up["result"], "uploaded", "{up}");
    torture_rounds(&a, &store, t);
    gw.stop();

    // Our archive holds a single-file DB without the lease.
    let x = t.join("x");
    untar(&store.join("latest_backup.tar.gz"), &x);
    assert!(!x.join(".openclaw/state/openclaw.sqlite-wal").exists());
    assert_eq!(owner_leases(&x.join(".openclaw/state/openclaw.sqlite")), 0);

    // The raw seed restores too, with the dead container's lease cleared.
    let out = Command::new("sha256sum")
        .arg("latest_backup.tar.gz")
        .current_dir(&seed)
        .output()
        .unwrap();
    std::fs::write(seed.join("latest_backup.sha256"), &out.stdout).unwrap();
    let c = t.join("c");
    assert_eq!(entrypoint(&c, &seed, t, &["restore"])["result"], "restored");
    assert_eq!(owner_leases(&c.join(".openclaw/state/openclaw.sqlite")), 0);

    // A new container: fresh data dir, another hostname. Restore ours and start.
    let b = t.join("b");
    assert_eq!(
        entrypoint(&b, &store, t, &["restore"])["result"],
        "restored"
    );
    assert!(b.join(".openclaw/state/openclaw.sqlite").exists());
    let mut gw = Gateway::start(&oc, &b, &t.join("home-b"), "container-b");
    // 40 s on a quiet machine; a stale lease would block for ~300 s, so a loaded test box
    // (other builds, other gateways) may take longer without blurring that difference.
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let limit = Duration::from_secs(if load < 4.0 { 40 } else { 150 });
    let took = gw.wait_healthy(limit);
    eprintln!("restored gateway B healthy after {took:?}");
    gw.stop();
}

/// The torture harness's round (tests/torture.rs) on the gateway's own database while the
/// gateway runs: another process writes it at full speed (tables `a`/`b` beside OpenClaw's,
/// WAL checkpoints, VACUUM) and every archive of 5 back-to-back live backups must hold a
/// database passing `integrity_check` with the writer's invariant.
fn torture_rounds(data: &Path, store: &Path, t: &Path) {
    use std::io::BufRead;
    let db = data.join(".openclaw/state/openclaw.sqlite");
    let stop = t.join("stop-writer");
    let mut w = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture/writer.py"))
        .args([db.as_os_str(), "wal".as_ref(), stop.as_os_str()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(w.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    for round in 0..5 {
        let up = entrypoint(data, store, t, &["backup", "--force"]);
        assert_eq!(up["result"], "uploaded", "{up}");
        let x = t.join(format!("torture-{round}"));
        untar(&store.join("latest_backup.tar.gz"), &x);
        let c = Connection::open(x.join(".openclaw/state/openclaw.sqlite")).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let (sa, sb, na, nb): (i64, i64, i64, i64) = c
            .query_row(
                "SELECT (SELECT coalesce(sum(v), 0) FROM a), (SELECT coalesce(sum(v), 0) FROM b), \
                        (SELECT count(*) FROM a), (SELECT count(*) FROM b)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!((sa, na), (sb, nb), "round {round}: the writer's invariant");
        let sessions: i64 = c
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert!(sessions > 2, "OpenClaw's own tables are there too");
    }
    std::fs::write(&stop, "").unwrap();
    w.wait().unwrap();
}

/// `tar xzf archive` into a new dir `into`: the plain way anyone would read a backup.
fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    assert!(Command::new("tar")
        .arg("xzf")
        .arg(archive)
        .current_dir(into)
        .status()
        .unwrap()
        .success());
}
