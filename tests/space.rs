//! Shipping as a Hugging Face Space, checked without a Docker daemon (the image itself is built
//! and run by `scripts/image-test.sh`, the last step of `scripts/test.sh`).
//!
//! - The Dockerfile is parsed by BuildKit's own parser (PyPI `dockerfile`, in the venv made by
//!   `scripts/docker-venv.sh`) and checked by `scripts/check-dockerfile.py`; each rule is also
//!   shown to fire on a Dockerfile that breaks it.
//! - The Space card's YAML front matter is parsed by PyYAML (`scripts/check-space-card.py`).
//! - Keep-alive through the real binary: `entrypoint run` pings a loopback server, `status`
//!   keeps the token it would send to the Space redacted.
//! - The runtime image's layout is replayed here (`tests/space/replay.py`, as root in fresh
//!   mount + network namespaces): uid 1000, HOME=/home/user, the data dir chosen for each kind of
//!   `/data`, and finally the real gateway under `entrypoint run`, answering `/healthz` and
//!   exiting 0 on SIGTERM. The replay tests need root (CI has it) and say so when skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run a script that prints one path on its last stdout line; panics with its stderr if it fails.
fn script_path(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join(script))
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

/// The venv's python with `dockerfile` and `pyyaml`; created once per test run.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| script_path("scripts/docker-venv.sh"))
}

/// The OpenClaw version the tests install (and so the one the image must pin).
fn tested_openclaw_version() -> String {
    let script = std::fs::read_to_string(repo().join("scripts/install-openclaw.sh")).unwrap();
    let (_, rest) = script
        .split_once("OPENCLAW_VERSION:-")
        .expect("install-openclaw.sh pins OPENCLAW_VERSION");
    rest.split('}').next().unwrap().to_string()
}

fn run_py(args: &[&str]) -> (bool, String) {
    let out: Output = Command::new(python())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn check_dockerfile(path: &Path) -> (bool, String) {
    let version = tested_openclaw_version();
    run_py(&[
        "scripts/check-dockerfile.py",
        path.to_str().unwrap(),
        "--openclaw-version",
        &version,
    ])
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles

#[test]
fn dockerfile_passes_the_space_checks() {
    let path = repo().join("Dockerfile");
    let (ok, out) = check_dockerfile(&path);
    assert!(ok, "Dockerfile:\n{out}");
    assert!(out.starts_with(&format!("ok: {}", path.display())), "{out}");
}

/// Each rule fires on a copy of the real Dockerfile broken in exactly that way.
#[test]
fn dockerfile_checker_catches_each_broken_rule() {
    let original = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        // (what, replace this, with this, expected message)
        (
            "unpinned openclaw",
            "openclaw@${OPENCLAW_VERSION}",
            "openclaw@latest",
            "`@latest` is not pinned",
        ),
        (
            "untested openclaw",
            "ARG OPENCLAW_VERSION=2026.9.6",
            "ARG OPENCLAW_VERSION=2026.9.5",
            "expected the tested version",
        ),
        (
            "unpinned base",
            "rust:1.95.0-slim-bookworm",
            "rust:latest",
            "pin the base image",
        ),
        (
            "unlocked build",
            "cargo build --release --locked",
            "cargo build --release",
            "cargo build --release --locked",
        ),
        (
            "root user",
            "USER user",
            "USER root",
            "USER root: cannot tell that it is uid 1000",
        ),
        (
            "shell-form CMD",
            "CMD [\"run\"]",
            "CMD run",
            "CMD must be exec form",
        ),
        ("no CMD", "CMD [\"run\"]", "", "the final stage has no CMD"),
        (
            "inherited ENTRYPOINT",
            "ENTRYPOINT [\"/app/entrypoint\"]",
            "",
            "inherits the base image's",
        ),
        (
            "shell-form ENTRYPOINT",
            "ENTRYPOINT [\"/app/entrypoint\"]",
            "ENTRYPOINT /app/entrypoint",
            "ENTRYPOINT must be exec form",
        ),
        (
            "wrapped ENTRYPOINT",
            "ENTRYPOINT [\"/app/entrypoint\"]",
            "ENTRYPOINT [\"tini\", \"--\", \"/app/entrypoint\"]",
            "nothing goes in front of it",
        ),
        ("wrong port", "EXPOSE 7860", "EXPOSE 8080", "EXPOSE 7860"),
        ("wrong PORT env", "PORT=7860", "PORT=8080", "ENV PORT=7860"),
        (
            "wrong HOME",
            "HOME=/home/user",
            "HOME=/home/node",
            "ENV HOME=/home/user",
        ),
        (
            "secret in ENV",
            "OPENCLAW_NO_AUTO_UPDATE=1",
            "OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_GATEWAY_TOKEN=changeme",
            "OPENCLAW_GATEWAY_TOKEN has a value",
        ),
        (
            "secret in ARG",
            "ARG OPENCLAW_VERSION=2026.9.6",
            "ARG OPENCLAW_VERSION=2026.9.6\nARG MINIMAX_API_KEY=sk-123",
            "MINIMAX_API_KEY has a value",
        ),
        (
            "openclaw as root",
            "RUN usermod",
            "RUN openclaw doctor --non-interactive && usermod",
            "`openclaw` runs as root",
        ),
        (
            "npx openclaw as root",
            "RUN usermod",
            "RUN HOME=/root npx --yes openclaw@2026.9.6 setup; usermod",
            "`openclaw` runs as root",
        ),
        ("no git-lfs", "git git-lfs", "git", "git-lfs"),
        (
            "no ca-certificates",
            "bash ca-certificates",
            "bash",
            "ca-certificates",
        ),
        (
            "/app not uid 1000",
            "chown 1000:1000 /app /home/user",
            "chown 1000:1000 /home/user",
            "/app must be owned by uid 1000",
        ),
    ];
    for (i, (what, from, to, expect)) in cases.iter().enumerate() {
        assert!(
            original.contains(from),
            "case '{what}': the Dockerfile no longer contains {from:?}; update the case"
        );
        let broken = original.replacen(from, to, 1);
        let path = dir.path().join(format!("Dockerfile.{i}"));
        std::fs::write(&path, broken).unwrap();
        let (ok, out) = check_dockerfile(&path);
        assert!(!ok, "case '{what}' passed the checker:\n{out}");
        assert!(
            out.contains(expect),
            "case '{what}': expected {expect:?} in:\n{out}"
        );
        // One line per problem, each naming the file.
        assert!(
            out.lines().all(|l| l.starts_with(path.to_str().unwrap())),
            "{out}"
        );
    }

    // A single-stage build (only the runtime stage).
    let single = &original[original.find("FROM ${NODE_IMAGE}").unwrap()..];
    let path = dir.path().join("Dockerfile.single");
    std::fs::write(
        &path,
        format!("ARG NODE_IMAGE=node:24.21.0-bookworm-slim\n{single}"),
    )
    .unwrap();
    let (ok, out) = check_dockerfile(&path);
    assert!(
        !ok && out.contains("multi-stage") && out.contains("cargo build --release --locked"),
        "{out}"
    );
}

/// The image runs `cargo build --release --locked`: that fails if Cargo.lock is stale.
#[test]
fn cargo_lock_satisfies_the_locked_image_build() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Cargo.lock is not what Cargo.toml needs (run `cargo update -w`):\n{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("openclaw-space ")));
}

#[test]
fn dockerignore_keeps_the_context_small_but_buildable() {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target/", ".git/", ".local/", "tests/"] {
        assert!(lines.contains(&must), ".dockerignore must exclude {must}");
    }
    // What the build stage COPYs must not be excluded.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "src/",
        "*.toml",
        "*.lock",
    ] {
        assert!(
            !lines.contains(&needed),
            ".dockerignore excludes {needed}, which the build needs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The Space card and guide

const GUIDE: &str = "spaces/huggingface/README.md";

#[test]
fn space_card_front_matter_is_valid() {
    let (ok, out) = run_py(&["scripts/check-space-card.py", GUIDE]);
    assert!(ok, "{out}");

    let original = std::fs::read_to_string(repo().join(GUIDE)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expect) in [
        ("sdk: docker", "sdk: gradio", "sdk: must be `docker`"),
        (
            "app_port: 7860",
            "app_port: \"7860\"",
            "app_port: must be the integer 7860",
        ),
        ("emoji: 🦞\n", "", "emoji: must be a non-empty string"),
        ("colorTo: purple", "colorTo: violet", "colorTo: one of"),
        ("title: OpenClaw", "title: [OpenClaw", "not valid YAML"),
    ] {
        assert!(
            original.contains(from),
            "{GUIDE} no longer contains {from:?}"
        );
        let path = dir.path().join("README.md");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let (ok, out) = run_py(&["scripts/check-space-card.py", path.to_str().unwrap()]);
        assert!(
            !ok && out.contains(expect),
            "{from} -> {to}: expected {expect:?} in {out}"
        );
    }
}

#[test]
fn guide_covers_the_settings_and_its_patch_example_is_valid() {
    let guide = std::fs::read_to_string(repo().join(GUIDE)).unwrap();
    for var in [
        "OPENCLAW_GATEWAY_TOKEN",
        "HF_TOKEN",
        "HF_DATASET",
        "OPENCLAW_HF_DEFAULT_MODEL",
        "ENTRYPOINT_BACKUP_INTERVAL",
        "ENTRYPOINT_HF_SQUASH_EVERY",
        "OPENCLAW_CONFIG_PATCH",
        "MINIMAX_API_KEY",
        "ENTRYPOINT_KEEPALIVE",
        "ENTRYPOINT_AUTO_PAIR",
        "OPENCLAW_TRUSTED_PROXIES",
        "Make calls to Inference Providers",
    ] {
        assert!(
            guide.contains(&format!("`{var}`")) || guide.contains(var),
            "{GUIDE} does not mention {var}"
        );
    }
    // The OPENCLAW_CONFIG_PATCH example is valid JSON and keeps the key out of the config.
    let (_, rest) = guide.split_once("```json\n").expect("a ```json example");
    let example = rest.split("```").next().unwrap();
    let patch: Value = serde_json::from_str(example.trim())
        .expect("the OPENCLAW_CONFIG_PATCH example is valid JSON");
    assert_eq!(
        patch["models"]["providers"]["minimax"]["apiKey"],
        "${MINIMAX_API_KEY}"
    );
    assert_eq!(
        patch["agents"]["defaults"]["model"]["primary"],
        "minimax/MiniMax-M2"
    );
    // The entrypoint accepts it as given (the same parsing `run` does).
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .args(["config"])
        .env_clear()
        .env("HOME", home.path())
        .env("ENTRYPOINT_DATA_DIR", "/nonexistent-data")
        .env("OPENCLAW_GATEWAY_TOKEN", "t")
        .env("OPENCLAW_CONFIG_PATCH", example.trim())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "entrypoint config rejected the guide's example: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("${MINIMAX_API_KEY}"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Keep-alive, wired through settings and `run`

/// A loopback HTTP server answering 200 to everything; returns its port and the request lines.
fn counting_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            log.lock().unwrap().push(head.join("\n"));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[test]
fn keepalive_pings_while_run_supervises_a_child_and_stops_with_it() {
    let (port, seen) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .args(["run", "--", "sleep", "60"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", data.path())
        .env("ENTRYPOINT_DATA_DIR", data.path())
        .env("ENTRYPOINT_KEEPALIVE", "1")
        .env(
            "ENTRYPOINT_KEEPALIVE_URL",
            format!("http://127.0.0.1:{port}/healthz"),
        )
        .env("ENTRYPOINT_KEEPALIVE_INTERVAL", "200ms")
        .env("HF_TOKEN", "hf_not_for_third_parties")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.lock().unwrap().len() < 2
        && std::time::Instant::now() < deadline
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pings = seen.lock().unwrap().clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        pings.len() >= 2,
        "fewer than 2 keep-alive requests arrived: {pings:?}\n{stderr}"
    );
    assert!(pings[0].starts_with("GET /healthz HTTP/1.1"), "{pings:?}");
    // A URL that is not the Space's own host never gets the token.
    assert!(
        pings
            .iter()
            .all(|p| !p.to_ascii_lowercase().contains("authorization")),
        "{pings:?}"
    );
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(10),
        "run took {:?} to stop",
        stopped.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "keep-alive on: GET http://127.0.0.1:{port}/healthz"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("keep-alive: GET"),
        "a healthy target must not log failures: {stderr}"
    );
}

#[test]
fn status_never_shows_the_keepalive_token() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .args(["status", "--json"])
        .env_clear()
        .env("HOME", home.path())
        .env("ENTRYPOINT_DATA_DIR", "/nonexistent-data")
        .env("SPACE_HOST", "alice-claw.hf.space")
        .env("HF_TOKEN", "hf_keepalive_status_secret")
        .env("ENTRYPOINT_KEEPALIVE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["settings"]["keepalive"]["url"],
        "https://alice-claw.hf.space/healthz"
    );
    assert_eq!(v["settings"]["keepalive"]["token"], "<redacted>");
    assert!(!stdout.contains("hf_keepalive_status_secret"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Replay of the runtime image: uid 1000, HOME=/home/user, /data variants, the real gateway.

/// Root is needed for namespaces, mounts and setpriv. Returns false (and says so) otherwise.
fn can_replay(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("{test}: skipped: needs root (namespaces, mounts, setpriv); CI runs as root");
    false
}

/// A scratch root outside /tmp (the replay mounts a fresh tmpfs over /tmp).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("openclaw-space-replay-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn replay(args: &[&str]) -> Value {
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .arg(python())
        .arg(repo().join("tests/space/replay.py"))
        .args(args)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("replay.py output is not JSON ({e}): {stdout}"))
}

fn status_for(case: &str) -> (Value, PathBuf) {
    let root = scratch();
    let v = replay(&[
        "status",
        "--root",
        root.path().to_str().unwrap(),
        "--entrypoint",
        env!("CARGO_BIN_EXE_entrypoint"),
        "--case",
        case,
    ]);
    assert_eq!(v["exit"], 0, "entrypoint status failed for {case}: {v}");
    (v, root.path().to_path_buf())
}

#[test]
fn data_dir_as_uid_1000_for_each_kind_of_data_volume() {
    if !can_replay("data_dir_as_uid_1000_for_each_kind_of_data_volume") {
        return;
    }
    for (case, expect_data) in [
        ("absent", false),
        ("readonly", false),
        ("root-owned", false),
        ("writable", true),
    ] {
        let (v, _) = status_for(case);
        let data = v["data"].as_str().unwrap();
        let chosen = v["status"]["data_dir"]["root"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no data_dir in {v}"));
        let reason = v["status"]["data_dir"]["reason"].as_str().unwrap();
        if expect_data {
            assert_eq!(chosen, data, "{case}: {reason}");
            assert_eq!(v["status"]["state_dir"], format!("{data}/.openclaw"));
        } else {
            assert_eq!(chosen, "/home/user", "{case}: {reason}");
            assert!(
                reason.contains(data) && reason.contains("$HOME"),
                "{case}: the log must say why: {reason}"
            );
        }
        // The write probe cleans up after itself (and `status` writes nothing else there).
        if let Some(left) = v["leftovers"].as_array() {
            assert!(left.is_empty(), "{case}: left behind {left:?}");
        }
    }
}

/// The real gateway, installed like the image does it, run by `entrypoint run` as uid 1000.
#[test]
fn gateway_runs_as_uid_1000_answers_healthz_and_stops_cleanly() {
    if !can_replay("gateway_runs_as_uid_1000_answers_healthz_and_stops_cleanly") {
        return;
    }
    let openclaw_bin = script_path("scripts/install-openclaw.sh");
    let root = scratch();
    let v = replay(&[
        "gateway",
        "--root",
        root.path().to_str().unwrap(),
        "--entrypoint",
        env!("CARGO_BIN_EXE_entrypoint"),
        "--openclaw-bin",
        openclaw_bin.to_str().unwrap(),
    ]);
    let log = v["log_tail"].as_str().unwrap_or("");
    eprintln!(
        "gateway replay: /healthz 200 after {} s, /startupz started after {} s, exit {} {} s after SIGTERM",
        v["healthz_after_s"], v["started_after_s"], v["exit"], v["stop_s"]
    );
    assert!(
        v["early_exit"].is_null(),
        "entrypoint exited early ({}):\n{log}",
        v["early_exit"]
    );
    assert_eq!(
        v["healthz"]["status"], 200,
        "no /healthz 200 within the deadline:\n{log}"
    );
    assert!(
        v["healthz"]["body"]
            .as_str()
            .unwrap()
            .contains("\"ok\":true"),
        "{v}"
    );
    assert_eq!(v["started"], true, "/startupz never said started:\n{log}");
    assert_eq!(
        v["uids"],
        serde_json::json!([1000]),
        "every process must run as uid 1000: {v}"
    );
    assert_eq!(
        v["exit"], 0,
        "entrypoint run must exit 0 after SIGTERM:\n{log}"
    );
    assert_eq!(
        v["left_running"],
        serde_json::json!([]),
        "processes outlived entrypoint: {v}"
    );
    assert_eq!(
        v["state_dir_uid"], 1000,
        "state dir not in /home/user or not uid 1000's: {v}"
    );
    assert_eq!(v["config_exists"], true, "{v}");
    // Whatever OpenClaw put in the fresh /tmp belongs to uid 1000 (the EACCES trap).
    for (entry, uid) in v["tmp_entries"].as_object().unwrap() {
        assert_eq!(uid, 1000, "/tmp/{entry} is owned by uid {uid}");
    }
}
