//! End to end with the real OpenClaw gateway (issue 2): `entrypoint run` as PID 1 in a fresh PID
//! namespace writes a config the gateway accepts, the gateway answers on the port with token
//! auth, user keys survive restarts, a broken config is set aside once (exit 78), and SIGTERM
//! stops everything cleanly within the grace period. The token never appears in our output.
//!
//! Needs root (for `unshare`) and the pinned OpenClaw from `scripts/install-openclaw.sh`.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::pid1::{children, wait_for};

const TOKEN: &str = "e2e-token-5f1c9a7d3b";

/// One gateway at a time: each takes ~1 GB and most of both cores while starting.
static GATEWAY: Mutex<()> = Mutex::new(());

fn openclaw_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/install-openclaw.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/install-openclaw.sh");
        assert!(out.status.success(), "scripts/install-openclaw.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct Space {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    home: PathBuf,
    port: u16,
}

impl Space {
    fn new() -> Space {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Space {
            data,
            home,
            port: free_port(),
            _tmp: tmp,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.data.join(".openclaw/openclaw.json")
    }

    fn command(&self, pid1: bool) -> Command {
        let bin = env!("CARGO_BIN_EXE_entrypoint");
        let mut c = if pid1 {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", bin]);
            c
        } else {
            Command::new(bin)
        };
        let path = format!(
            "{}:{}",
            openclaw_bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("ENTRYPOINT_DATA_DIR", &self.data)
            .env("PORT", self.port.to_string())
            .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
            .env("SPACE_HOST", "alice-claw.hf.space")
            // The HF provider's live catalogue is unreachable here; don't wait on it.
            .env("OPENCLAW_CONFIG_PATCH", r#"{"plugins":{"entries":{"huggingface":{"config":{"discovery":{"enabled":false}}}}}}"#)
            .env("ENTRYPOINT_STOP_TIMEOUT", "20s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn start(&self) -> Running {
        let mut child = self
            .command(true)
            .arg("run")
            .spawn()
            .expect("spawn entrypoint");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Running {
            child,
            out,
            err,
            port: self.port,
        }
    }
}

/// Read a pipe to the end on a thread (so the child never blocks on a full pipe).
fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

struct Running {
    child: Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
    port: u16,
}

impl Running {
    /// PID 1 of the namespace, as seen from here: the only child of `unshare`.
    fn pid1(&self) -> i32 {
        let unshare = self.child.id() as i32;
        wait_for(Duration::from_secs(5), "unshare's child", || {
            children(unshare).first().copied()
        })
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid1()), sig).unwrap();
    }

    /// Wait for the process to exit within `limit`; returns (code, combined output).
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let s = self.child.wait().unwrap();
                let out = self.out.join().unwrap() + &self.err.join().unwrap();
                panic!("entrypoint did not exit within {limit:?} ({s:?}); output:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.out.join().unwrap() + &self.err.join().unwrap();
        (status.code(), out)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn http_status(port: u16, path: &str, bearer: Option<&str>) -> Option<u16> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut req = client.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().ok().map(|r| r.status().as_u16())
}

/// Poll the gateway's `/readyz` through the front door until 200 (the door's own `/healthz`
/// answers from the first second, and its status page stands in for `/readyz` until the
/// gateway answers), failing with the output if the process dies or time runs out.
fn wait_healthy(r: &mut Running, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_for(limit, "the gateway's /readyz 200", || {
        assert!(
            r.alive(),
            "entrypoint exited before the gateway was healthy"
        );
        (http_status(r.port, "/readyz", None) == Some(200)).then_some(())
    });
    start.elapsed()
}

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root for unshare --pid");
        return true;
    }
    false
}

#[test]
fn gateway_runs_under_pid1_with_token_auth_and_stops_cleanly() {
    if skip() {
        return;
    }
    let _one = GATEWAY.lock().unwrap_or_else(|e| e.into_inner());
    let space = Space::new();

    // The config the entrypoint writes passes OpenClaw's own validator.
    let cfg = space.command(false).arg("config").output().unwrap();
    assert!(
        cfg.status.success(),
        "{}",
        String::from_utf8_lossy(&cfg.stderr)
    );
    std::fs::create_dir_all(space.config_path().parent().unwrap()).unwrap();
    std::fs::write(space.config_path(), &cfg.stdout).unwrap();
    let validate = Command::new(openclaw_bin_dir().join("openclaw"))
        .args(["config", "validate", "--json"])
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", openclaw_bin_dir().display()),
        )
        .env("HOME", &space.home)
        .env("OPENCLAW_HOME", &space.data)
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&validate.stdout);
    assert!(
        validate.status.success() && v.contains("\"valid\":true"),
        "validate: {v} {}",
        String::from_utf8_lossy(&validate.stderr)
    );

    // A key the user added survives entrypoint restarts.
    let mut user: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    user["agents"]["defaults"]["models"] =
        serde_json::json!({"huggingface/deepseek-ai/DeepSeek-R1": {"alias": "R1 (user)"}});
    std::fs::write(
        space.config_path(),
        serde_json::to_vec_pretty(&user).unwrap(),
    )
    .unwrap();

    let mut r = space.start();
    let took = wait_healthy(&mut r, Duration::from_secs(120));
    eprintln!("healthz after {took:?}");
    assert_eq!(
        http_status(space.port, "/control-ui-config.json", Some(TOKEN)),
        Some(200)
    );
    assert_eq!(
        http_status(space.port, "/control-ui-config.json", None),
        Some(401)
    );
    assert_eq!(
        http_status(space.port, "/control-ui-config.json", Some("wrong-token")),
        Some(401)
    );

    let t = Instant::now();
    r.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, out) = r.wait(Duration::from_secs(25));
    assert_eq!(code, Some(0), "output:\n{out}");
    eprintln!("SIGTERM -> exit in {:?}", t.elapsed());
    assert!(!out.contains(TOKEN), "the token leaked into the output");
    // Nothing listens any more: the whole gateway went with PID 1.
    assert_eq!(http_status(space.port, "/healthz", None), None);

    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(space.config_path()).unwrap()).unwrap();
    assert_eq!(
        after["agents"]["defaults"]["models"]["huggingface/deepseek-ai/DeepSeek-R1"]["alias"],
        "R1 (user)"
    );
    assert_eq!(
        after["gateway"]["auth"]["token"],
        "${OPENCLAW_GATEWAY_TOKEN}"
    );
    assert!(!std::fs::read_to_string(space.config_path())
        .unwrap()
        .contains(TOKEN));
}

#[test]
fn broken_config_is_set_aside_once_and_the_gateway_starts() {
    if skip() {
        return;
    }
    let _one = GATEWAY.lock().unwrap_or_else(|e| e.into_inner());
    let space = Space::new();
    // Valid JSON, invalid for OpenClaw's strict schema: the gateway exits 78.
    std::fs::create_dir_all(space.config_path().parent().unwrap()).unwrap();
    std::fs::write(
        space.config_path(),
        r#"{"gateway":{"bogusKey":true},"channels":{}}"#,
    )
    .unwrap();
    let mut r = space.start();
    wait_healthy(&mut r, Duration::from_secs(150));
    r.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, out) = r.wait(Duration::from_secs(25));
    assert_eq!(code, Some(0), "output:\n{out}");
    assert!(out.contains("exit 78"), "the recovery is logged:\n{out}");
    let kept: Vec<_> = std::fs::read_dir(space.config_path().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("rejected-by-gateway"))
        .collect();
    assert_eq!(kept.len(), 1, "the broken file is kept aside: {kept:?}");
    let text = std::fs::read_to_string(space.config_path().with_file_name(&kept[0])).unwrap();
    assert!(text.contains("bogusKey"));
}

#[test]
fn missing_token_fails_fast_naming_the_variable() {
    let space = Space::new();
    let t = Instant::now();
    let out = space
        .command(false)
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OPENCLAW_GATEWAY_TOKEN") && err.contains("Secret"),
        "{err}"
    );
    assert!(
        !space.config_path().exists(),
        "nothing written without a token"
    );
}

/// With `ENTRYPOINT_FRONT_DOOR`: `$PORT` answers at once (`/healthz`, a status page without
/// secrets, the owner's JSON status behind the token), then proxies the real gateway: the
/// Control UI made frameable by huggingface.co only, a WebSocket through to the gateway's
/// `connect.challenge`, and forwarded headers from an untrusted peer refused. The gateway
/// itself listens on loopback only.
#[test]
fn the_front_door_answers_at_once_then_proxies_the_gateway() {
    if skip() {
        return;
    }
    let _one = GATEWAY.lock().unwrap_or_else(|p| p.into_inner());
    let space = Space::new();
    let gateway_port = free_port();
    let mut child = space
        .command(true)
        .env("ENTRYPOINT_FRONT_DOOR", "1")
        .env("ENTRYPOINT_GATEWAY_PORT", gateway_port.to_string())
        .arg("run")
        .spawn()
        .expect("spawn entrypoint");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let mut r = Running {
        child,
        out,
        err,
        port: space.port,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |path: &str| {
        client
            .get(format!("http://127.0.0.1:{}{path}", space.port))
            .send()
    };

    // Alive at once, and a status page while the gateway starts.
    wait_for(Duration::from_secs(10), "the front door", || {
        assert!(r.alive(), "entrypoint exited");
        get("/healthz").ok().filter(|x| x.status() == 200)
    });
    let page = get("/").unwrap();
    assert_eq!(page.status(), 503, "the gateway cannot be ready this soon");
    let html = page.text().unwrap();
    assert!(html.contains("<h1>"), "{html}");
    assert!(!html.contains(TOKEN), "the status page shows the token");

    // The owner's status: the token is the key.
    assert_eq!(
        http_status(space.port, "/.entrypoint/status", None),
        Some(401)
    );
    assert_eq!(
        http_status(space.port, "/.entrypoint/status", Some("wrong")),
        Some(401)
    );
    let st: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{}/.entrypoint/status",
            space.port
        ))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(st["gateway"].is_string(), "{st}");

    // Proxied once the gateway answers; framing opened to huggingface.co only.
    let ui = wait_for(
        Duration::from_secs(120),
        "the Control UI through the door",
        || {
            assert!(r.alive(), "entrypoint exited");
            get("/").ok().filter(|x| x.status() == 200)
        },
    );
    assert!(ui.headers().get("x-frame-options").is_none());
    let csp = ui.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.split(';')
            .any(|d| d.trim() == "frame-ancestors https://huggingface.co"),
        "{csp}"
    );
    // Forwarded headers from a peer that is not a trusted proxy: refused.
    let spoofed = client
        .get(format!("http://127.0.0.1:{}/", space.port))
        .header("X-Forwarded-For", "127.0.0.1")
        .send()
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    // The gateway is on loopback only, at its own port.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(space.config_path()).unwrap()).unwrap();
    assert_eq!(cfg["gateway"]["bind"], "loopback");
    assert_eq!(cfg["gateway"]["port"], gateway_port);

    // A WebSocket through the door reaches the gateway's handshake.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = rt.block_on(async {
        use futures_util::StreamExt;
        let url = format!("ws://127.0.0.1:{}/", space.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A gateway still starting closes new sockets with 1013: try again.
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
                if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = ws.next().await
                {
                    break t.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no WebSocket frame through the door"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(first.contains("connect.challenge"), "{first}");

    r.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, output) = r.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{output}");
    assert!(!output.contains(TOKEN), "the token leaked into the logs");
}

/// The Space guide's Telegram example (a relay as `apiRoot`, the bot token as `${VAR}`) goes
/// through `OPENCLAW_CONFIG_PATCH` and the real OpenClaw accepts the config it makes: its
/// schema refuses unknown keys (shown with `apiRooot`), so a misspelt key fails here.
#[test]
fn the_guides_telegram_relay_example_is_a_config_openclaw_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("spaces/huggingface/README.md")).unwrap();
    let channels = &guide[guide.find("## 7. Channels").expect("a Channels section")..];
    let (_, rest) = channels.split_once("```json\n").expect("a ```json example");
    let patch = rest.split("```").next().unwrap().trim();
    let parsed: serde_json::Value = serde_json::from_str(patch).expect("valid JSON");
    assert_eq!(
        parsed["channels"]["telegram"]["botToken"],
        "${TELEGRAM_BOT_TOKEN}"
    );
    assert!(
        parsed["channels"]["telegram"].get("webhookUrl").is_none(),
        "polling"
    );

    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .arg("config")
        .env_clear()
        .env("HOME", home.path())
        .env("ENTRYPOINT_DATA_DIR", "/nonexistent-data")
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .env("OPENCLAW_CONFIG_PATCH", patch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8(out.stdout).unwrap();
    std::fs::create_dir_all(home.path().join(".openclaw")).unwrap();
    let validate = |config: &str| {
        std::fs::write(home.path().join(".openclaw/openclaw.json"), config).unwrap();
        Command::new(openclaw_bin_dir().join("openclaw"))
            .args(["config", "validate"])
            .current_dir(home.path())
            .env_clear()
            .env("PATH", openclaw_bin_dir())
            .env("HOME", home.path())
            .env("OPENCLAW_HOME", home.path())
            .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
            .env("TELEGRAM_BOT_TOKEN", "123456:relay-test")
            .output()
            .unwrap()
    };
    let ok = validate(&config);
    assert!(
        ok.status.success(),
        "openclaw rejects the guide's Telegram example: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = validate(&config.replace("\"apiRoot\"", "\"apiRooot\""));
    assert!(!bad.status.success(), "the check can fail");
}
