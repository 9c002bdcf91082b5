//! A fake Hugging Face Hub on 127.0.0.1 for tests: the endpoints of
//! `shared/facts/hf-hub-protocol.md` §6 (repos, commits, resolve, preupload, LFS batch, xet
//! tokens, paths-info, tree, super-squash), with per-commit history and fault-injection knobs.
//!
//! It is checked by the official Python client (`tests/fakehub_conformance.rs`), so it is
//! faithful where clients look: headers, status codes and `X-Error-Code`s.
//!
//! Xet: the fake hands out `casUrl: "local:///<cas_dir>"`, so the xet client writes xorbs and
//! shards straight into `<cas_dir>/xet/xorbs/` with no CAS server. At commit time the fake parses
//! the shards there (`xet.rs`) to learn which sha256 (the `lfsFile` oid) is which xet file hash.
//!
//! Storage Buckets (`buckets.rs`, `routes/buckets.rs`): create/info, tree, paths-info, xet
//! tokens, the NDJSON batch with per-file failures inside a 200, resolve.
//!
//! Use from an integration test:
//! ```ignore
//! #[path = "support/fakehub/mod.rs"] mod fakehub;
//! let hub = fakehub::FakeHub::start(fakehub::Config::xet(cas_dir)).await;
//! hub.add_token("hf_write", fakehub::Access::Write);
//! hub.create_repo(fakehub::RepoType::Dataset, "me/backups", true);
//! // ... point a client at hub.endpoint() ...
//! assert_eq!(hub.count_requests("POST", "/api/datasets/me/backups/commit/"), 1);
//! ```
//!
//! What tests can look at: `commits`/`head_files`/`file_bytes` (repo state), `stored_bytes`
//! (history retained: grows on overwrite, shrinks on super-squash), `cas_bytes_received` (xorb
//! bytes xet really sent), `http_bytes_received`, `requests`/`count_requests`/
//! `wait_for_requests`. Knobs: `set_transfer` (xet/basic/none) and `faults()` (see `faults.rs`:
//! 5xx/429 bursts, forced 401/403/404/409/412, applied-then-500, truncated/corrupted/aborted
//! bodies, stalls, delays, CDN redirect of resolve, inline-size limit).
//!
//! Auth, like the Hub: a private repo is 404 `RepoNotFound` without a valid token; writes are
//! 401 without one and 403 with a read token; an unknown token is 401 everywhere. The fake has
//! no users: any valid token sees every repo.
#![allow(dead_code)] // each test crate uses a different part of this module

pub mod buckets;
pub mod faults;
mod routes;
pub mod spaces;
pub mod xet;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::Digest as _;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // not every user of this module names both
pub use faults::{Action, Faults};

/// What the LFS batch endpoint answers (`transfer` key) and whether xet tokens are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// `"transfer":"xet"` to clients offering it; xet write tokens served.
    Xet,
    /// `"transfer":"basic"` with upload/verify actions; no xet write tokens.
    Basic,
    /// No `transfer` key at all (objects still carry basic actions); no xet write tokens.
    None,
}

impl std::str::FromStr for Transfer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xet" => Ok(Transfer::Xet),
            "basic" => Ok(Transfer::Basic),
            "none" => Ok(Transfer::None),
            other => Err(format!(
                "unknown transfer {other:?}: use xet, basic or none"
            )),
        }
    }
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoType {
    Model,
    Dataset,
    Space,
}

impl RepoType {
    /// `models` / `datasets` / `spaces`, as in `/api/{T}/...`.
    pub fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        }
    }
    /// Prefix of the web/resolve URLs: `""`, `datasets/`, `spaces/`.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }
    fn from_plural(s: &str) -> Option<Self> {
        match s {
            "models" => Some(RepoType::Model),
            "datasets" => Some(RepoType::Dataset),
            "spaces" => Some(RepoType::Space),
            _ => None,
        }
    }
    fn from_singular(s: &str) -> Option<Self> {
        match s {
            "model" => Some(RepoType::Model),
            "dataset" => Some(RepoType::Dataset),
            "space" => Some(RepoType::Space),
            _ => None,
        }
    }
}

pub struct Config {
    pub transfer: Transfer,
    /// Directory handed to xet clients as `local:///<cas_dir>`; created if missing.
    pub cas_dir: PathBuf,
    /// 0 = any free port.
    pub port: u16,
}

impl Config {
    pub fn xet(cas_dir: impl Into<PathBuf>) -> Self {
        Config {
            transfer: Transfer::Xet,
            cas_dir: cas_dir.into(),
            port: 0,
        }
    }
    pub fn basic(cas_dir: impl Into<PathBuf>) -> Self {
        Config {
            transfer: Transfer::Basic,
            cas_dir: cas_dir.into(),
            port: 0,
        }
    }
}

/// One handled request, for assertions such as "exactly one commit POST".
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// Raw (percent-encoded) path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Final status sent (after faults); 0 for a stalled request that was never answered.
    pub status: u16,
    pub body_bytes: u64,
}

/// A file as stored in one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
    /// Git blob id: of the content (regular file) or of the LFS pointer (LFS file).
    pub git_oid: String,
    pub lfs: bool,
    pub xet_hash: Option<String>,
}

/// A commit, as `hub.commits(..)` reports it (newest first).
#[derive(Clone, Debug)]
pub struct CommitSummary {
    pub oid: String,
    pub parent: Option<String>,
    pub title: String,
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Clone, Debug)]
struct Commit {
    parent: Option<String>,
    title: String,
    date: String,
    files: BTreeMap<String, FileEntry>,
}

struct Repo {
    private: bool,
    created_at: String,
    commits: HashMap<String, Commit>,
    /// Branch name -> commit oid.
    refs: BTreeMap<String, String>,
}

/// What the fake learned about one xet file from the shards.
#[derive(Clone, Debug)]
struct XetFile {
    xet_hash: String,
    size: u64,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<(RepoType, String), Repo>,
    tokens: HashMap<String, Access>,
    /// Content store keyed by sha256: inline files and legacy LFS PUTs.
    blobs: HashMap<String, axum::body::Bytes>,
    /// sha256 -> xet file, from the shards under the CAS dir.
    xet_files: HashMap<String, XetFile>,
    /// Shard files already parsed.
    shards_seen: HashSet<PathBuf>,
    requests: Vec<RequestRecord>,
    commit_counter: u64,
    /// Space SDKs, Secrets and Variables (`spaces.rs`).
    spaces: spaces::SpacesState,
    /// Storage Buckets by id (`buckets.rs`).
    buckets: BTreeMap<String, buckets::Bucket>,
    /// Size of every xet file the shards describe, by xet hash (bucket clients need not
    /// compute a sha256, so this is how the fake knows a bucket `addFile`'s hash).
    xet_sizes: HashMap<String, u64>,
}

struct Inner {
    endpoint: String,
    cas_dir: PathBuf,
    transfer: Mutex<Transfer>,
    state: Mutex<State>,
    faults: Faults,
    shutdown: CancellationToken,
    /// Size of the xorbs already in the CAS dir when the hub started.
    xorb_bytes_at_start: u64,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's own failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn transfer(&self) -> Transfer {
        *self.transfer.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn xorb_dir(&self) -> PathBuf {
        self.cas_dir.join("xet").join("xorbs").join("xorbs")
    }
    fn shard_dir(&self) -> PathBuf {
        self.cas_dir.join("xet").join("xorbs").join("shards")
    }
    /// Parse any shard the xet client wrote since the last look.
    fn scan_shards(&self) -> anyhow::Result<()> {
        let dir = self.shard_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut new = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "mdb")
                && !self.state().shards_seen.contains(&path)
            {
                new.push(path);
            }
        }
        for path in new {
            let files = xet::parse_shard_file(&path)?;
            let mut st = self.state();
            for f in files {
                st.xet_sizes.insert(f.xet_hash.clone(), f.size);
                if let Some(sha) = f.sha256 {
                    st.xet_files.insert(
                        sha,
                        XetFile {
                            xet_hash: f.xet_hash,
                            size: f.size,
                        },
                    );
                }
            }
            st.shards_seen.insert(path);
        }
        Ok(())
    }
}

/// A running fake Hub. Dropping it stops the server (stalled requests are released).
pub struct FakeHub {
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeHub {
    /// Bind 127.0.0.1:`port` and serve. Panics with a clear message if that is impossible
    /// (this is test support: there is nothing sensible to do but fail the test).
    pub async fn start(config: Config) -> FakeHub {
        std::fs::create_dir_all(&config.cas_dir).unwrap_or_else(|e| {
            panic!(
                "fakehub: cannot create cas_dir {}: {e}",
                config.cas_dir.display()
            )
        });
        let cas_dir = std::fs::canonicalize(&config.cas_dir).unwrap_or_else(|e| {
            panic!(
                "fakehub: cannot resolve cas_dir {}: {e}",
                config.cas_dir.display()
            )
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .unwrap_or_else(|e| panic!("fakehub: cannot bind 127.0.0.1:{}: {e}", config.port));
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        let xorb_bytes_at_start = xorb_bytes(&cas_dir.join("xet/xorbs/xorbs"));
        let inner = Arc::new(Inner {
            endpoint: format!("http://127.0.0.1:{port}"),
            cas_dir,
            transfer: Mutex::new(config.transfer),
            state: Mutex::new(State::default()),
            faults: Faults::default(),
            shutdown: CancellationToken::new(),
            xorb_bytes_at_start,
        });
        let app = routes::router(inner.clone());
        let shutdown = inner.shutdown.clone();
        let server = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                eprintln!("fakehub: server stopped: {e}");
            }
        });
        FakeHub { inner, server }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    pub fn port(&self) -> u16 {
        self.inner
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("endpoint has a port")
    }

    /// `local:///abs/dir` as handed to xet clients.
    pub fn cas_url(&self) -> String {
        format!("local://{}", self.inner.cas_dir.display())
    }

    pub fn cas_dir(&self) -> &Path {
        &self.inner.cas_dir
    }

    pub fn add_token(&self, token: &str, access: Access) {
        self.inner.state().tokens.insert(token.to_string(), access);
    }

    pub fn set_transfer(&self, transfer: Transfer) {
        *self
            .inner
            .transfer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = transfer;
    }

    /// Fault knobs, settable while the hub runs.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Create a repo directly (as if through the API): initial commit with the default
    /// `.gitattributes`. Returns false if it already existed.
    pub fn create_repo(&self, repo_type: RepoType, id: &str, private: bool) -> bool {
        self.inner.create_repo(repo_type, id, private)
    }

    pub fn repo_exists(&self, repo_type: RepoType, id: &str) -> bool {
        self.inner
            .state()
            .repos
            .contains_key(&(repo_type, id.to_string()))
    }

    pub fn repo_is_private(&self, repo_type: RepoType, id: &str) -> Option<bool> {
        self.inner
            .state()
            .repos
            .get(&(repo_type, id.to_string()))
            .map(|r| r.private)
    }

    /// Commits reachable from `main`, newest first (empty if the repo does not exist).
    pub fn commits(&self, repo_type: RepoType, id: &str) -> Vec<CommitSummary> {
        let st = self.inner.state();
        let Some(repo) = st.repos.get(&(repo_type, id.to_string())) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut next = repo.refs.get("main").cloned();
        while let Some(oid) = next {
            let Some(c) = repo.commits.get(&oid) else {
                break;
            };
            out.push(CommitSummary {
                oid: oid.clone(),
                parent: c.parent.clone(),
                title: c.title.clone(),
                files: c.files.clone(),
            });
            next = c.parent.clone();
        }
        out
    }

    /// Files at the head of `main`.
    pub fn head_files(&self, repo_type: RepoType, id: &str) -> BTreeMap<String, FileEntry> {
        self.commits(repo_type, id)
            .into_iter()
            .next()
            .map(|c| c.files)
            .unwrap_or_default()
    }

    /// Content of a file at the head of `main`, if the fake holds its bytes (inline or legacy
    /// LFS uploads; xet-only files live in the CAS: see `xet::read_file`).
    pub fn file_bytes(
        &self,
        repo_type: RepoType,
        id: &str,
        path: &str,
    ) -> Option<axum::body::Bytes> {
        let entry = self.head_files(repo_type, id).remove(path)?;
        if let Some(b) = self.inner.state().blobs.get(&entry.sha256) {
            return Some(b.clone());
        }
        let xet = entry.xet_hash?;
        xet::read_file(&self.inner.cas_dir, &xet)
            .ok()
            .map(axum::body::Bytes::from)
    }

    /// Storage the repo's history retains: the sum of the sizes of the distinct file contents
    /// (by sha256) in every commit reachable from any branch. Overwriting a path grows it (the
    /// Hub bills logical history this way); a super-squash shrinks it to the head's files.
    pub fn stored_bytes(&self, repo_type: RepoType, id: &str) -> u64 {
        let st = self.inner.state();
        let Some(repo) = st.repos.get(&(repo_type, id.to_string())) else {
            return 0;
        };
        let mut seen: HashMap<&str, u64> = HashMap::new();
        let mut visited = HashSet::new();
        for head in repo.refs.values() {
            let mut next = Some(head.as_str());
            while let Some(oid) = next {
                if !visited.insert(oid) {
                    break;
                }
                let Some(c) = repo.commits.get(oid) else {
                    break;
                };
                for f in c.files.values() {
                    seen.insert(&f.sha256, f.size);
                }
                next = c.parent.as_deref();
            }
        }
        seen.values().sum()
    }

    /// Bytes of xorb data (chunks after xet's compression and dedup) that xet clients wrote
    /// into `<cas_dir>/xet/xorbs/xorbs/` since this hub started: what an upload really sent.
    /// Shards (file metadata) and the client's dedup DB are not counted.
    pub fn cas_bytes_received(&self) -> u64 {
        xorb_bytes(&self.inner.xorb_dir()).saturating_sub(self.inner.xorb_bytes_at_start)
    }

    /// Request body bytes received over HTTP (inline NDJSON commits, LFS PUTs, JSON calls).
    pub fn http_bytes_received(&self) -> u64 {
        self.inner
            .state()
            .requests
            .iter()
            .map(|r| r.body_bytes)
            .sum()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.state().requests.clone()
    }

    /// Number of requests with this method whose raw path starts with `path_prefix`.
    pub fn count_requests(&self, method: &str, path_prefix: &str) -> usize {
        self.inner
            .state()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    /// Wait until at least `n` requests match `count_requests(method, path_prefix)`, polling
    /// every 10 ms; false if `within` passes first. For tests that must not sleep blindly.
    pub async fn wait_for_requests(
        &self,
        method: &str,
        path_prefix: &str,
        n: usize,
        within: std::time::Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.count_requests(method, path_prefix) >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn clear_requests(&self) {
        self.inner.state().requests.clear();
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
        self.server.abort();
    }
}

/// Default `.gitattributes` of a new Hub repo (abridged to the patterns that matter here).
pub const DEFAULT_GITATTRIBUTES: &str = "\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.lz4 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
";

impl Inner {
    fn create_repo(&self, repo_type: RepoType, id: &str, private: bool) -> bool {
        let mut st = self.state();
        let key = (repo_type, id.to_string());
        if st.repos.contains_key(&key) {
            return false;
        }
        let content = axum::body::Bytes::from_static(DEFAULT_GITATTRIBUTES.as_bytes());
        let entry = regular_entry(&content);
        st.blobs.insert(entry.sha256.clone(), content);
        let now = now_iso();
        let mut files = BTreeMap::new();
        files.insert(".gitattributes".to_string(), entry);
        let oid = st.next_commit_oid(id);
        let commit = Commit {
            parent: None,
            title: "initial commit".into(),
            date: now.clone(),
            files,
        };
        let repo = Repo {
            private,
            created_at: now,
            commits: HashMap::from([(oid.clone(), commit)]),
            refs: BTreeMap::from([("main".to_string(), oid)]),
        };
        st.repos.insert(key, repo);
        true
    }
}

impl State {
    /// A fresh 40-hex commit id (unique per hub; not a real git hash).
    fn next_commit_oid(&mut self, id: &str) -> String {
        self.commit_counter += 1;
        let digest = sha1::Sha1::digest(format!(
            "{id}\0{}\0{:?}",
            self.commit_counter,
            SystemTime::now()
        ));
        hex::encode(digest)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Git blob id: sha1 of `blob <len>\0<content>`.
fn git_blob_oid(data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

fn regular_entry(content: &[u8]) -> FileEntry {
    FileEntry {
        size: content.len() as u64,
        sha256: sha256_hex(content),
        git_oid: git_blob_oid(content),
        lfs: false,
        xet_hash: None,
    }
}

fn lfs_entry(sha256: &str, size: u64, xet_hash: Option<String>) -> FileEntry {
    FileEntry {
        size,
        sha256: sha256.to_string(),
        git_oid: git_blob_oid(lfs_pointer(sha256, size).as_bytes()),
        lfs: true,
        xet_hash,
    }
}

/// Total size of the xorb files (`default.<hash>`, not their `.tagset` side files) in `dir`.
fn xorb_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let is_xorb = |n: &str| n.starts_with("default.") && n.matches('.').count() == 1;
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_xorb))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Current time as `YYYY-MM-DDTHH:MM:SS.000Z` (what the Hub's JSON uses).
fn now_iso() -> String {
    let (date, time) = openclaw_space::fsutil::civil(unix_now() as i64);
    format!("{date}T{time}.000Z")
}

/// Deterministic, poorly compressible bytes for tests (xorshift from `seed`).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
