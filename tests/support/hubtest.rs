//! What the tests of the two Hub stores (`hf_store.rs`, `bucket_store.rs`) and the fake's
//! conformance checks share: the test tokens, the xet/proxy environment, error checks, the
//! Python venv, and running the entrypoint binary or Python against a fake hub.
#![allow(dead_code)] // each test crate uses a different part of this module

use std::path::{Path, PathBuf};
use std::time::Duration;

use openclaw_space::settings::{HubAccess, Secret};
use openclaw_space::store::{Store, StoreError};

use crate::fakehub::{pseudo_random, Access, Action, Config, FakeHub};

pub const WRITE: &str = "hf_test_write_0123456789abcdef";
pub const READ: &str = "hf_test_read_0123456789abcdef";
pub const UNKNOWN: &str = "hf_test_unknown_0123456789abcdef";

/// Variables that keep xet fast to fail and quiet, and the proxy away from loopback.
pub const CLIENT_ENV: [(&str, &str); 4] = [
    ("NO_PROXY", "127.0.0.1,localhost"),
    ("no_proxy", "127.0.0.1,localhost"),
    ("HF_XET_CLIENT_RETRY_MAX_ATTEMPTS", "1"),
    ("HF_XET_TELEMETRY_ENABLED", "0"),
];

/// How a store reaches the fake hub at `endpoint`: a private target, 10 s per request.
pub fn access(endpoint: &str, token: Option<&str>) -> HubAccess {
    HubAccess {
        token: token.map(Secret::new),
        endpoint: Some(endpoint.to_string()),
        allow_public: false,
        timeout: Duration::from_secs(10),
    }
}

/// Set [`CLIENT_ENV`] in this process once, before any client exists (the xet runtime reads
/// them when it starts).
pub fn test_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in CLIENT_ENV {
            // Safe here: set once, before any test thread reads the environment.
            std::env::set_var(k, v);
        }
    });
}

/// Write `data` as the archive `dir/name`; its path and sha256.
pub fn write_archive(dir: &Path, name: &str, data: &[u8]) -> (PathBuf, String) {
    use sha2::Digest as _;
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write archive");
    (path, hex::encode(sha2::Sha256::digest(data)))
}

/// Every error is one line and free of every token the tests use.
pub fn assert_clean(e: &StoreError) {
    let text = format!("{e} {e:?}");
    for secret in [WRITE, READ, UNKNOWN] {
        assert!(!text.contains(secret), "token leaked into an error: {text}");
    }
    assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
}

pub fn expect_err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> StoreError {
    let e = r.expect_err("expected an error");
    assert_clean(&e);
    e
}

/// The Python venv with huggingface_hub 2.4 (+ hf_xet unless `--no-xet`), built once and
/// cached by scripts/python-venv.sh; its interpreter.
pub async fn python_venv(variant: &[&str]) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-venv.sh");
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(script).args(variant).output(),
    )
    .await
    .expect("scripts/python-venv.sh took over 10 minutes")
    .expect("cannot run scripts/python-venv.sh");
    assert!(
        out.status.success(),
        "scripts/python-venv.sh {variant:?} failed (needs python3 and PyPI):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// `py` set up to talk to the hub at `endpoint` with `token` (xet on, no telemetry, no
/// progress bars, its own HF_HOME under `home`).
pub fn python(py: &Path, endpoint: &str, token: &str, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(py);
    cmd.env("HF_ENDPOINT", endpoint)
        .env("HF_TOKEN", token)
        .env("HF_HOME", home.join("hf-home"))
        .envs(CLIENT_ENV)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_HUB_DISABLE_XET")
        .env_remove("HF_TOKEN_PATH")
        .kill_on_drop(true);
    cmd
}

/// The entrypoint binary with a clean environment pointed at the hub at `endpoint`
/// (`HF_TOKEN` = `token`, `HOME` = `home`, data dir `data`); add the store variable.
pub fn entrypoint(
    endpoint: &str,
    token: &str,
    home: &Path,
    data: &Path,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_entrypoint"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ENTRYPOINT_DATA_DIR", data)
        .env("ENTRYPOINT_LOG", "info")
        .env("HF_TOKEN", token)
        .env("HF_ENDPOINT", endpoint)
        .env("ENTRYPOINT_HF_TIMEOUT", "10s")
        .envs(CLIENT_ENV)
        .kill_on_drop(true);
    cmd
}

/// Run `cmd` (at most `limit`); (success, stdout, stderr), checking no token reached either.
/// `what` names it in failures (not the command: its environment holds the token).
pub async fn run(
    cmd: &mut tokio::process::Command,
    what: &str,
    limit: Duration,
) -> (bool, String, String) {
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} took over {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for secret in [WRITE, READ, UNKNOWN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "token in the output of {what}:\n{stdout}\n{stderr}"
        );
    }
    (out.status.success(), stdout, stderr)
}

/// The xet dedupe measurement both Hub stores are held to: `put` the archive `data`, then the
/// same with `patch` written over its middle; the bytes the second upload sent to the CAS
/// (`cas_bytes`: the fake's xorb bytes) must stay within 3 % of the archive, and the latest
/// backup must come back byte-identical. Prints the numbers. Archives go under `dir`.
pub async fn check_small_change(
    store: &dyn Store,
    dir: &Path,
    label: &str,
    mut data: Vec<u8>,
    patch: &[u8],
    cas_bytes: impl Fn() -> u64,
) {
    let put = |name: &str, bytes: &[u8]| {
        let (path, sha) = write_archive(dir, name, bytes);
        async move {
            store.put(&path, &sha).await.expect("put");
            sha
        }
    };
    put("dedupe-a.tar", &data).await;
    let first = cas_bytes();
    let mid = data.len() / 2;
    data[mid..mid + patch.len()].copy_from_slice(patch);
    let sha = put("dedupe-b.tar", &data).await;
    let second = cas_bytes() - first;
    let ratio = second as f64 / data.len() as f64;
    eprintln!(
        "{label} xet: first upload {first} bytes, second {second} bytes = {:.3}% of {}",
        ratio * 100.0,
        data.len()
    );
    assert!(
        ratio <= 0.03,
        "{label}: the second upload sent {:.2}% of the archive",
        ratio * 100.0
    );
    let scratch = dir.join("dedupe-scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let f = store
        .fetch_latest(&scratch)
        .await
        .expect("fetch")
        .expect("a backup");
    assert_eq!(f.actual_sha256, sha);
    assert!(
        std::fs::read(&f.archive).expect("fetched") == data,
        "byte-identical round trip"
    );
}

/// The error of `r`, checked clean (see [`assert_clean`]), of kind `kind` (the variant's
/// name) and saying `text`.
pub fn expect_error<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    kind: &str,
    text: &str,
) -> StoreError {
    let e = expect_err(r);
    assert!(
        format!("{e:?}").starts_with(&format!("{kind}(")) && e.to_string().contains(text),
        "expected {kind} saying {text:?}, got {e:?}"
    );
    e
}

/// Every request under `prefix` answered 502, forever: the store gives up with `Unavailable`
/// naming the status, after bounded retries.
pub async fn check_persistent_5xx(store: &dyn Store, hub: &FakeHub, prefix: &str, scratch: &Path) {
    hub.faults().always(None, prefix, Action::Status(502));
    let t = std::time::Instant::now();
    let e = expect_error(store.fetch_latest(scratch).await, "Unavailable", "502");
    assert!(e.is_transient());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "bounded retries: {:?}",
        t.elapsed()
    );
    hub.faults().clear();
}

/// Rate limits, with the store holding the backup `archive` (path, sha256): a 429 with
/// `Retry-After: 2` on the next request under `first` is waited out and the backup comes
/// back; a 429 asking for 10 minutes fails at once, and nothing goes out while it lasts.
pub async fn check_rate_limits(
    store: &dyn Store,
    hub: &FakeHub,
    first: &str,
    scratch: &Path,
    archive: (&Path, &str),
) {
    let limited = |secs| Action::RateLimited {
        retry_after_secs: secs,
    };
    hub.faults().add(None, first, 1, limited(2));
    let t = std::time::Instant::now();
    let f = store
        .fetch_latest(scratch)
        .await
        .expect("fetch")
        .expect("a backup");
    let waited = t.elapsed();
    assert_eq!(f.actual_sha256, archive.1);
    assert!(
        waited >= Duration::from_millis(1900),
        "honoured Retry-After: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(6),
        "did not wait much longer: {waited:?}"
    );

    hub.faults().add(None, "/api/", 1, limited(600));
    let t = std::time::Instant::now();
    expect_error(store.fetch_latest(scratch).await, "Unavailable", "429");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "did not sit out 10 minutes"
    );
    let sent = hub.requests().len();
    expect_error(store.put(archive.0, archive.1).await, "Unavailable", "");
    assert_eq!(hub.requests().len(), sent, "no request while paused");
}

/// Xet dedupe with the backup engine's own archive (multi-member tar.gz with member reuse),
/// `entrypoint backup` with the store variable `store` (`HF_DATASET`/`HF_BUCKET`, value) on a
/// fresh fake hub per layout: after a small change only about the changed gzip member reaches
/// the CAS. The member size (and so the ratio) is the engine's choice (`src/archive/write.rs`:
/// members of 256 KiB to 2 MiB); what this checks is that the store adds nothing on top: the
/// upload stays under two maximal members. `archive_size` reads the first archive's size off
/// the hub. Ratios are printed for the report.
pub async fn check_real_archive_dedupe(
    label: &str,
    store: (&str, &str),
    archive_size: impl Fn(&FakeHub) -> u64,
) {
    const MAX_MEMBER: u64 = 2 << 20;
    test_env();
    // (layout, files, size): many mid-sized session files; one big database-like file.
    for (layout, files, size) in [
        ("200 files of 256 KiB", 200u64, 256usize << 10),
        ("one 48 MiB file", 1, 48 << 20),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = FakeHub::start(Config::xet(dir.path().join("cas"))).await;
        hub.add_token(WRITE, Access::Write);
        let data = dir.path().join("data");
        let state = data.join(".openclaw");
        for i in 0..files {
            let sessions = state.join(format!("agents/a{}/sessions", i % 10));
            std::fs::create_dir_all(&sessions).expect("state dir");
            let bytes = pseudo_random(size, 100 + i);
            std::fs::write(sessions.join(format!("s{i}.jsonl")), bytes).expect("file");
        }
        std::fs::write(state.join("openclaw.json"), br#"{"gateway":{"port":7860}}"#)
            .expect("config");
        let backup = || async {
            let mut cmd = entrypoint(hub.endpoint(), WRITE, dir.path(), &data);
            cmd.arg("backup").env(store.0, store.1);
            let (ok, out, err) = run(&mut cmd, "entrypoint backup", Duration::from_secs(120)).await;
            assert!(
                ok && out.contains("\"uploaded\""),
                "backup failed:\n{out}\n{err}"
            );
        };
        backup().await;
        let first = hub.cas_bytes_received();
        let archive = archive_size(&hub);
        // A small change in the middle of one file, then 4 KiB appended to it (a session log
        // growing: the tar header changes too, so the rest of its member changes).
        let n = files / 2;
        let changed = state.join(format!("agents/a{}/sessions/s{n}.jsonl", n % 10));
        let mut seen = first;
        for change in ["a 4 KiB change in the middle", "4 KiB appended"] {
            let mut bytes = std::fs::read(&changed).expect("read");
            if change.starts_with("a 4 KiB") {
                let mid = bytes.len() / 2;
                bytes[mid..mid + 4096].copy_from_slice(&pseudo_random(4096, 7));
            } else {
                bytes.extend_from_slice(&pseudo_random(4096, 8));
            }
            std::fs::write(&changed, bytes).expect("write");
            backup().await;
            let sent = hub.cas_bytes_received() - seen;
            seen += sent;
            eprintln!(
                "{label}, {layout}: archive {archive} bytes (first upload {first} bytes to the CAS); after {change}: {sent} bytes = {:.2}%",
                sent as f64 * 100.0 / archive as f64
            );
            assert!(
                sent <= 2 * MAX_MEMBER,
                "{layout}, {change}: sent {sent} bytes"
            );
        }
    }
}
