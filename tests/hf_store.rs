//! The `hf` store (src/store/hf.rs) against the fake Hub (tests/support/fakehub), in process:
//! round trips, dataset creation and visibility, every fault knob, conflicts, bounded history
//! with squash, xet dedupe, and that no error ever carries the token.

#[path = "support/craft.rs"]
mod craft;
#[path = "support/fakehub/mod.rs"]
mod fakehub;
#[path = "support/hubtest.rs"]
mod hubtest;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fakehub::{pseudo_random, sha256_hex, Access, Action, Config, FakeHub, RepoType, Transfer};
use openclaw_space::settings::HfSettings;
use openclaw_space::store::hf::HfStore;
use openclaw_space::store::{self, Progress, Store, StoreError, ARCHIVE_NAME, SIDECAR_NAME};

use hubtest::{assert_clean, expect_err, python_venv, test_env, READ, UNKNOWN, WRITE};

const DS: &str = "alice/claw-backup";

struct Rig {
    hub: FakeHub,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start(transfer: Transfer) -> Rig {
        test_env();
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = FakeHub::start(Config {
            transfer,
            cas_dir: dir.path().join("cas"),
            port: 0,
        })
        .await;
        hub.add_token(WRITE, Access::Write);
        hub.add_token(READ, Access::Read);
        std::fs::create_dir_all(dir.path().join("scratch")).expect("scratch dir");
        Rig { hub, dir }
    }

    fn settings(&self, token: Option<&str>) -> HfSettings {
        HfSettings {
            dataset: DS.to_string(),
            hub: hubtest::access(self.hub.endpoint(), token),
            squash_every: 0,
        }
    }

    async fn store_with(&self, s: HfSettings) -> HfStore {
        let mut store = HfStore::open(&s)
            .await
            .expect("open never touches the network");
        store.set_commits_per_hour(0);
        store
    }

    async fn store(&self) -> HfStore {
        self.store_with(self.settings(Some(WRITE))).await
    }

    fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Write an archive file; returns its path and digest.
    fn archive(&self, name: &str, data: &[u8]) -> (PathBuf, String) {
        hubtest::write_archive(self.dir.path(), name, data)
    }

    fn commits(&self) -> usize {
        self.hub.commits(RepoType::Dataset, DS).len()
    }

    fn head(&self) -> String {
        self.hub
            .commits(RepoType::Dataset, DS)
            .first()
            .map(|c| c.oid.clone())
            .unwrap_or_default()
    }

    fn commit_path(&self) -> String {
        format!("/api/datasets/{DS}/commit/")
    }
}

/// Fetch, and check the file holds exactly the bytes the store hashed.
async fn fetch(
    store: &HfStore,
    scratch: &Path,
) -> Result<Option<(Vec<u8>, store::Fetched)>, StoreError> {
    let fetched = store.fetch_latest(scratch).await?;
    Ok(fetched.map(|f| {
        let bytes = std::fs::read(&f.archive).expect("read fetched archive");
        assert_eq!(
            sha256_hex(&bytes),
            f.actual_sha256,
            "actual_sha256 must be the hash of the file on disk"
        );
        assert_eq!(bytes.len() as u64, f.size);
        (bytes, f)
    }))
}

#[tokio::test]
async fn fresh_dataset_round_trip_creates_a_private_dataset_in_one_commit() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;

    // Nothing there yet: a positive "no backup", and fetching does not create the dataset.
    assert!(fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .is_none());
    assert!(store.head().await.expect("head").is_none());
    assert!(!rig.hub.repo_exists(RepoType::Dataset, DS));

    let data = pseudo_random(3 << 20, 1);
    let (path, sha) = rig.archive("a.tar.gz", &data);
    let version = store.put(&path, &sha).await.expect("put");
    assert_eq!(
        rig.hub.repo_is_private(RepoType::Dataset, DS),
        Some(true),
        "created private"
    );
    assert_eq!(version.as_deref(), Some(rig.head().as_str()));
    // Initial commit + exactly one backup commit holding both files.
    assert_eq!(rig.commits(), 2);
    let files = rig.hub.head_files(RepoType::Dataset, DS);
    assert_eq!(files[ARCHIVE_NAME].sha256, sha);
    assert!(
        files[ARCHIVE_NAME].xet_hash.is_some(),
        "archive went up through xet"
    );
    assert_eq!(
        rig.hub
            .file_bytes(RepoType::Dataset, DS, SIDECAR_NAME)
            .as_deref(),
        Some(sha.as_bytes())
    );

    let (bytes, f) = fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .expect("a backup");
    assert_eq!(bytes, data);
    assert_eq!(f.expected_sha256, sha);
    assert_eq!(f.actual_sha256, sha);
    assert!(f.archive.starts_with(rig.scratch()));

    let info = store.head().await.expect("head").expect("a backup");
    assert_eq!(info.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(Some(info.id), version);
}

#[tokio::test]
async fn public_dataset_is_refused_unless_allowed() {
    let rig = Rig::start(Transfer::Xet).await;
    rig.hub.create_repo(RepoType::Dataset, DS, false);
    let (path, sha) = rig.archive("a.tar.gz", b"archive");

    let store = rig.store().await;
    let e = expect_err(store.put(&path, &sha).await);
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    assert!(e.to_string().contains("ENTRYPOINT_HF_ALLOW_PUBLIC"), "{e}");
    let e = expect_err(store.fetch_latest(&rig.scratch()).await);
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    assert_eq!(rig.commits(), 1, "nothing written to the public dataset");

    let mut s = rig.settings(Some(WRITE));
    s.hub.allow_public = true;
    let store = rig.store_with(s).await;
    store.put(&path, &sha).await.expect("allowed");
    assert_eq!(rig.commits(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_and_commit_exactly_once() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;
    let (path, sha) = rig.archive("a.tar.gz", &pseudo_random(64 << 10, 2));
    store.put(&path, &sha).await.expect("first put");
    let before = rig.commits();

    // A burst of 5xx on whatever comes next (info, preupload, ...), then on the commit itself.
    rig.hub.faults().add(None, "/api/", 2, Action::Status(503));
    rig.hub
        .faults()
        .add(Some("POST"), &rig.commit_path(), 1, Action::Status(500));
    let (path, sha) = rig.archive("b.tar.gz", &pseudo_random(64 << 10, 3));
    store
        .put(&path, &sha)
        .await
        .expect("put succeeds after retries");
    assert_eq!(rig.commits(), before + 1, "exactly one new commit");
    assert_eq!(rig.hub.faults().pending(), 0, "all faults fired");

    // The Hub applies the commit but answers 500: the store must notice, not commit again.
    rig.hub.faults().add(
        Some("POST"),
        &rig.commit_path(),
        1,
        Action::StatusAfter(500),
    );
    let (path, sha) = rig.archive("c.tar.gz", &pseudo_random(64 << 10, 4));
    let version = store
        .put(&path, &sha)
        .await
        .expect("landed despite the 500");
    assert_eq!(rig.commits(), before + 2, "exactly one new commit, not two");
    assert_eq!(version.as_deref(), Some(rig.head().as_str()));
    assert_eq!(
        rig.hub.count_requests("POST", &rig.commit_path()),
        4,
        "3 commit tries + 1 first put"
    );

    // The next put still builds on the right parent.
    let (path, sha) = rig.archive("d.tar.gz", &pseudo_random(64 << 10, 5));
    store
        .put(&path, &sha)
        .await
        .expect("put after a landed-despite-error commit");
    assert_eq!(rig.commits(), before + 3);
}

#[tokio::test]
async fn persistent_server_errors_give_unavailable() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;
    hubtest::check_persistent_5xx(&store, &rig.hub, "/api/", &rig.scratch()).await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_or_pause_the_store() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;
    let (path, sha) = rig.archive("a.tar.gz", b"small archive");
    store.put(&path, &sha).await.expect("put");
    let first = format!("/api/datasets/{DS}");
    hubtest::check_rate_limits(&store, &rig.hub, &first, &rig.scratch(), (&path, &sha)).await;
}

#[tokio::test]
async fn corrupted_or_truncated_downloads_are_never_ok_with_bad_data() {
    // Basic transfer: the archive is served by the resolve GET, where the faults bite.
    let rig = Rig::start(Transfer::Basic).await;
    let store = rig.store().await;
    let data = pseudo_random(256 << 10, 6);
    let (path, sha) = rig.archive("a.tar.gz", &data);
    let version = store
        .put(&path, &sha)
        .await
        .expect("put")
        .expect("commit id");
    let archive_get = format!("/datasets/{DS}/resolve/{version}/{ARCHIVE_NAME}");

    // A flipped byte: Ok, but the digests differ (the caller compares and refuses).
    rig.hub
        .faults()
        .add(Some("GET"), &archive_get, 1, Action::Corrupt);
    let (bytes, f) = fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .expect("backup");
    assert_ne!(bytes, data);
    assert_eq!(f.expected_sha256, sha);
    assert_ne!(f.actual_sha256, f.expected_sha256);

    // A silent truncation (matching Content-Length), every time: a Corrupt error.
    rig.hub
        .faults()
        .always(Some("GET"), &archive_get, Action::Truncate(1000));
    let e = expect_err(fetch(&store, &rig.scratch()).await);
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    rig.hub.faults().clear();

    // A connection dropped mid-body once: retried, and then the good bytes.
    rig.hub
        .faults()
        .add(Some("GET"), &archive_get, 1, Action::Abort(4096));
    let (bytes, f) = fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .expect("backup");
    assert_eq!(bytes, data);
    assert_eq!(f.actual_sha256, sha);

    // A corrupted sidecar: a Corrupt error or a digest mismatch, never a match.
    let sidecar_get = format!("/datasets/{DS}/resolve/{version}/{SIDECAR_NAME}");
    rig.hub
        .faults()
        .add(Some("GET"), &sidecar_get, 1, Action::Corrupt);
    let mut fetched_ok = 2;
    match fetch(&store, &rig.scratch()).await {
        Ok(Some((_, f))) => {
            assert_ne!(f.expected_sha256, f.actual_sha256);
            fetched_ok += 1;
        }
        Ok(None) => panic!("a corrupted sidecar is not 'no backup'"),
        Err(e) => {
            assert_clean(&e);
            assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        }
    }
    // Failed fetches leave nothing behind in scratch; successful ones leave the caller's file.
    let left: Vec<_> = std::fs::read_dir(rig.scratch())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(left.len(), fetched_ok, "{left:?}");
}

#[tokio::test]
async fn stalled_responses_time_out_within_the_configured_timeout() {
    let rig = Rig::start(Transfer::Xet).await;
    let mut s = rig.settings(Some(WRITE));
    s.hub.timeout = Duration::from_secs(1);
    let store = rig.store_with(s).await;
    let (path, sha) = rig.archive("a.tar.gz", b"archive");
    store.put(&path, &sha).await.expect("put");

    rig.hub
        .faults()
        .add(None, &format!("/api/datasets/{DS}"), 1, Action::Stall);
    let t = Instant::now();
    let e = expect_err(store.fetch_latest(&rig.scratch()).await);
    assert!(
        matches!(e, StoreError::Unavailable(ref m) if m.contains("timed out")),
        "{e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "timed out after {:?}",
        t.elapsed()
    );

    // A stalled commit: an error within the upload deadline, and nothing committed twice.
    let before = rig.commits();
    rig.hub
        .faults()
        .add(Some("POST"), &rig.commit_path(), 1, Action::Stall);
    let t = Instant::now();
    let (path, sha) = rig.archive("b.tar.gz", b"archive two");
    let e = expect_err(store.put(&path, &sha).await);
    assert!(
        matches!(e, StoreError::Unavailable(ref m) if m.contains("timed out")),
        "{e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "timed out after {:?}",
        t.elapsed()
    );
    assert_eq!(rig.commits(), before);
    // And the store recovers.
    store.put(&path, &sha).await.expect("put after the stall");
}

#[tokio::test]
async fn rejected_token_is_unauthorized_and_read_only_token_is_forbidden() {
    let rig = Rig::start(Transfer::Xet).await;
    rig.hub.create_repo(RepoType::Dataset, DS, true);
    let (path, sha) = rig.archive("a.tar.gz", b"archive");

    let store = rig.store_with(rig.settings(Some(UNKNOWN))).await;
    let e = expect_err(store.fetch_latest(&rig.scratch()).await);
    assert!(
        matches!(e, StoreError::Unauthorized(ref m) if m.contains("HF_TOKEN was rejected")),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("https://huggingface.co/settings/tokens"),
        "{e}"
    );
    let e = expect_err(store.put(&path, &sha).await);
    assert!(matches!(e, StoreError::Unauthorized(_)), "{e:?}");

    let store = rig.store_with(rig.settings(None)).await;
    let e = expect_err(store.put(&path, &sha).await);
    assert!(
        matches!(e, StoreError::Unauthorized(ref m) if m.contains("HF_TOKEN is not set")),
        "{e:?}"
    );

    let store = rig.store_with(rig.settings(Some(READ))).await;
    assert!(fetch(&store, &rig.scratch())
        .await
        .expect("a read token may read")
        .is_none());
    let e = expect_err(store.put(&path, &sha).await);
    assert!(
        matches!(e, StoreError::Forbidden(ref m) if m.contains("write access")),
        "{e:?}"
    );
    assert_eq!(rig.commits(), 1);

    // Injected 401/403 on any call map the same way.
    let store = rig.store().await;
    rig.hub.faults().add(None, "/api/", 1, Action::Status(401));
    assert!(matches!(
        expect_err(store.head().await),
        StoreError::Unauthorized(_)
    ));
    rig.hub.faults().add(None, "/api/", 1, Action::Status(403));
    assert!(matches!(
        expect_err(store.head().await),
        StoreError::Forbidden(_)
    ));
}

#[tokio::test]
async fn missing_dataset_or_files_mean_no_backup() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;
    // Dataset absent.
    assert!(fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .is_none());
    // Dataset present, no backup in it.
    rig.hub.create_repo(RepoType::Dataset, DS, true);
    assert!(fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .is_none());
    // A 404 injected on the dataset (as the Hub answers for a repo it hides): no backup.
    rig.hub.faults().add(
        None,
        &format!("/api/datasets/{DS}"),
        1,
        Action::StatusWithCode(404, "RepoNotFound".into()),
    );
    assert!(fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .is_none());
}

#[tokio::test]
async fn concurrent_writer_is_detected_not_overwritten() {
    let rig = Rig::start(Transfer::Xet).await;
    let ours = rig.store().await;
    let theirs = rig.store().await;
    let (a, sha_a) = rig.archive("a.tar.gz", b"ours 1");
    ours.put(&a, &sha_a).await.expect("put");

    // Another writer publishes in between.
    let (b, sha_b) = rig.archive("b.tar.gz", b"theirs");
    theirs.put(&b, &sha_b).await.expect("their put");
    let their_head = rig.head();

    let (c, sha_c) = rig.archive("c.tar.gz", b"ours 2");
    let e = expect_err(ours.put(&c, &sha_c).await);
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(rig.head(), their_head, "nothing overwritten");
    assert_eq!(
        rig.hub
            .file_bytes(RepoType::Dataset, DS, SIDECAR_NAME)
            .as_deref(),
        Some(sha_b.as_bytes())
    );

    // The Hub itself refusing a stale parent (412, the race the store cannot see coming).
    rig.hub
        .faults()
        .add(Some("POST"), &rig.commit_path(), 1, Action::Status(412));
    let e = expect_err(ours.put(&c, &sha_c).await);
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(rig.head(), their_head, "nothing overwritten");

    // Documented: after reporting the conflict, the next backup publishes on top.
    ours.put(&c, &sha_c)
        .await
        .expect("next put builds on the new head");
    assert_eq!(
        rig.hub
            .file_bytes(RepoType::Dataset, DS, SIDECAR_NAME)
            .as_deref(),
        Some(sha_c.as_bytes())
    );
    // A restore that stops at `head` (local state already up to date) sets the baseline too.
    let restarted = rig.store().await;
    let latest = restarted.head().await.expect("head").expect("backup");
    assert_eq!(latest.sha256.as_deref(), Some(sha_c.as_str()));
    rig.store()
        .await
        .put(&b, &sha_b)
        .await
        .expect("another writer's put");
    let e = expect_err(restarted.put(&a, &sha_a).await);
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
}

#[tokio::test]
async fn non_xet_transfers_fall_back_to_inline_commits() {
    for transfer in [Transfer::Basic, Transfer::None] {
        let rig = Rig::start(transfer).await;
        let store = rig.store().await;
        let data = pseudo_random(200 << 10, 7);
        let (path, sha) = rig.archive("a.tar.gz", &data);
        store.put(&path, &sha).await.expect("inline put");
        assert_eq!(rig.commits(), 2, "{transfer:?}: one commit");
        assert!(rig.hub.head_files(RepoType::Dataset, DS)[ARCHIVE_NAME]
            .xet_hash
            .is_none());
        let (bytes, f) = fetch(&store, &rig.scratch())
            .await
            .expect("fetch")
            .expect("backup");
        assert_eq!(bytes, data, "{transfer:?}");
        assert_eq!(f.expected_sha256, f.actual_sha256);

        // Like the real Hub, refuse big inline binaries: a clear, non-transient error.
        rig.hub.faults().set_max_inline_bytes(Some(100 << 10));
        let e = expect_err(store.put(&path, &sha).await);
        assert!(
            matches!(e, StoreError::Other(ref m) if m.contains("400") && m.contains("xet")),
            "{transfer:?}: {e:?}"
        );
    }
}

#[tokio::test]
async fn squash_keeps_retained_storage_bounded_over_1000_puts() {
    let rig = Rig::start(Transfer::Basic).await;
    let mut s = rig.settings(Some(WRITE));
    s.squash_every = 2;
    let store = rig.store_with(s).await;
    let size = 16 << 10;
    let mut max_retained = 0;
    let t = Instant::now();
    for i in 0..1000u64 {
        let (path, sha) = rig.archive("a.tar.gz", &pseudo_random(size, 1000 + i));
        store
            .put(&path, &sha)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        max_retained = max_retained.max(rig.hub.stored_bytes(RepoType::Dataset, DS));
    }
    let elapsed = t.elapsed();
    eprintln!(
        "1000 puts in {elapsed:?}; max retained {max_retained} bytes ({:.2} archives)",
        max_retained as f64 / size as f64
    );
    assert!(
        max_retained < 3 * size as u64,
        "retained {max_retained} bytes >= 3 x {size}"
    );
    assert!(
        rig.commits() <= 3,
        "history stays short: {} commits",
        rig.commits()
    );
    assert_eq!(
        rig.hub
            .count_requests("POST", &format!("/api/datasets/{DS}/super-squash/")),
        500
    );
}

#[tokio::test]
async fn xet_uploads_only_the_changed_chunks() {
    let rig = Rig::start(Transfer::Xet).await;
    let store = rig.store().await;
    let (data, patch) = (pseudo_random(50 << 20, 8), pseudo_random(4096, 9));
    let cas = || rig.hub.cas_bytes_received();
    hubtest::check_small_change(&store, rig.dir.path(), "dataset", data, &patch, cas).await;
}

/// The seed script's layout, written by the official Python client (two commits, tar.gz with
/// root entry `.openclaw/`, bare-hex sidecar), is fetched and then built upon.
#[tokio::test]
async fn seed_backup_uploaded_by_the_python_client_is_fetched() {
    let rig = Rig::start(Transfer::Xet).await;
    let py = python_venv(&[]).await;
    let seed = r#"
import hashlib, io, json, sys, tarfile
from huggingface_hub import HfApi
repo, out = sys.argv[1], sys.argv[2]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, data in [(".openclaw/openclaw.json", json.dumps({"gateway": {"port": 7860}}).encode()),
                       (".openclaw/agents/main/notes.md", b"x" * 300000)]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
data = buf.getvalue()
open(out, "wb").write(data)
sha = hashlib.sha256(data).hexdigest()
api = HfApi()
api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
api.upload_file(path_or_fileobj=out, path_in_repo="latest_backup.tar.gz", repo_id=repo, repo_type="dataset")
api.upload_file(path_or_fileobj=sha.encode(), path_in_repo="latest_backup.sha256", repo_id=repo, repo_type="dataset")
print("SEED UPLOADED", sha)
"#;
    let out_path = rig.dir.path().join("seed.tar.gz");
    let mut cmd = hubtest::python(&py, rig.hub.endpoint(), WRITE, rig.dir.path());
    cmd.args(["-c", seed, DS]).arg(&out_path);
    let (ok, stdout, stderr) =
        hubtest::run(&mut cmd, "the python seed upload", Duration::from_secs(120)).await;
    assert!(
        ok && stdout.contains("SEED UPLOADED"),
        "python seed upload failed:\n{stdout}\n{stderr}"
    );
    let seed_bytes = std::fs::read(&out_path).expect("seed archive");
    assert_eq!(
        rig.commits(),
        3,
        "seed layout: two separate commits after the initial one"
    );
    assert!(rig.hub.head_files(RepoType::Dataset, DS)[ARCHIVE_NAME]
        .xet_hash
        .is_some());

    let store = rig.store().await;
    let (bytes, f) = fetch(&store, &rig.scratch())
        .await
        .expect("fetch")
        .expect("the seed backup");
    assert_eq!(bytes, seed_bytes);
    assert_eq!(f.expected_sha256, sha256_hex(&seed_bytes));
    assert_eq!(f.actual_sha256, f.expected_sha256);

    // And our first upload builds on the seed's history.
    let (path, sha) = rig.archive("next.tar.gz", b"next");
    store
        .put(&path, &sha)
        .await
        .expect("put on top of the seed");
    assert_eq!(rig.commits(), 4);
}

/// Run the real binary against the fake hub with `HF_DATASET`; returns (success, stdout, stderr).
async fn entrypoint(rig: &Rig, data: &Path, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = hubtest::entrypoint(rig.hub.endpoint(), token, rig.dir.path(), data);
    cmd.args(args).env("HF_DATASET", DS);
    hubtest::run(
        &mut cmd,
        &format!("entrypoint {args:?}"),
        Duration::from_secs(120),
    )
    .await
}

fn result_of(stdout: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad JSON outcome ({e}): {stdout}"));
    v["result"].as_str().unwrap_or_default().to_string()
}

/// `entrypoint backup | restore | verify` end to end: the backup engine's archive through the
/// hf store into the fake hub, and back into an empty data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_backup_restore_verify_through_the_fake_hub() {
    let rig = Rig::start(Transfer::Xet).await;
    let data = rig.dir.path().join("data");
    let state = data.join(".openclaw");
    std::fs::create_dir_all(state.join("agents/main")).expect("state dir");
    std::fs::write(state.join("openclaw.json"), br#"{"gateway":{"port":7860}}"#).expect("config");
    let notes = pseudo_random(2 << 20, 10);
    std::fs::write(state.join("agents/main/notes.bin"), &notes).expect("notes");

    let (ok, out, err) = entrypoint(&rig, &data, WRITE, &["backup"]).await;
    assert!(ok, "backup failed:\n{err}");
    assert_eq!(result_of(&out), "uploaded", "{out}");
    assert_eq!(rig.hub.repo_is_private(RepoType::Dataset, DS), Some(true));
    assert_eq!(rig.commits(), 2, "archive and sidecar in one commit");
    let files = rig.hub.head_files(RepoType::Dataset, DS);
    assert!(
        files.contains_key(ARCHIVE_NAME) && files.contains_key(SIDECAR_NAME),
        "{files:?}"
    );

    // Nothing changed: no new commit.
    let (ok, out, err) = entrypoint(&rig, &data, WRITE, &["backup"]).await;
    assert!(ok, "second backup failed:\n{err}");
    assert_eq!(result_of(&out), "skipped", "{out}");
    assert_eq!(rig.commits(), 2);

    // A new container with an empty disk gets the state back.
    let fresh = rig.dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).expect("fresh data dir");
    let (ok, out, err) = entrypoint(&rig, &fresh, WRITE, &["restore"]).await;
    assert!(ok, "restore failed:\n{err}");
    assert_eq!(result_of(&out), "restored", "{out}");
    assert_eq!(
        std::fs::read(fresh.join(".openclaw/agents/main/notes.bin")).expect("restored file"),
        notes
    );
    let (ok, out, err) = entrypoint(&rig, &fresh, WRITE, &["verify"]).await;
    assert!(ok, "verify failed:\n{err}");
    assert_eq!(result_of(&out), "verified", "{out}");

    // A rejected token: a clear failure naming HF_TOKEN, and the backup on the hub untouched.
    std::fs::write(state.join("openclaw.json"), br#"{"gateway":{"port":7861}}"#).expect("config");
    let (ok, _, err) = entrypoint(&rig, &data, UNKNOWN, &["backup"]).await;
    assert!(!ok, "a rejected token must fail the backup");
    assert!(err.contains("HF_TOKEN was rejected (401)"), "{err}");
    assert_eq!(rig.commits(), 2);
}

/// Xet dedupe with the backup engine's own archive through `HF_DATASET` (see
/// `hubtest::check_real_archive_dedupe`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: ~50 s and 4 x 50 MB uploads; run with --ignored to measure"]
async fn cli_small_change_uploads_little_with_the_real_archive() {
    hubtest::check_real_archive_dedupe("dataset", ("HF_DATASET", DS), |hub| {
        hub.head_files(RepoType::Dataset, DS)[ARCHIVE_NAME].size
    })
    .await;
}

/// `entrypoint run -- CMD` with `HF_DATASET`: restore into an empty disk before the child
/// starts, the child sees the restored state and changes it, the final backup publishes it.
/// And when the restore fails, the final backup must not publish the unrestored state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_restores_before_the_child_and_backs_up_after_it() {
    let rig = Rig::start(Transfer::Xet).await;
    let first = rig.dir.path().join("first");
    std::fs::create_dir_all(first.join(".openclaw/agents/main")).expect("state dir");
    std::fs::write(
        first.join(".openclaw/agents/main/notes.txt"),
        "remember this",
    )
    .expect("notes");
    let (ok, _, err) = entrypoint(&rig, &first, WRITE, &["backup"]).await;
    assert!(ok, "backup failed:\n{err}");
    assert_eq!(rig.commits(), 2);

    // A new container: empty disk. The child checks the restored file and adds one.
    let second = rig.dir.path().join("second");
    std::fs::create_dir_all(&second).expect("data dir");
    let child = r#"grep -q 'remember this' "$OPENCLAW_HOME/.openclaw/agents/main/notes.txt" && echo added > "$OPENCLAW_HOME/.openclaw/added.txt""#;
    let (ok, _, err) = entrypoint(&rig, &second, WRITE, &["run", "--", "sh", "-c", child]).await;
    assert!(
        ok,
        "run failed (the child did not find the restored state?):\n{err}"
    );
    assert_eq!(
        rig.commits(),
        3,
        "the final backup published the child's change:\n{err}"
    );

    let third = rig.dir.path().join("third");
    std::fs::create_dir_all(&third).expect("data dir");
    let (ok, _, err) = entrypoint(&rig, &third, WRITE, &["restore"]).await;
    assert!(ok, "restore failed:\n{err}");
    assert_eq!(
        std::fs::read_to_string(third.join(".openclaw/added.txt")).expect("added.txt"),
        "added\n"
    );

    // The Hub fails the restore (every try of the first call), then recovers: the child still
    // runs, but its empty state must not replace the good backup.
    let fourth = rig.dir.path().join("fourth");
    std::fs::create_dir_all(&fourth).expect("data dir");
    rig.hub
        .faults()
        .add(None, &format!("/api/datasets/{DS}"), 4, Action::Status(503));
    let child = r#"mkdir -p "$OPENCLAW_HOME/.openclaw" && echo empty > "$OPENCLAW_HOME/.openclaw/fresh.txt""#;
    let (_, _, err) = entrypoint(&rig, &fourth, WRITE, &["run", "--", "sh", "-c", child]).await;
    assert_eq!(
        rig.hub.faults().pending(),
        0,
        "the restore met all 4 failures:\n{err}"
    );
    assert!(err.contains("RESTORE FAILED"), "{err}");
    assert!(
        err.contains("uploads are paused"),
        "the final backup was refused by the latch:\n{err}"
    );
    assert!(
        !err.contains("retry exhausted"),
        "hf-hub's own retry log is silenced:\n{err}"
    );
    assert_eq!(
        rig.commits(),
        3,
        "nothing uploaded after a failed restore:\n{err}"
    );
}

/// Another client committing a file that is not a backup (a README edit on the Hub).
async fn foreign_commit(rig: &Rig, path: &str, bytes: &[u8]) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client");
    let hub = hf_hub::HFClient::builder()
        .client(http)
        .endpoint(rig.hub.endpoint())
        .token(WRITE)
        .cache_enabled(false)
        .build()
        .expect("hf-hub client");
    let (owner, name) = DS.split_once('/').expect("owner/name");
    hub.dataset(owner, name)
        .upload_file()
        .source(hf_hub::repository::AddSource::Bytes(bytes.to_vec().into()))
        .path_in_repo(path)
        .send()
        .await
        .expect("foreign commit");
}

/// Versions are the commits since the last squash that hold a backup pair, newest first,
/// read through a paged commit list; each downloads at its own commit; a squash leaves one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_the_commits_since_the_last_squash() {
    let rig = Rig::start(Transfer::Xet).await;
    // Two commits a page: the store must follow the commit list's `Link` header.
    rig.hub.faults().set_commits_page_size(Some(2));
    let mut s = rig.settings(Some(WRITE));
    s.squash_every = 3;
    let store = rig.store_with(s).await;
    assert!(store.list_versions().await.expect("list").is_empty());

    let a = pseudo_random(200 << 10, 21);
    let b = pseudo_random(210 << 10, 22);
    let (pa, sha_a) = rig.archive("a.tar.gz", &a);
    let (pb, sha_b) = rig.archive("b.tar.gz", &b);
    let va = store.put(&pa, &sha_a).await.expect("put a").expect("id");
    let vb = store.put(&pb, &sha_b).await.expect("put b").expect("id");
    let listed = store.list_versions().await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [vb.as_str(), va.as_str()],
        "newest first; the initial commit is no version"
    );
    assert_eq!(listed[0].sha256.as_deref(), Some(sha_b.as_str()));
    assert_eq!(listed[1].sha256.as_deref(), Some(sha_a.as_str()));
    assert_eq!(
        (listed[0].size, listed[1].size),
        (b.len() as u64, a.len() as u64)
    );
    assert!(listed
        .iter()
        .all(|v| v.time.as_deref().is_some_and(|t| t.ends_with('Z'))));
    assert!(
        rig.hub
            .count_requests("GET", &format!("/api/datasets/{DS}/commits/"))
            >= 2,
        "followed the pages"
    );

    // The older version downloads at its commit, counting its bytes as they land.
    let progress = Progress::default();
    let f = store
        .fetch(&listed[1], &rig.scratch(), &progress)
        .await
        .expect("fetch older");
    assert_eq!(std::fs::read(&f.archive).expect("read"), a);
    assert_eq!(
        progress.bytes(),
        a.len() as u64,
        "progress counts every byte"
    );
    assert_eq!(
        (f.expected_sha256.as_str(), f.actual_sha256.as_str()),
        (sha_a.as_str(), sha_a.as_str())
    );
    assert!(rig.hub.requests().iter().any(|r| r
        .path
        .starts_with(&format!("/datasets/{DS}/resolve/{va}/{ARCHIVE_NAME}"))));

    // A commit that leaves the pair alone is the same version, named by the commit that
    // introduced it.
    foreign_commit(&rig, "README.md", b"# backups\n").await;
    let again = rig.store().await.list_versions().await.expect("list");
    assert_eq!(again, listed);

    // The third upload (after the conflict the foreign commit causes) is followed by a
    // squash: one commit, one version.
    let c = pseudo_random(190 << 10, 23);
    let (pc, sha_c) = rig.archive("c.tar.gz", &c);
    let e = expect_err(store.put(&pc, &sha_c).await);
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let head = store.put(&pc, &sha_c).await.expect("put c").expect("id");
    assert_eq!(rig.commits(), 1, "squashed");
    let listed = store.list_versions().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, head);
    assert_eq!(listed[0].sha256.as_deref(), Some(sha_c.as_str()));
}

/// After taking an older version (the newest failed verification), the next upload builds on
/// the head the restore read, not on the version taken: no false conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_after_a_fallback_builds_on_the_head() {
    let rig = Rig::start(Transfer::Xet).await;
    let writer = rig.store().await;
    let (good, sha_good) = rig.archive("good.tar.gz", &pseudo_random(64 << 10, 31));
    let (bad, sha_bad) = rig.archive("bad.tar.gz", &pseudo_random(64 << 10, 32));
    writer.put(&good, &sha_good).await.expect("put good");
    writer.put(&bad, &sha_bad).await.expect("put bad");

    let restarted = rig.store().await;
    let head = restarted.head().await.expect("head").expect("backup");
    assert_eq!(head.sha256.as_deref(), Some(sha_bad.as_str()));
    let listed = restarted.list_versions().await.expect("list");
    assert_eq!(listed[0].id, head.id);
    restarted
        .fetch(&listed[1], &rig.scratch(), &Progress::default())
        .await
        .expect("fetch older");
    let before = rig.commits();
    let (next, sha_next) = rig.archive("next.tar.gz", &pseudo_random(64 << 10, 33));
    restarted
        .put(&next, &sha_next)
        .await
        .expect("the next upload publishes on top of the bad head");
    assert_eq!(rig.commits(), before + 1);
}

/// The issue's case through the real binary: the newest commit holds a database failing
/// quick_check (its sidecar matches), the commit before it is good. A fresh data dir gets the
/// good one, in one line, exit 0, and uploads are not paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_restore_falls_back_to_the_previous_commit() {
    let rig = Rig::start(Transfer::Xet).await;
    let data = rig.dir.path().join("data");
    let state = data.join(".openclaw");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("notes.md"), "good").expect("notes");
    craft::good_db(&state.join("state/app.sqlite"), "good");
    let (ok, _, err) = entrypoint(&rig, &data, WRITE, &["backup"]).await;
    assert!(ok, "backup failed:\n{err}");
    let good = rig.head();
    let (path, sha) = rig.archive("bad.tar.gz", &craft::corrupt_version());
    let bad = rig
        .store()
        .await
        .put(&path, &sha)
        .await
        .expect("put")
        .expect("id");

    let fresh = rig.dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).expect("data dir");
    let (ok, out, err) = entrypoint(&rig, &fresh, WRITE, &["restore"]).await;
    assert!(ok, "restore failed:\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON outcome");
    assert_eq!(v["result"], "restored", "{v}");
    assert_eq!(v["version"], good.as_str());
    assert_eq!(v["skipped"][0]["version"], bad.as_str());
    let said: Vec<&str> = err.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(said.len(), 1, "one line:\n{err}");
    assert!(
        said[0].contains(&good[..12])
            && said[0].contains(&bad[..12])
            && said[0].contains("quick_check failed"),
        "{}",
        said[0]
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join(".openclaw/notes.md")).expect("notes"),
        "good"
    );

    // Not paused: a change is uploaded on top, and the next fresh restore takes it directly.
    std::fs::write(fresh.join(".openclaw/notes.md"), "good, then more").expect("notes");
    let (ok, out, err) = entrypoint(&rig, &fresh, WRITE, &["backup"]).await;
    assert!(ok, "backup after the fallback failed:\n{err}");
    assert_eq!(result_of(&out), "uploaded", "{out}");
    let third = rig.dir.path().join("third");
    std::fs::create_dir_all(&third).expect("data dir");
    let (ok, out, err) = entrypoint(&rig, &third, WRITE, &["restore"]).await;
    assert!(ok, "restore failed:\n{err}");
    assert!(!out.contains("skipped"), "{out}");
    assert_eq!(
        std::fs::read_to_string(third.join(".openclaw/notes.md")).expect("notes"),
        "good, then more"
    );

    // The versions as the CLI lists them: newest first, the bad one in the middle.
    let (ok, out, err) = entrypoint(&rig, &third, WRITE, &["restore", "--list", "--json"]).await;
    assert!(ok, "list failed:\n{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("JSON list");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, [rig.head().as_str(), bad.as_str(), good.as_str()]);
    assert!(rows
        .iter()
        .all(|r| r["store"].as_str().is_some_and(|s| s.starts_with("hf:"))));
}
