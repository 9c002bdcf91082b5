//! End to end: the seed's promise, in a real browser through an HF-like proxy.
//!
//! A small "Space" built from network namespaces (`tests/e2e/netns.sh`): `entrypoint run` is
//! PID 1 of a PID namespace inside `<P>-space` and supervises the real OpenClaw gateway, with a
//! local-folder store (`ENTRYPOINT_BACKUP_DIR`) and a fake Anthropic-Messages model provider on
//! loopback; nginx in `<P>-proxy` plays HF's proxy (forwarded headers, WebSocket upgrades) from
//! a 10.x address; headless Chromium in `<P>-client` opens `http://space.test/`, enters the
//! token, must reach "Connected" (auto-pairing, `src/pairing.rs`), chats with the fake model,
//! and after a restart of the Space (SIGTERM -> final backup, data dir wiped, start again:
//! restore) reconnects and finds the earlier conversation. Also: no token or a wrong token never
//! connects, and forwarded headers from a peer outside `trustedProxies` get 403.
//!
//! Needs root, `scripts/install-openclaw.sh` and `scripts/e2e-deps.sh` (both idempotent; the
//! test runs them), ~1.5 GB RAM and a few minutes, hence `#[ignore]`: CI runs it with
//! `cargo test --test e2e_space -- --ignored --nocapture`. Screenshots and logs go to
//! `$CARGO_TARGET_DIR/e2e-artifacts/`.

mod support;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::pid1::wait_for;

const HOST: &str = "space.test";
/// Stands in for huggingface.co: its page frames the Space (the App tab); `HF_ENDPOINT`.
const HUB: &str = "hub.test";
const PROXY_IP: &str = "192.168.77.1";
const SPACE_IP: &str = "10.77.0.2";
const PORT: u16 = 7860;
const MODEL_PORT: u16 = 18999;
const REPLY: &str = "PONG-E2E: the fake model answered";
/// Generous: the gateway takes 10-20 s to open its port on an idle 2-vCPU box, much more
/// under the load of parallel test runs.
const START_DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run a setup script and return its last stdout line (the path it prints).
fn script_path(script: &str, path_prepend: Option<&Path>) -> PathBuf {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join(script)).stderr(Stdio::inherit());
    if let Some(p) = path_prepend {
        cmd.env("PATH", prepend_path(p));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{script}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}); see its output above",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

fn prepend_path(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything the test started, torn down in reverse on drop (also when an assertion fails).
struct World {
    prefix: String,
    ns_script: PathBuf,
    oc_bin: PathBuf,
    node_modules: PathBuf,
    tmp: tempfile::TempDir,
    artifacts: PathBuf,
    token: String,
    /// Fake provider, nginx.
    daemons: Vec<Child>,
    /// `ip netns exec … unshare … entrypoint run`: its only child is the entrypoint (PID 1).
    space: Option<Child>,
    space_runs: u32,
    /// What was measured, written to `timings.json` among the artifacts.
    timings: Vec<(String, u64)>,
}

impl World {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn in_ns(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(name)]).arg(program);
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn store_dir(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    fn log_file(&self, name: &str) -> File {
        File::create(self.artifacts.join(name)).expect("artifact log")
    }

    fn up() -> World {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the end-to-end test needs root (network and PID namespaces)"
        );
        let oc_bin = script_path("scripts/install-openclaw.sh", None);
        let node_modules = script_path("scripts/e2e-deps.sh", Some(&oc_bin));
        let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("e2e-artifacts");
        let _ = fs::remove_dir_all(&artifacts);
        fs::create_dir_all(&artifacts).expect("artifacts dir");
        let prefix = format!("oce{}", std::process::id() % 100_000);
        let ns_script = repo().join("tests/e2e/netns.sh");
        let _ = Command::new("bash")
            .arg(&ns_script)
            .args(["down", &prefix])
            .status();
        run_ok(Command::new("bash").arg(&ns_script).args(["up", &prefix]));
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["data", "store", "home", "nginx", "profile"] {
            fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        let token = format!("e2e-{:x}{:x}", std::process::id(), epoch_ms());
        let mut w = World {
            prefix,
            ns_script,
            oc_bin,
            node_modules,
            tmp,
            artifacts,
            token,
            daemons: Vec::new(),
            space: None,
            space_runs: 0,
            timings: Vec::new(),
        };
        w.start_model();
        w.start_proxy();
        w
    }

    fn start_model(&mut self) {
        let log = self.artifacts.join("fake-provider.log");
        let child = self
            .in_ns("space", self.oc_bin.join("node"))
            .arg(repo().join("tests/e2e/fake-provider.mjs"))
            .args([&MODEL_PORT.to_string(), REPLY])
            .stdout(File::create(&log).expect("log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fake provider");
        self.daemons.push(child);
        wait_for(
            Duration::from_secs(30),
            "the fake model provider to listen",
            || {
                fs::read_to_string(&log)
                    .ok()
                    .filter(|l| l.contains("listening"))
                    .map(|_| ())
            },
        );
    }

    fn start_proxy(&mut self) {
        let dir = self.tmp.path().join("nginx");
        let conf = fs::read_to_string(repo().join("tests/e2e/nginx.conf.in"))
            .expect("nginx template")
            .replace("@DIR@", &dir.display().to_string())
            .replace("@LISTEN@", &format!("{PROXY_IP}:80"))
            .replace("@UPSTREAM@", &format!("{SPACE_IP}:{PORT}"))
            .replace("@HUB@", HUB)
            .replace("@SPACE@", HOST);
        fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let child = self
            .in_ns("proxy", "nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(self.log_file("nginx.out"))
            .stderr(self.log_file("nginx.err"))
            .spawn()
            .expect("nginx");
        self.daemons.push(child);
        wait_for(Duration::from_secs(30), "nginx to listen", || {
            let s = self.curl_status("client", &format!("http://{PROXY_IP}/"), &[]);
            (s != "000").then_some(())
        });
    }

    /// Start the Space: `entrypoint run` as PID 1 of a new PID namespace in `<P>-space`.
    fn start_space(&mut self) -> u64 {
        self.space_runs += 1;
        let patch = json!({
            "models": {"mode": "merge", "providers": {"minimax": {
                "api": "anthropic-messages",
                "baseUrl": format!("http://127.0.0.1:{MODEL_PORT}/anthropic"),
                "apiKey": "${MINIMAX_API_KEY}",
                "models": [{"id": "MiniMax-M2", "name": "MiniMax M2"}]}}},
            "agents": {"defaults": {"model": "minimax/MiniMax-M2"}},
            // No network beyond the namespaces: don't wait on the HF router's live catalog.
            "plugins": {"entries": {"huggingface": {"config": {"discovery": {"enabled": false}}}}}
        });
        let mut cmd = self.in_ns("space", "unshare");
        cmd.args(["--pid", "--fork", "--mount-proc"])
            .arg(env!("CARGO_BIN_EXE_entrypoint"))
            .arg("run")
            .env_clear()
            .env("PATH", prepend_path(&self.oc_bin))
            .env("HOME", self.tmp.path().join("home"))
            .env("ENTRYPOINT_DATA_DIR", self.data_dir())
            .env("ENTRYPOINT_BACKUP_DIR", self.store_dir())
            .env("ENTRYPOINT_LOG_FORMAT", "human")
            // The gateway drains for up to 315 s; under the load of parallel runs 10 s (the
            // default) is not always enough for a clean stop.
            .env("ENTRYPOINT_STOP_TIMEOUT", "60s")
            .env("OPENCLAW_GATEWAY_TOKEN", &self.token)
            .env("MINIMAX_API_KEY", "mk-e2e-fake-key")
            .env("PORT", PORT.to_string())
            .env("SPACE_HOST", HOST)
            // The Hub whose Space page may frame the app (https://huggingface.co on HF).
            .env("HF_ENDPOINT", format!("http://{HUB}"))
            // HF is https://$SPACE_HOST (allowed by default); this proxy is plain http.
            .env("OPENCLAW_ALLOWED_ORIGINS", format!("http://{HOST}"))
            .env("OPENCLAW_CONFIG_PATCH", patch.to_string());
        // stdout and stderr to the same file: open once, share the handle.
        let log = self.log_file(&format!("entrypoint-{}.log", self.space_runs));
        cmd.stdout(log.try_clone().expect("clone")).stderr(log);
        let started = epoch_ms();
        self.space = Some(cmd.spawn().expect("entrypoint"));
        started
    }

    fn entrypoint_log(&self, run: u32) -> String {
        fs::read_to_string(self.artifacts.join(format!("entrypoint-{run}.log"))).unwrap_or_default()
    }

    /// SIGTERM the Space's PID 1 and wait for it to exit; returns its exit code.
    fn stop_space(&mut self) -> i32 {
        let child = self.space.as_mut().expect("space running");
        let outer = child.id() as i32;
        let pid1 = wait_for(
            Duration::from_secs(10),
            "the entrypoint (PID 1) to exist",
            || support::pid1::children(outer).first().copied(),
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid1),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let asked = Instant::now();
        let status = wait_for(
            Duration::from_secs(120),
            "the Space to stop after SIGTERM",
            || child.try_wait().ok().flatten(),
        );
        self.space = None;
        self.timings.push((
            format!(
                "stop-{}: SIGTERM -> exit (final backup included), ms",
                self.space_runs
            ),
            asked.elapsed().as_millis() as u64,
        ));
        status.code().unwrap_or(-1)
    }

    /// HTTP status of a request made with curl from namespace `ns` ("000": no answer).
    fn curl_status(&self, ns: &str, url: &str, headers: &[&str]) -> String {
        let mut c = self.in_ns(ns, "curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--http1.1",
        ]);
        for h in headers {
            c.args(["-H", h]);
        }
        let out = c.arg(url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Run one browser scenario (`tests/e2e/browser.mjs`) in the client namespace.
    fn browser(
        &mut self,
        name: &str,
        profile: &str,
        token: Option<&str>,
        extra: Value,
    ) -> (bool, Vec<Value>) {
        let mut scenario = json!({
            "url": format!("http://{HOST}/"), "host": HOST, "proxy": PROXY_IP,
            "profile": self.tmp.path().join("profile").join(profile),
            "token": token, "shots": self.artifacts, "name": name, "deadlineMs": START_DEADLINE.as_millis() as u64,
        });
        if let (Some(s), Some(e)) = (scenario.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let mut child = self
            .in_ns("client", self.oc_bin.join("node"))
            .arg(repo().join("tests/e2e/browser.mjs"))
            .arg(scenario.to_string())
            .env("E2E_NODE_MODULES", &self.node_modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("browser driver");
        // The driver has its own deadline; stop early if the Space died meanwhile.
        wait_for(
            START_DEADLINE + Duration::from_secs(60),
            "the browser driver",
            || {
                if let Some(space) = self.space.as_mut() {
                    if let Ok(Some(status)) = space.try_wait() {
                        let _ = child.kill();
                        panic!(
                            "the Space exited ({status}) while browser {name} ran; log:\n{}",
                            self.entrypoint_log(self.space_runs)
                        );
                    }
                }
                child.try_wait().ok().flatten()
            },
        );
        let out = child.wait_with_output().expect("browser output");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        fs::write(self.artifacts.join(format!("{name}.jsonl")), &out.stdout).expect("browser log");
        eprintln!(
            "browser {name}: {}",
            lines.last().map(Value::to_string).unwrap_or_default()
        );
        (out.status.success(), lines)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.space.take() {
            // Killing PID 1 of the PID namespace kills everything in it.
            for pid in support::pid1::children(c.id() as i32) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // SIGTERM first: a SIGKILLed nginx master would orphan its worker.
        for c in self.daemons.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("bash")
            .arg(&self.ns_script)
            .args(["down", &self.prefix])
            .status();
    }
}

fn event_at(lines: &[Value], event: &str) -> Option<u64> {
    lines
        .iter()
        .find(|l| l["event"] == event)
        .and_then(|l| l["at"].as_u64())
}

#[test]
fn space_end_to_end() {
    // CI runs as root; elsewhere this needs namespaces we cannot make.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the end-to-end test needs root (network and PID namespaces)");
        return;
    }
    let mut w = World::up();
    let t = Instant::now();

    // 1. First boot: empty store, fresh start.
    let started = w.start_space();
    let message = format!("hello from the e2e test {}", std::process::id());
    let (ok, lines) = w.browser(
        "first",
        "alice",
        Some(&w.token.clone()),
        json!({"expect": "connected", "message": message, "reply": REPLY}),
    );
    assert!(
        ok,
        "first browser did not reach Connected + reply; see {}",
        w.artifacts.display()
    );
    let first_connected = event_at(&lines, "connected").expect("connected event");
    w.timings.push((
        "boot-1: entrypoint start -> Connected (fresh state, one auto-pairing), ms".into(),
        first_connected - started,
    ));
    if let (Some(sent), Some(reply)) = (event_at(&lines, "sent"), event_at(&lines, "reply")) {
        w.timings.push((
            "chat: message sent -> fake model's reply shown, ms".into(),
            reply - sent,
        ));
    }
    eprintln!(
        "first boot: entrypoint start -> Connected {} ms",
        first_connected - started
    );
    assert!(
        w.entrypoint_log(1)
            .contains("pairing: approved Control UI browser"),
        "the browser was paired by the entrypoint"
    );
    let model_log = fs::read_to_string(w.artifacts.join("fake-provider.log")).unwrap_or_default();
    assert!(
        model_log.contains("/v1/messages"),
        "the gateway called the fake model: {model_log}"
    );

    // 2. Without the token, or with a wrong one: never Connected (and no pairing request).
    let (ok, lines) = w.browser("no-token", "mallory1", None, json!({"expect": "denied"}));
    assert!(
        ok,
        "a browser without the token must not connect: {:?}",
        lines.last()
    );
    let (ok, lines) = w.browser(
        "wrong-token",
        "mallory2",
        Some("not-the-token"),
        json!({"expect": "denied"}),
    );
    assert!(
        ok,
        "a browser with a wrong token must not connect: {:?}",
        lines.last()
    );
    let errors = lines
        .last()
        .map(|l| l["connectErrors"].to_string())
        .unwrap_or_default();
    assert!(
        errors.contains("AUTH_"),
        "the gateway refused at the auth stage: {errors}"
    );
    assert_eq!(
        w.entrypoint_log(1)
            .matches("pairing: approved Control UI browser")
            .count(),
        1,
        "nothing else got paired"
    );

    // 3. Forwarded headers from a peer outside trustedProxies (10.0.0.0/8): 403. The same
    //    upgrade through the proxy, or without forwarded headers, gets past that check.
    let ws = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Origin: http://space.test",
    ];
    let spoofed: Vec<&str> = ws
        .iter()
        .copied()
        .chain(["X-Forwarded-For: 203.0.113.9"])
        .collect();
    let direct = format!("http://{SPACE_IP}:{PORT}/");
    assert_eq!(
        w.curl_status("client", &direct, &spoofed),
        "403",
        "untrusted peer with X-Forwarded-For"
    );
    assert_eq!(
        w.curl_status("client", &direct, &ws),
        "101",
        "control: the same peer without forwarded headers"
    );
    assert_eq!(
        w.curl_status("client", &format!("http://{PROXY_IP}/"), &ws),
        "101",
        "control: through the trusted proxy"
    );

    // 3b. The Space page's App tab: the app inside an iframe of the Hub's page (another
    //     origin) reaches Connected and a chat reply there; the front door let only the Hub
    //     frame it.
    let framed = format!("framed {}", std::process::id());
    let (ok, lines) = w.browser(
        "iframe",
        "carol",
        Some(&w.token.clone()),
        json!({"expect": "connected", "message": framed, "reply": REPLY,
               "url": format!("http://{HUB}/"), "embedded": true, "hub": HUB}),
    );
    assert!(
        ok,
        "the app framed by the Hub's page did not reach Connected + reply: {:?}; see {}",
        lines.last(),
        w.artifacts.display()
    );

    // 4. Restart the Space: SIGTERM (final backup), wipe the data dir, start again (restore).
    let code = w.stop_space();
    assert_eq!(
        code,
        0,
        "entrypoint exit code after SIGTERM; log:\n{}",
        w.entrypoint_log(1)
    );
    assert!(
        w.store_dir().join("latest_backup.tar.gz").exists(),
        "the final backup is in the store"
    );
    assert!(
        w.entrypoint_log(1).contains("final backup:"),
        "final backup ran: {}",
        w.entrypoint_log(1)
    );
    fs::remove_dir_all(w.data_dir()).expect("wipe data dir");
    fs::create_dir_all(w.data_dir()).expect("mkdir data dir");

    let started = w.start_space();
    let (ok, lines) = w.browser(
        "after-restart",
        "alice",
        Some(&w.token.clone()),
        json!({"expect": "connected", "history": [message, REPLY]}),
    );
    assert!(
        ok,
        "after a restart the same browser reconnects and sees the earlier conversation: {:?}",
        lines.last()
    );
    let reconnected = event_at(&lines, "connected").expect("connected event");
    w.timings.push((
        "boot-2: entrypoint start -> Connected (restore included), ms".into(),
        reconnected - started,
    ));
    eprintln!(
        "restart: entrypoint start -> Connected {} ms (restore included)",
        reconnected - started
    );
    assert!(
        w.entrypoint_log(2).contains("restore from"),
        "the second boot restored: {}",
        w.entrypoint_log(2)
    );
    let repaired = w
        .entrypoint_log(2)
        .contains("pairing: approved Control UI browser");
    eprintln!(
        "restart: browser pairing {}",
        if repaired {
            "was approved again"
        } else {
            "survived in the restored state"
        }
    );

    // 5. Quiet about secrets: the token never reaches the entrypoint's (or gateway's) output.
    for run in 1..=w.space_runs {
        assert!(
            !w.entrypoint_log(run).contains(&w.token),
            "the gateway token leaked into entrypoint-{run}.log"
        );
    }
    let code = w.stop_space();
    assert_eq!(code, 0);
    let timings: serde_json::Map<String, Value> = w
        .timings
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    eprintln!(
        "timings: {}",
        serde_json::to_string_pretty(&timings).unwrap_or_default()
    );
    fs::write(
        w.artifacts.join("timings.json"),
        Value::Object(timings).to_string(),
    )
    .expect("timings.json");
    eprintln!(
        "end to end done in {:?}; artifacts in {}",
        t.elapsed(),
        w.artifacts.display()
    );
}
