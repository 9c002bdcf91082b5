//! Conformance of the fake Hub (tests/support/fakehub) against real clients: the Rust `hf-hub`
//! 1.0 crate (in process) and the official Python `huggingface_hub` 2.4.0 (through
//! `tests/conformance/hf_client_check.py`, with and without `hf_xet`).
//!
//! If a real client disagrees with the fake, the fake is wrong.
#[path = "support/fakehub/mod.rs"]
mod fakehub;
#[path = "support/hubtest.rs"]
mod hubtest;

use std::time::Duration;

use fakehub::{pseudo_random, sha256_hex, Access, Action, Config, FakeHub, RepoType, Transfer};
use hf_hub::repository::{AddSource, CommitOperation, RepoTypeDataset};
use hf_hub::{HFClient, HFClientBuilder, HFError};

const WRITE: &str = "hf_fake_write";
const READ: &str = "hf_fake_read";

/// An hf-hub client for the fake: explicit timeouts and no proxy (hf-hub has no defaults).
fn client(hub: &FakeHub, token: Option<&str>, cache: &std::path::Path) -> HFClient {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client");
    let mut b = HFClientBuilder::new()
        .endpoint(hub.endpoint())
        .client(http)
        .cache_dir(cache)
        .retry_base_delay(Duration::from_millis(10));
    if let Some(t) = token {
        b = b.token(t);
    }
    b.build().expect("hf-hub client")
}

async fn start(transfer: Transfer, dir: &std::path::Path) -> FakeHub {
    let hub = FakeHub::start(Config {
        transfer,
        cas_dir: dir.join("cas"),
        port: 0,
    })
    .await;
    hub.add_token(WRITE, Access::Write);
    hub.add_token(READ, Access::Read);
    hub
}

fn add(path: &str, content: &[u8]) -> CommitOperation {
    CommitOperation::Add {
        path_in_repo: path.into(),
        source: AddSource::Bytes(content.to_vec().into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_xet_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    let hf = client(&hub, Some(WRITE), &tmp.path().join("cache"));

    // create, then again: exist_ok → Ok, otherwise Conflict.
    hf.create_repository()
        .repo_id("me/backups")
        .repo_type(RepoTypeDataset)
        .private(true)
        .send()
        .await
        .unwrap();
    hf.create_repository()
        .repo_id("me/backups")
        .repo_type(RepoTypeDataset)
        .exist_ok(true)
        .send()
        .await
        .unwrap();
    let again = hf
        .create_repository()
        .repo_id("me/backups")
        .repo_type(RepoTypeDataset)
        .send()
        .await;
    assert!(matches!(again, Err(HFError::Conflict { .. })), "{again:?}");
    assert_eq!(
        hub.repo_is_private(RepoType::Dataset, "me/backups"),
        Some(true)
    );

    let repo = hf.dataset("me", "backups");
    let archive = pseudo_random(300_000, 1);
    let sidecar = format!("{}\n", sha256_hex(&archive));
    let info = repo
        .create_commit()
        .operations(vec![
            add("latest_backup.tar.gz", &archive),
            add("latest_backup.sha256", sidecar.as_bytes()),
        ])
        .commit_message("backup")
        .send()
        .await
        .unwrap();
    assert_eq!(
        hub.count_requests("POST", "/api/datasets/me/backups/commit/"),
        1
    );
    assert!(hub.count_requests("GET", "/api/datasets/me/backups/xet-write-token/") >= 1);

    // The xet client wrote the local:// layout the facts describe, and the fake linked it.
    let shards = std::fs::read_dir(hub.cas_dir().join("xet/xorbs/shards")).unwrap();
    assert!(shards
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "mdb")));
    assert!(
        hub.cas_bytes_received() > 250_000,
        "xorb bytes: {}",
        hub.cas_bytes_received()
    );
    cross_check_shard_parser(hub.cas_dir());
    let files = hub.head_files(RepoType::Dataset, "me/backups");
    let tar = &files["latest_backup.tar.gz"];
    assert!(tar.lfs && tar.xet_hash.is_some(), "{tar:?}");
    assert_eq!(tar.sha256, sha256_hex(&archive));
    assert!(!files["latest_backup.sha256"].lfs);
    assert_eq!(
        info.commit_oid.as_deref(),
        Some(hub.commits(RepoType::Dataset, "me/backups")[0].oid.as_str())
    );

    // Downloads: bytes (status checked), local_dir, ranged; the fake can also rebuild xet files.
    let got = repo
        .download_file_to_bytes()
        .filename("latest_backup.tar.gz")
        .send()
        .await
        .unwrap();
    assert!(got.as_ref() == archive.as_slice(), "xet download differs");
    let dir = tmp.path().join("restore");
    let p = repo
        .download_file()
        .filename("latest_backup.sha256")
        .local_dir(dir.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(p).unwrap(), sidecar);
    let part = repo
        .download_file_to_bytes()
        .filename("latest_backup.tar.gz")
        .range(1000..2000)
        .send()
        .await
        .unwrap();
    assert!(part.as_ref() == &archive[1000..2000]);
    let rebuilt = hub.file_bytes(RepoType::Dataset, "me/backups", "latest_backup.tar.gz");
    assert!(
        rebuilt.as_deref() == Some(archive.as_slice()),
        "fake could not rebuild the xet file"
    );

    // Existence and metadata.
    assert!(repo
        .file_exists()
        .filename("latest_backup.tar.gz")
        .send()
        .await
        .unwrap());
    assert!(!repo
        .file_exists()
        .filename("nope.tar.gz")
        .send()
        .await
        .unwrap());
    let bad_rev = repo
        .file_exists()
        .filename("nope")
        .revision("no-such-branch")
        .send()
        .await;
    assert!(
        matches!(bad_rev, Err(HFError::RevisionNotFound { .. })),
        "{bad_rev:?}"
    );
    let infos = repo
        .get_paths_info()
        .paths(vec!["latest_backup.tar.gz".into(), "missing".into()])
        .send()
        .await
        .unwrap();
    assert_eq!(infos.len(), 1);
    let meta = repo
        .get_file_metadata()
        .filepath("latest_backup.tar.gz")
        .send()
        .await
        .unwrap();
    assert_eq!(meta.file_size, archive.len() as u64);
    let tree: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(
        repo.list_tree()
            .recursive(true)
            .expand(true)
            .send()
            .unwrap(),
    )
    .await;
    let commit_oid = info.commit_oid.clone().unwrap();
    let last = tree.iter().find_map(|e| match e.as_ref().unwrap() {
        hf_hub::repository::RepoTreeEntry::File {
            path, last_commit, ..
        } if path == "latest_backup.tar.gz" => last_commit.as_ref().and_then(|c| c.id.clone()),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some(commit_oid.as_str()), "{tree:?}");

    hf.delete_repository()
        .repo_id("me/backups")
        .repo_type(RepoTypeDataset)
        .send()
        .await
        .unwrap();
    assert!(!hub.repo_exists(RepoType::Dataset, "me/backups"));
    assert!(!repo.exists().send().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_basic_transfer_goes_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Basic, tmp.path()).await;
    hub.create_repo(RepoType::Dataset, "me/b", true);
    let repo = client(&hub, Some(WRITE), &tmp.path().join("cache")).dataset("me", "b");
    let archive = pseudo_random(200_000, 2);
    repo.upload_file()
        .source(AddSource::Bytes(archive.clone().into()))
        .path_in_repo("a.tar.gz")
        .send()
        .await
        .unwrap();
    // hf-hub never PUTs: anything but "xet" from the batch means base64 inside the commit.
    assert_eq!(hub.count_requests("PUT", "/lfs-upload/"), 0);
    assert_eq!(
        hub.count_requests("GET", "/api/datasets/me/b/xet-write-token/"),
        0
    );
    assert!(hub.http_bytes_received() > 200_000 * 4 / 3);
    let got = repo
        .download_file_to_bytes()
        .filename("a.tar.gz")
        .send()
        .await
        .unwrap();
    assert!(got.as_ref() == archive.as_slice());

    // The real Hub refuses big inline binaries; with the limit set, so does the fake (400).
    hub.faults().set_max_inline_bytes(Some(100_000));
    let r = repo
        .upload_file()
        .source(AddSource::Bytes(archive.clone().into()))
        .path_in_repo("b.tar.gz")
        .send()
        .await;
    assert!(
        matches!(&r, Err(HFError::Http { context }) if context.status.as_u16() == 400),
        "{r:?}"
    );
    assert!(!hub
        .head_files(RepoType::Dataset, "me/b")
        .contains_key("b.tar.gz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_auth_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.create_repo(RepoType::Dataset, "me/private", true);
    let cache = tmp.path().join("cache");

    // Without a token a private repo does not exist; creating needs a token.
    let anon = client(&hub, None, &cache);
    assert!(!anon.dataset("me", "private").exists().send().await.unwrap());
    let r = anon
        .create_repository()
        .repo_id("me/x")
        .repo_type(RepoTypeDataset)
        .send()
        .await;
    assert!(matches!(r, Err(HFError::AuthRequired { .. })), "{r:?}");

    // Writes without a token are 401 even where the repo is invisible (private).
    let r = anon
        .dataset("me", "private")
        .upload_file()
        .source(AddSource::Bytes(b"x".to_vec().into()))
        .path_in_repo("x.txt")
        .send()
        .await;
    assert!(matches!(r, Err(HFError::AuthRequired { .. })), "{r:?}");

    // A read token reads, but cannot commit.
    let reader = client(&hub, Some(READ), &cache).dataset("me", "private");
    assert!(reader.exists().send().await.unwrap());
    let r = reader
        .upload_file()
        .source(AddSource::Bytes(b"x".to_vec().into()))
        .path_in_repo("x.txt")
        .send()
        .await;
    assert!(matches!(r, Err(HFError::Forbidden { .. })), "{r:?}");
    assert_eq!(hub.commits(RepoType::Dataset, "me/private").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_under_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.create_repo(RepoType::Dataset, "me/f", true);
    let repo = client(&hub, Some(WRITE), &tmp.path().join("cache")).dataset("me", "f");
    let commit_path = "/api/datasets/me/f/commit/";
    let up = |name: &str, data: &[u8]| {
        repo.upload_file()
            .source(AddSource::Bytes(data.to_vec().into()))
            .path_in_repo(name.to_string())
            .send()
    };

    // Two 503s before the commit: hf-hub retries and the third try lands, once.
    hub.faults()
        .add(Some("POST"), commit_path, 2, Action::Status(503));
    up("a.txt", b"one").await.unwrap();
    assert_eq!(hub.count_requests("POST", commit_path), 3);
    assert_eq!(hub.commits(RepoType::Dataset, "me/f").len(), 2);

    // A 500 after the commit was applied: hf-hub retries the POST and commits twice.
    hub.faults()
        .add(Some("POST"), commit_path, 1, Action::StatusAfter(500));
    up("b.txt", b"two").await.unwrap();
    assert_eq!(
        hub.commits(RepoType::Dataset, "me/f").len(),
        4,
        "duplicate commit expected"
    );

    // A stale parent commit is refused with 412.
    let old = hub.commits(RepoType::Dataset, "me/f")[1].oid.clone();
    let r = repo
        .upload_file()
        .source(AddSource::Bytes(b"3".to_vec().into()))
        .path_in_repo("c.txt")
        .parent_commit(old)
        .send()
        .await;
    assert!(
        matches!(&r, Err(HFError::Http { context }) if context.status.as_u16() == 412),
        "{r:?}"
    );

    // 429 with Retry-After comes out as RateLimited once retries run out.
    hub.faults().always(
        Some("GET"),
        "/api/datasets/me/f",
        Action::RateLimited {
            retry_after_secs: 7,
        },
    );
    let r = repo.exists().send().await;
    assert!(matches!(r, Err(HFError::RateLimited { .. })), "{r:?}");
    hub.faults().clear();

    // A silently truncated GET body is returned as-is: only a checksum catches it.
    hub.faults().add(
        Some("GET"),
        "/datasets/me/f/resolve/",
        1,
        Action::Truncate(1),
    );
    let got = repo
        .download_file_to_bytes()
        .filename("a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"o");
    hub.faults()
        .add(Some("GET"), "/datasets/me/f/resolve/", 1, Action::Corrupt);
    let got = repo
        .download_file_to_bytes()
        .filename("a.txt")
        .send()
        .await
        .unwrap();
    assert_ne!(got.as_ref(), b"one");

    // A connection dropped mid-body is transient for hf-hub: it retries and recovers...
    let gets = hub.count_requests("GET", "/datasets/me/f/resolve/");
    hub.faults()
        .add(Some("GET"), "/datasets/me/f/resolve/", 1, Action::Abort(1));
    let got = repo
        .download_file_to_bytes()
        .filename("a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"one");
    assert_eq!(
        hub.count_requests("GET", "/datasets/me/f/resolve/"),
        gets + 2
    );
    // ...and errors out when every try is cut.
    hub.faults()
        .always(Some("GET"), "/datasets/me/f/resolve/", Action::Abort(1));
    let r = repo.download_file_to_bytes().filename("a.txt").send().await;
    assert!(r.is_err(), "{r:?}");
    hub.faults().clear();

    // Forced errors carry the X-Error-Code the client maps from.
    hub.faults().add(
        Some("HEAD"),
        "/datasets/me/f/resolve/",
        1,
        Action::Status(401),
    );
    let r = repo.file_exists().filename("a.txt").send().await;
    assert!(matches!(r, Err(HFError::AuthRequired { .. })), "{r:?}");
    let create = "/api/repos/create";
    hub.faults()
        .add(Some("POST"), create, 1, Action::Status(409));
    let hf = client(&hub, Some(WRITE), &std::env::temp_dir());
    let r = hf
        .create_repository()
        .repo_id("me/new")
        .repo_type(RepoTypeDataset)
        .send()
        .await;
    assert!(matches!(r, Err(HFError::Conflict { .. })), "{r:?}");
    assert!(!hub.repo_exists(RepoType::Dataset, "me/new"));

    // A delayed answer still arrives, and the request is logged once it is answered.
    hub.faults().add(
        Some("GET"),
        "/api/datasets/me/f",
        1,
        Action::Delay(Duration::from_millis(300)),
    );
    let t0 = std::time::Instant::now();
    assert!(repo.exists().send().await.unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // A stalled answer never comes: the caller's own deadline is what ends it.
    hub.faults()
        .add(Some("HEAD"), "/datasets/me/f/resolve/", 1, Action::Stall);
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        repo.file_exists().filename("a.txt").send(),
    )
    .await;
    assert!(r.is_err() && t0.elapsed() < Duration::from_secs(5));
    // The stalled request is logged (status 0) as soon as it arrives.
    assert!(
        hub.wait_for_requests("HEAD", "/datasets/me/f/resolve/", 1, Duration::from_secs(5))
            .await
    );
    assert_eq!(hub.faults().pending(), 0);
}

/// Run tests/conformance/hf_client_check.py against a fresh fake and return the fake.
async fn run_python_check(transfer: Transfer, expect: &str, tmp: &std::path::Path) -> FakeHub {
    run_python_check_on(start(transfer, tmp).await, expect, tmp).await
}

async fn run_python_check_on(hub: FakeHub, expect: &str, tmp: &std::path::Path) -> FakeHub {
    let py = hubtest::python_venv(if expect == "xet" { &[] } else { &["--no-xet"] }).await;
    // Two commits a page: the client must follow the `Link` header to see all four.
    hub.faults().set_commits_page_size(Some(2));
    let check = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/hf_client_check.py"
    );
    let mut cmd = hubtest::python(&py, hub.endpoint(), WRITE, tmp);
    cmd.arg(check)
        .args(["--repo", "me/check", "--expect", expect])
        .current_dir(tmp)
        .env("HF_READ_TOKEN", READ);
    if expect != "xet" {
        cmd.env("HF_HUB_DISABLE_XET", "1");
    }
    let (ok, stdout, stderr) =
        hubtest::run(&mut cmd, "hf_client_check.py", Duration::from_secs(300)).await;
    assert!(
        ok && stdout.contains("ok read-only token") && stdout.contains("CHECK PASSED"),
        "the official client disagrees with the fake ({expect}):\n{stdout}\n{stderr}"
    );
    // Pages: 2 + 2 (at main, plain and formatted), 1 (at an older commit), 1 (after the squash).
    assert_eq!(
        hub.count_requests("GET", "/api/datasets/me/check/commits/"),
        6,
        "the client followed the commit list's Link header"
    );
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_xet() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = run_python_check(Transfer::Xet, "xet", tmp.path()).await;
    // hf_xet goes straight to the write token; the LFS batch is never called.
    assert_eq!(
        hub.count_requests("POST", "/datasets/me/check.git/info/lfs/objects/batch"),
        0
    );
    assert!(hub.count_requests("GET", "/api/datasets/me/check/xet-write-token/") >= 3);
    assert!(
        hub.cas_bytes_received() > 700_000,
        "xorb bytes: {}",
        hub.cas_bytes_received()
    );
    check_history_after_python(&hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_legacy_lfs() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = run_python_check(Transfer::Basic, "lfs", tmp.path()).await;
    // Legacy LFS: batch -> PUT (no auth) -> verify, for each of the three LFS uploads.
    assert_eq!(hub.count_requests("PUT", "/lfs-upload/"), 3);
    assert_eq!(hub.count_requests("POST", "/lfs-verify/"), 3);
    assert_eq!(
        hub.count_requests("GET", "/api/datasets/me/check/xet-write-token/"),
        0
    );
    assert_eq!(hub.cas_bytes_received(), 0);
    check_history_after_python(&hub);
}

/// After the script: squash left one commit, then delete_file added one; history retains the
/// head's files plus the deleted `dir/state.bin` (150,000 bytes), and nothing from before.
fn check_history_after_python(hub: &FakeHub) {
    let commits = hub.commits(RepoType::Dataset, "me/check");
    assert_eq!(commits.len(), 2, "{commits:#?}");
    assert!(commits[1].parent.is_none());
    let head: u64 = commits[0].files.values().map(|f| f.size).sum();
    assert_eq!(
        hub.stored_bytes(RepoType::Dataset, "me/check"),
        head + 150_000
    );
    assert!(!commits[0].files.contains_key("dir/state.bin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_behind_cdn_redirect() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.create_repo(RepoType::Dataset, "me/cdn", true);
    let repo = client(&hub, Some(WRITE), &tmp.path().join("cache")).dataset("me", "cdn");
    let archive = pseudo_random(120_000, 4);
    repo.upload_file()
        .source(AddSource::Bytes(archive.clone().into()))
        .path_in_repo("a.tar.gz")
        .send()
        .await
        .unwrap();

    // The real Hub 302s LFS content to a CDN on another origin (facts §1.4, §3.4 D).
    hub.faults().set_redirect_resolve(true);
    let got = repo
        .download_file_to_bytes()
        .filename("a.tar.gz")
        .send()
        .await
        .unwrap();
    assert!(
        got.as_ref() == archive.as_slice(),
        "download through the CDN differs"
    );
    assert!(hub.count_requests("GET", "/cdn/") >= 1);
    let meta = repo.get_file_metadata().filepath("a.tar.gz").send().await;
    assert!(
        matches!(meta, Err(HFError::MalformedResponse { .. })),
        "{meta:?}"
    );
    // paths-info is the way to metadata that survives the redirect.
    let infos = repo
        .get_paths_info()
        .paths(vec!["a.tar.gz".into()])
        .send()
        .await
        .unwrap();
    assert_eq!(infos.len(), 1);
}

/// The fake's hand-written shard parser (support/fakehub/xet.rs) must read what the xet
/// format library reads from the same shard files.
fn cross_check_shard_parser(cas_dir: &std::path::Path) {
    use xet_core_structures::metadata_shard::streaming_shard::MDBMinimalShard;
    let dir = cas_dir.join("xet/xorbs/shards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "mdb") {
            continue;
        }
        let ours = fakehub::xet::parse_shard_file(&path).unwrap();
        let data = std::fs::read(&path).unwrap();
        let theirs = MDBMinimalShard::from_reader(&mut data.as_slice(), true, false).unwrap();
        assert_eq!(ours.len(), theirs.num_files(), "{}", path.display());
        for (i, mine) in ours.iter().enumerate() {
            let view = theirs.file(i).unwrap();
            assert_eq!(mine.xet_hash, view.file_hash().hex());
            assert_eq!(mine.sha256, view.metadata_ext().map(|m| m.sha256.hex()));
            assert_eq!(mine.segments.len(), view.num_entries());
            for (j, seg) in mine.segments.iter().enumerate() {
                let e = view.entry(j);
                assert_eq!(seg.xorb_hash, e.xorb_hash.hex());
                assert_eq!(
                    (seg.chunk_start, seg.chunk_end, seg.unpacked_bytes),
                    (
                        e.chunk_index_start,
                        e.chunk_index_end,
                        e.unpacked_segment_bytes
                    )
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no file described in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_legacy_lfs_without_transfer_key() {
    // `Transfer::None`: the batch answer has no "transfer" key; Python still uses the actions.
    let tmp = tempfile::tempdir().unwrap();
    let hub = run_python_check(Transfer::None, "lfs", tmp.path()).await;
    assert_eq!(hub.count_requests("PUT", "/lfs-upload/"), 3);
    check_history_after_python(&hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_growth_xet_dedup_and_super_squash() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.create_repo(RepoType::Dataset, "me/grow", true);
    let repo = client(&hub, Some(WRITE), &tmp.path().join("cache")).dataset("me", "grow");
    let upload = |data: Vec<u8>| {
        repo.upload_file()
            .source(AddSource::Bytes(data.into()))
            .path_in_repo("latest_backup.tar.gz")
            .send()
    };
    let base = pseudo_random(1_000_000, 5);

    // Overwriting one path keeps every version in history (what the Hub bills).
    upload(base.clone()).await.unwrap();
    let cas_first = hub.cas_bytes_received();
    let mut changed = base.clone();
    changed.extend_from_slice(b"a few more bytes at the end");
    upload(changed.clone()).await.unwrap();
    let cas_second = hub.cas_bytes_received() - cas_first;
    let gitattributes = hub.head_files(RepoType::Dataset, "me/grow")[".gitattributes"].size;
    assert_eq!(
        hub.stored_bytes(RepoType::Dataset, "me/grow"),
        gitattributes + base.len() as u64 + changed.len() as u64
    );
    // ...while xet's chunk dedup sends only the changed tail the second time.
    assert!(
        cas_second < cas_first / 4,
        "xet sent {cas_second} bytes for a 27-byte change (first upload {cas_first})"
    );
    eprintln!("xorb bytes: first upload {cas_first}, appended-27-bytes upload {cas_second}");

    // Super-squash is raw HTTP (not in hf-hub 1.0): one commit remains, storage drops.
    let url = format!("{}/api/datasets/me/grow/super-squash/main", hub.endpoint());
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .bearer_auth(WRITE);
    let r = r
        .json(&serde_json::json!({"message": "squash"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(hub.commits(RepoType::Dataset, "me/grow").len(), 1);
    let listed: Vec<_> =
        futures_util::StreamExt::collect::<Vec<_>>(repo.list_commits().send().unwrap()).await;
    assert_eq!(
        listed.len(),
        1,
        "hf-hub sees one commit after the squash: {listed:?}"
    );
    assert_eq!(
        hub.stored_bytes(RepoType::Dataset, "me/grow"),
        gitattributes + changed.len() as u64
    );
    let got = repo
        .download_file_to_bytes()
        .filename("latest_backup.tar.gz")
        .send()
        .await
        .unwrap();
    assert!(got.as_ref() == changed.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_legacy_lfs_behind_cdn_redirect() {
    // LFS resolves answer 302 to another origin; Python stops there, reads the 302's headers
    // and fetches the CDN URL without auth (facts §2, §3.4 D).
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Basic, tmp.path()).await;
    hub.faults().set_redirect_resolve(true);
    let hub = run_python_check_on(hub, "lfs", tmp.path()).await;
    assert!(hub.count_requests("GET", "/cdn/") >= 2);
    check_history_after_python(&hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_xet_behind_cdn_redirect() {
    // The 302 carries X-Xet-Hash and the xet-auth Link: Python downloads through xet.
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.faults().set_redirect_resolve(true);
    let hub = run_python_check_on(hub, "xet", tmp.path()).await;
    assert!(hub.count_requests("GET", "/api/datasets/me/check/xet-read-token/") >= 1);
    check_history_after_python(&hub);
}

/// The official client against the fake's Storage Buckets (`tests/conformance/hf_bucket_check.py`:
/// create_bucket, batch_bucket_files, list_bucket_tree, get_bucket_paths_info,
/// download_bucket_files), and reading a backup our bucket store published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_buckets() {
    use openclaw_space::settings::BucketSettings;
    use openclaw_space::store::{bucket::BucketStore, Store};
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hubtest::test_env();
    let store = BucketStore::open(&BucketSettings {
        bucket: "me/backups".into(),
        prefix: "space".into(),
        hub: hubtest::access(hub.endpoint(), Some(WRITE)),
        keep: 3,
    })
    .await
    .expect("open");
    let archive = tmp.path().join("a.tar.gz");
    let data = pseudo_random(200_000, 5);
    std::fs::write(&archive, &data).unwrap();
    store
        .put(&archive, &sha256_hex(&data))
        .await
        .expect("the store publishes");

    let py = hubtest::python_venv(&[]).await;
    let check = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/hf_bucket_check.py"
    );
    let mut cmd = hubtest::python(&py, hub.endpoint(), WRITE, tmp.path());
    cmd.arg(check)
        .args(["--bucket", "me/check-bucket", "--store", "me/backups/space"])
        .current_dir(tmp.path())
        .env("HF_READ_TOKEN", READ);
    let (ok, stdout, stderr) =
        hubtest::run(&mut cmd, "hf_bucket_check.py", Duration::from_secs(300)).await;
    assert!(
        ok && stdout.contains("ok batch_bucket_files partial failure")
            && stdout.contains("ok the Rust store's backup")
            && stdout.contains("CHECK PASSED"),
        "the official client disagrees with the fake's buckets:\n{stdout}\n{stderr}"
    );
    // Python sends mtime in milliseconds (the Hub's unit).
    let files = hub.bucket_files("me/check-bucket");
    let mtime = files["dir/sub/b.bin"].mtime_ms.expect("mtime sent");
    assert!(mtime > 1_600_000_000_000, "milliseconds: {mtime}");
}

/// hf-hub 1.0's bucket quirks, seen against the fake (why the bucket store verifies its adds
/// and deletes through its own call): a 200 that lists a failed operation is `Ok`, and
/// `upload_files` sends `mtime` in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_crate_bucket_quirks() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(Transfer::Xet, tmp.path()).await;
    hub.create_bucket("me/q", true);
    let c = client(&hub, Some(WRITE), &tmp.path().join("cache"));
    let bucket = c.bucket("me", "q");
    let local = tmp.path().join("f.bin");
    std::fs::write(&local, pseudo_random(10_000, 1)).unwrap();
    bucket
        .upload_files()
        .files(vec![hf_hub::buckets::BucketUpload::new(&local, "f.bin")])
        .send()
        .await
        .expect("upload");
    let mtime = hub.bucket_files("me/q")["f.bin"].mtime_ms.expect("mtime");
    assert!(mtime < 10_000_000_000, "hf-hub sends seconds: {mtime}");

    hub.faults().fail_bucket_adds("g.bin", 1);
    bucket
        .upload_source_files()
        .files(vec![("g.bin".to_string(), AddSource::bytes(b"g".to_vec()))])
        .send()
        .await
        .expect("hf-hub takes the failed add for success");
    assert!(!hub.bucket_files("me/q").contains_key("g.bin"));
    let r = bucket
        .delete_files()
        .paths(vec!["f.bin".into(), "missing.bin".into()])
        .send()
        .await;
    assert!(r.is_ok(), "a partial failure is Ok for hf-hub: {r:?}");
    assert!(hub.bucket_files("me/q").is_empty());
}
