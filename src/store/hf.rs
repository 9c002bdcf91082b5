//! `hf` store: backups in a private Hugging Face dataset, over the hf-hub 1.0 crate.
//!
//! Layout: `latest_backup.tar.gz` and `latest_backup.sha256` (bare hex digest) at the root of
//! branch `main`, always written together in **one commit** so a reader never sees a pair that
//! does not match. The archive goes up through xet (as the Hub chooses for LFS files), so an
//! archive that differs a little from the last one uploads only the changed chunks.
//!
//! How it behaves, and why:
//! - `open` does no network I/O: the Hub being down must not stop the gateway from starting.
//!   The dataset is checked (and created **private** when absent) by the first call that needs it.
//!   A dataset that exists but is public is refused unless `ENTRYPOINT_HF_ALLOW_PUBLIC=1`:
//!   backups hold credentials.
//! - `fetch_latest` resolves the head commit of `main` first, then reads the sidecar and streams
//!   the archive *at that commit*, hashing while writing to a file in `scratch`, so both files
//!   come from the same commit even if someone writes meanwhile. It never uses hf-hub's cache
//!   mode, which does not check the HTTP status of the download (facts/hf-hub-protocol.md).
//! - **Versions** (what a restore falls back to when the newest fails verification) are the
//!   commits of `main` since the last squash that hold a backup pair, newest first
//!   (`GET /api/datasets/{id}/commits/{head}` through hf-hub's `list_commits`, then each
//!   commit's paths-info and sidecar); a run of commits holding the same pair is one version,
//!   named by the commit that introduced it. Each version is downloaded at its commit id, like
//!   the latest. At most [`MAX_LISTED_COMMITS`] commits are looked at.
//! - `put` commits with `parentCommit` = the head this process last saw (at its restore or its
//!   last upload): if someone else wrote in between, the Hub refuses (412) and we return
//!   `Conflict` instead of overwriting. The stale view is then dropped, so the *next* backup
//!   publishes on top (last writer wins, after one loud error): staying stuck forever would stop
//!   all backups.
//! - Retries are ours, not hf-hub's (its are switched off): hf-hub would retry the commit POST
//!   blindly, which can commit twice, and it ignores `Retry-After`. We retry 5xx and network
//!   errors a few times with backoff, and after a failed commit we first look whether the commit
//!   landed anyway. A 429 is waited out when `Retry-After` is short; when it is long, every call
//!   fails fast with `Unavailable` until that time.
//! - Every call has a deadline: `ENTRYPOINT_HF_TIMEOUT` per request (and per idle gap while
//!   streaming); an upload gets that plus one second per MiB of archive.
//! - Commits are budgeted ([`DEFAULT_COMMITS_PER_HOUR`]) to stay well under the Hub's observed
//!   limit of 128 commits per hour per repo.
//! - **History squash** (`ENTRYPOINT_HF_SQUASH_EVERY`, default 24, 0 = off): overwriting a file
//!   keeps every old version in the repo's history, so storage grows by one archive per backup.
//!   After every N uploads we call the Hub's super-squash (`POST
//!   /api/datasets/{id}/super-squash/main`, which hf-hub 1.0 does not offer), which replaces the
//!   history with one commit so old archives can be freed. It is destructive for history only;
//!   the latest pair is kept. With the default interval of 5 minutes that is about every 2 hours.
//! - Messages are one line, say what to do, and never contain the token (scrubbed as a last
//!   line of defence).

pub(super) mod failure;

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use futures_util::StreamExt;
use hf_hub::repository::{CommitOperation, DatasetInfo, RepoTreeEntry};
use hf_hub::{HFClient, HFError, HFRepository, RepoTypeDataset};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tracing::{info, warn};

use self::failure::{Context, Failure};
use super::{
    parse_sidecar, Fetched, Progress, Store, StoreError, Version, ARCHIVE_NAME, SIDECAR_NAME,
};
use crate::settings::{HfSettings, Secret};

/// The branch backups live on.
const BRANCH: &str = "main";
/// Tries per call for 5xx / network errors / short rate limits (the first try included).
const MAX_TRIES: u32 = 4;
/// Backoff before the second try; doubles each time, with jitter.
const BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest `Retry-After` sat out inside one call; a longer one pauses the store instead.
const MAX_WAIT_IN_CALL: Duration = Duration::from_secs(60);
/// Commits (uploads and squashes) allowed per rolling hour. The Hub was seen refusing more than
/// 128 per hour per repo; the default backup interval (5 min) makes 12.
pub const DEFAULT_COMMITS_PER_HOUR: u32 = 60;
/// An upload may take `ENTRYPOINT_HF_TIMEOUT` plus one second per this many bytes.
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;
/// A sidecar is a 64-character digest; anything much bigger is not one.
const MAX_SIDECAR_BYTES: u64 = 4096;
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Commits looked at when listing versions: far more than lie between two squashes (every 24
/// uploads by default); with squashing off, the newest this many.
pub const MAX_LISTED_COMMITS: usize = 100;
/// Requests in flight while reading the commits' files for `list_versions`.
const LIST_CONCURRENCY: usize = 4;

pub struct HfStore {
    dataset: String,
    endpoint: String,
    token: Option<Secret>,
    allow_public: bool,
    squash_every: u32,
    timeout: Duration,
    repo: HFRepository<RepoTypeDataset>,
    hub: HFClient,
    /// The same client hf-hub uses; for the one call it lacks (super-squash).
    http: reqwest::Client,
    /// Head of `main` as of this process's last fetch or upload: the next upload's parent.
    last_head: Mutex<Option<String>>,
    /// After a long 429, no call goes out before this instant.
    paused_until: Mutex<Option<Instant>>,
    /// Held for a whole `put`: uploads never overlap, and this is their bookkeeping.
    writer: tokio::sync::Mutex<Writer>,
}

struct Writer {
    uploads_since_squash: u32,
    /// When recent commits were made, oldest first (for the hourly budget).
    commits: VecDeque<Instant>,
    commits_per_hour: u32,
}

/// The backup files at one commit: (git blob id, size) of each.
#[derive(Clone, PartialEq, Eq)]
struct Pair {
    archive: (String, u64),
    sidecar: Option<(String, u64)>,
}

/// Where the latest backup is, at one commit.
enum Located {
    /// The dataset does not exist (yet).
    NoDataset,
    /// The dataset exists but holds no archive.
    NoBackup { commit: Option<String> },
    Backup {
        commit: String,
        archive_size: u64,
        sidecar_size: u64,
    },
}

impl HfStore {
    /// Build the client. No network I/O here (see the module doc).
    pub async fn open(settings: &HfSettings) -> anyhow::Result<Self> {
        let (owner, name) = settings.dataset.split_once('/').with_context(|| {
            format!(
                "HF_DATASET: '{}' is not a dataset id; write owner/name",
                settings.dataset
            )
        })?;
        // hf-hub sets no timeouts of its own; these bound every request it makes through us.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(15)))
            .read_timeout(settings.timeout)
            .user_agent(concat!(
                "openclaw-space/",
                env!("CARGO_PKG_VERSION"),
                "; hf-hub/1.0"
            ))
            .build()
            .context("building the HTTP client for the HF store")?;
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let mut builder = HFClient::builder()
            .client(http.clone())
            .endpoint(endpoint.clone())
            .cache_enabled(false)
            // Our own retries only: see the module doc.
            .retry_max_attempts(0);
        if let Some(token) = &settings.token {
            builder = builder.token(token.expose());
        }
        let hub = builder.build().with_context(|| {
            format!(
                "HF_ENDPOINT: '{endpoint}' is not a usable URL; use e.g. https://huggingface.co"
            )
        })?;
        Ok(HfStore {
            dataset: settings.dataset.clone(),
            repo: hub.dataset(owner, name),
            hub,
            http,
            endpoint,
            token: settings.token.clone(),
            allow_public: settings.allow_public,
            squash_every: settings.squash_every,
            timeout: settings.timeout,
            last_head: Mutex::new(None),
            paused_until: Mutex::new(None),
            writer: tokio::sync::Mutex::new(Writer {
                uploads_since_squash: 0,
                commits: VecDeque::new(),
                commits_per_hour: DEFAULT_COMMITS_PER_HOUR,
            }),
        })
    }

    /// Change the hourly commit budget (0 = unlimited). For tests and tools that commit often
    /// against a fake hub; the default protects a real dataset from the Hub's rate limit.
    pub fn set_commits_per_hour(&mut self, n: u32) {
        self.writer.get_mut().commits_per_hour = n;
    }

    /// Classify an hf-hub error; a timeout is reported with our configured deadline.
    fn classify(&self, e: HFError) -> Failure {
        match Failure::from_hf(e) {
            Failure::Timeout(_) => Failure::Timeout(self.timeout),
            f => f,
        }
    }

    /// Turn a failure into the store's error, as one scrubbed line.
    fn fail(&self, what: &str, f: Failure) -> StoreError {
        let cx = Context {
            kind: "dataset",
            dataset: &self.dataset,
            endpoint: &self.endpoint,
            has_token: self.token.is_some(),
            what,
        };
        self.scrub(f.into_store_error(&cx))
    }

    /// Last line of defence: no token and no line breaks in anything we hand out.
    fn scrub(&self, e: StoreError) -> StoreError {
        let clean = |m: String| {
            let m = match &self.token {
                Some(t) if !t.expose().is_empty() => m.replace(t.expose(), "<redacted>"),
                _ => m,
            };
            m.replace(['\n', '\r'], " ")
        };
        match e {
            StoreError::Missing(m) => StoreError::Missing(clean(m)),
            StoreError::Unauthorized(m) => StoreError::Unauthorized(clean(m)),
            StoreError::Forbidden(m) => StoreError::Forbidden(clean(m)),
            StoreError::Unavailable(m) => StoreError::Unavailable(clean(m)),
            StoreError::Conflict(m) => StoreError::Conflict(clean(m)),
            StoreError::Corrupt(m) => StoreError::Corrupt(clean(m)),
            StoreError::Other(m) => StoreError::Other(clean(m)),
        }
    }

    fn last_head(&self) -> Option<String> {
        self.last_head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_head(&self, head: Option<String>) {
        *self.last_head.lock().unwrap_or_else(|p| p.into_inner()) = head;
    }

    /// Fails fast while a long 429 is being sat out.
    fn check_pause(&self) -> Result<(), Failure> {
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        match *paused {
            Some(until) if until > Instant::now() => {
                Err(Failure::RateLimited(Some(until - Instant::now())))
            }
            Some(_) => {
                *paused = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn pause(&self, d: Duration) {
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
    }

    /// How long to wait before another try, or None to give up (and maybe pause the store).
    fn backoff(&self, f: &Failure, tries: u32) -> Option<Duration> {
        if !f.is_transient() {
            return None;
        }
        if let Failure::RateLimited(Some(after)) = f {
            if *after > MAX_WAIT_IN_CALL || tries >= MAX_TRIES {
                self.pause(*after);
                return None;
            }
            return Some(*after);
        }
        if tries >= MAX_TRIES {
            return None;
        }
        let exp = BASE_DELAY * 2u32.pow(tries - 1);
        // Half fixed, half random: spreads retries of several containers apart.
        Some(exp / 2 + exp.mul_f64(rand::random::<f64>() / 2.0))
    }

    /// Run one hf-hub call with the per-request deadline and our retry policy (a deadline that
    /// runs out is not retried: see [`Failure::is_transient`]).
    async fn call<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HFError>>,
    {
        let mut tries = 0;
        loop {
            self.check_pause()?;
            tries += 1;
            let failure = match tokio::time::timeout(self.timeout, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => self.classify(e),
                Err(_) => Failure::Timeout(self.timeout),
            };
            match self.backoff(&failure, tries) {
                Some(delay) => {
                    warn!(dataset = %self.dataset, "{what}: {failure:?}; try {} of {MAX_TRIES} in {delay:?}", tries + 1);
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }

    /// `main`'s info (head commit, visibility), or None when the dataset does not exist.
    async fn dataset_info(&self) -> Result<Option<DatasetInfo>, Failure> {
        match self
            .call("reading the dataset info", || {
                self.repo.info().revision(BRANCH).send()
            })
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(Failure::RepoMissing) => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// Backups hold credentials: refuse a public dataset unless the user opted in.
    fn check_visibility(&self, info: &DatasetInfo) -> Result<(), StoreError> {
        if info.private == Some(false) && !self.allow_public {
            return Err(StoreError::Forbidden(format!(
                "dataset {} is public, but backups hold credentials (tokens, pairing keys): make it private (dataset Settings -> Change visibility) or set ENTRYPOINT_HF_ALLOW_PUBLIC=1 to use it anyway",
                self.dataset
            )));
        }
        Ok(())
    }

    /// The Hub hides a private dataset from a bad token behind a 404 (so does the fake hub):
    /// ask who the token belongs to before calling the dataset absent.
    async fn check_token_after_404(&self, what: &str) -> Result<(), StoreError> {
        if self.token.is_none() {
            return Ok(());
        }
        match tokio::time::timeout(self.timeout, self.hub.whoami().send()).await {
            Ok(Err(e)) => match self.classify(e) {
                f @ Failure::Unauthorized => Err(self.fail(what, f)),
                // Anything else (an older hub without whoami, a blip): the 404 stands.
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Find the latest backup: head of `main`, then both files' sizes at that commit.
    async fn locate(&self, what: &str) -> Result<Located, StoreError> {
        let Some(info) = self.dataset_info().await.map_err(|f| self.fail(what, f))? else {
            self.check_token_after_404(what).await?;
            return Ok(Located::NoDataset);
        };
        self.check_visibility(&info)?;
        let Some(commit) = info.sha else {
            return Ok(Located::NoBackup { commit: None });
        };
        match self.pair_at(&commit, what).await? {
            None => Ok(Located::NoBackup { commit: Some(commit) }),
            Some(Pair { sidecar: None, .. }) => Err(StoreError::Corrupt(format!(
                "dataset {} has {ARCHIVE_NAME} but no {SIDECAR_NAME} at commit {}: the archive cannot be verified; upload a matching {SIDECAR_NAME} or remove the archive to start fresh",
                self.dataset,
                short(&commit)
            ))),
            Some(Pair { archive, sidecar: Some(sidecar) }) => Ok(Located::Backup {
                commit,
                archive_size: archive.1,
                sidecar_size: sidecar.1,
            }),
        }
    }

    /// The backup files at `commit`; None when it holds no archive.
    async fn pair_at(&self, commit: &str, what: &str) -> Result<Option<Pair>, StoreError> {
        let entries = self
            .call("listing the backup files", || {
                self.repo
                    .get_paths_info()
                    .paths(vec![ARCHIVE_NAME.to_string(), SIDECAR_NAME.to_string()])
                    .revision(commit.to_string())
                    .send()
            })
            .await
            .map_err(|f| self.fail(what, f))?;
        let file = |name: &str| {
            entries.iter().find_map(|e| match e {
                RepoTreeEntry::File {
                    path, oid, size, ..
                } if path == name => Some((oid.clone(), *size)),
                _ => None,
            })
        };
        Ok(file(ARCHIVE_NAME).map(|archive| Pair {
            archive,
            sidecar: file(SIDECAR_NAME),
        }))
    }

    /// The commits of `main` from `head` back (newest first, at most `MAX_LISTED_COMMITS`).
    async fn commits_from(
        &self,
        head: &str,
        what: &str,
    ) -> Result<Vec<hf_hub::repository::GitCommitInfo>, StoreError> {
        use futures_util::TryStreamExt;
        self.call("listing the dataset's commits", || async {
            self.repo
                .list_commits()
                .revision(head.to_string())
                .limit(MAX_LISTED_COMMITS)
                .send()?
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .map_err(|f| self.fail(what, f))
    }

    /// The commits that introduced each backup pair, newest first, with the pair.
    async fn pair_commits(
        &self,
        commits: Vec<hf_hub::repository::GitCommitInfo>,
        what: &str,
    ) -> Result<Vec<(hf_hub::repository::GitCommitInfo, Pair)>, StoreError> {
        let ids: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
        let pairs: Vec<Option<Pair>> = futures_util::stream::iter(ids)
            .map(|id| async move { self.pair_at(&id, what).await })
            .buffered(LIST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        // A commit that leaves the pair as its parent had it (another file changed, a squash
        // of one commit) is the same backup: keep the oldest commit of such a run.
        let mut out: Vec<(hf_hub::repository::GitCommitInfo, Pair)> = Vec::new();
        let mut previous: Option<Pair> = None;
        for (commit, pair) in commits.into_iter().zip(pairs) {
            match (&pair, out.last_mut()) {
                (Some(p), Some(last)) if previous.as_ref() == Some(p) => last.0 = commit,
                (Some(p), _) => out.push((commit, p.clone())),
                (None, _) => {}
            }
            previous = pair;
        }
        Ok(out)
    }

    /// What the sidecar at `commit` claims; None when it holds no digest (a version that
    /// never verifies, still listed).
    async fn claimed_sha(
        &self,
        commit: &str,
        pair: &Pair,
        what: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some((_, size)) = pair.sidecar else {
            return Ok(None);
        };
        match self.read_sidecar(commit, size, what).await {
            Ok(sha) => Ok(Some(sha)),
            Err(StoreError::Corrupt(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A restore, `verify` or `--list` that read `main` at `head` sets the baseline for
    /// conflict detection, unless one exists: an existing baseline is never advanced here, or
    /// a concurrent writer would go unnoticed.
    fn adopt_head(&self, head: Option<&String>) {
        let mut seen = self.last_head.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_none() {
            *seen = head.cloned();
        }
    }

    /// The digest the sidecar at `commit` claims.
    async fn read_sidecar(
        &self,
        commit: &str,
        size: u64,
        what: &str,
    ) -> Result<String, StoreError> {
        if size > MAX_SIDECAR_BYTES {
            return Err(StoreError::Corrupt(format!(
                "{SIDECAR_NAME} in dataset {} is {size} bytes, not a digest: replace it with the archive's SHA-256 hex digest",
                self.dataset
            )));
        }
        let bytes = self
            .call("reading the sidecar", || {
                self.repo
                    .download_file_to_bytes()
                    .filename(SIDECAR_NAME)
                    .revision(commit.to_string())
                    .send()
            })
            .await
            .map_err(|f| self.fail(what, f))?;
        let text = String::from_utf8_lossy(&bytes);
        parse_sidecar(&text).map_err(|e| {
            self.scrub(StoreError::Corrupt(format!(
                "dataset {}: {e}",
                self.dataset
            )))
        })
    }

    /// Stream the archive at `commit` into a new file in `scratch`, hashing as it arrives.
    /// Retries transient failures from the start; removes the file on error.
    async fn download_archive(
        &self,
        commit: &str,
        size: u64,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<(PathBuf, String), StoreError> {
        let what = "downloading the backup";
        let path = scratch.join(format!(
            ".hf-download-{}-{:08x}.tar.gz",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", path.display())))?;
        let mut tries = 0;
        let result = loop {
            tries += 1;
            progress.set(0);
            let attempt = self.download_once(commit, &mut file, progress).await;
            let failure = match attempt {
                Ok((written, sha)) if written == size => break Ok(sha),
                Ok((written, _)) => {
                    Failure::Network(format!("the body ended after {written} of {size} bytes"))
                }
                Err(Download::Hub(f)) => f,
                Err(Download::Local(e)) => {
                    break Err(StoreError::Other(format!(
                        "writing {}: {e}",
                        path.display()
                    )))
                }
            };
            match self.backoff(&failure, tries) {
                Some(delay) => {
                    warn!(dataset = %self.dataset, "{what}: {failure:?}; try {} of {MAX_TRIES} in {delay:?}", tries + 1);
                    tokio::time::sleep(delay).await;
                    if let Err(e) = rewind(&mut file).await {
                        break Err(StoreError::Other(format!("rewinding {}: {e}", path.display())));
                    }
                }
                None => match failure {
                    Failure::Network(m) if m.starts_with("the body ended") => {
                        break Err(StoreError::Corrupt(format!(
                            "{ARCHIVE_NAME} in dataset {}: {m}, {MAX_TRIES} times; the stored file is shorter than the Hub says",
                            self.dataset
                        )))
                    }
                    f => break Err(self.fail(what, f)),
                },
            }
        };
        match result {
            Ok(sha) => Ok((path, sha)),
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(&path).await;
                Err(self.scrub(e))
            }
        }
    }

    /// One streaming download; returns bytes written and their SHA-256.
    async fn download_once(
        &self,
        commit: &str,
        file: &mut tokio::fs::File,
        progress: &Progress,
    ) -> Result<(u64, String), Download> {
        self.check_pause().map_err(Download::Hub)?;
        let send = self
            .repo
            .download_file_stream()
            .filename(ARCHIVE_NAME)
            .revision(commit.to_string())
            .send();
        let (_, mut stream) = match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r.map_err(|e| Download::Hub(self.classify(e)))?,
            Err(_) => return Err(Download::Hub(Failure::Timeout(self.timeout))),
        };
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        loop {
            // The deadline is per idle gap: a big archive may take long, a stalled one may not.
            let chunk = match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(Download::Hub(Failure::Timeout(self.timeout))),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(|e| Download::Hub(self.classify(e)))?,
            };
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(Download::Local)?;
            written += chunk.len() as u64;
            progress.add(chunk.len() as u64);
        }
        file.flush().await.map_err(Download::Local)?;
        Ok((written, hex::encode(hasher.finalize())))
    }

    /// Create the dataset, private. Someone else creating it first (409) is fine.
    async fn create_dataset(&self) -> Result<(), Failure> {
        self.call("creating the dataset", || {
            self.hub
                .create_repository()
                .repo_id(&self.dataset)
                .repo_type(RepoTypeDataset)
                .private(true)
                .exist_ok(true)
                .send()
        })
        .await?;
        info!(dataset = %self.dataset, "created private dataset {} for backups", self.dataset);
        Ok(())
    }

    /// After a failed commit: did it land anyway (a 5xx or timeout after the Hub applied it)?
    async fn landed(&self, parent: Option<&str>, sha256: &str) -> Result<Landed, Failure> {
        let head = self.dataset_info().await?.and_then(|i| i.sha);
        match head {
            Some(h) if Some(h.as_str()) != parent => {
                let digest = self
                    .call("reading the sidecar", || {
                        self.repo
                            .download_file_to_bytes()
                            .filename(SIDECAR_NAME)
                            .revision(h.clone())
                            .send()
                    })
                    .await;
                match digest
                    .ok()
                    .and_then(|b| parse_sidecar(&String::from_utf8_lossy(&b)).ok())
                {
                    Some(d) if d == sha256 => Ok(Landed::Yes(h)),
                    _ => Ok(Landed::Moved(h)),
                }
            }
            _ => Ok(Landed::No),
        }
    }

    /// Replace the history of `main` with one commit, so old archives stop counting.
    async fn squash(&self) -> Result<(), Failure> {
        let url = format!(
            "{}/api/datasets/{}/super-squash/{BRANCH}",
            self.endpoint, self.dataset
        );
        let body = serde_json::json!({ "message": "Squash backup history (openclaw-space)" });
        let mut tries = 0;
        loop {
            self.check_pause()?;
            tries += 1;
            let mut req = self.http.post(&url).json(&body);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            let failure = match tokio::time::timeout(self.timeout, req.send()).await {
                Err(_) => Failure::Timeout(self.timeout),
                Ok(Err(e)) if e.is_timeout() => Failure::Timeout(self.timeout),
                Ok(Err(e)) => Failure::Network(failure::error_chain(&e)),
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs);
                    let body = tokio::time::timeout(self.timeout, resp.text())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    Failure::from_status(status, retry_after, &body)
                }
            };
            match self.backoff(&failure, tries) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(failure),
            }
        }
    }
}

enum Download {
    Hub(Failure),
    Local(std::io::Error),
}

enum Landed {
    /// Our commit is the head.
    Yes(String),
    /// Nothing changed: safe to try again.
    No,
    /// Someone else's commit is the head.
    Moved(String),
}

async fn rewind(file: &mut tokio::fs::File) -> std::io::Result<()> {
    file.set_len(0).await?;
    file.rewind().await?;
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The steps of an upload (`Store::put`).
impl HfStore {
    /// The commit the next upload builds on (None: an empty dataset), creating the dataset
    /// on first use; `Conflict` when someone else wrote since this container last did.
    async fn parent_for_upload(&self, what: &str) -> Result<Option<String>, StoreError> {
        // Where is main now? Create the dataset on first use.
        let info = match self.dataset_info().await.map_err(|f| self.fail(what, f))? {
            Some(info) => info,
            None => {
                self.create_dataset()
                    .await
                    .map_err(|f| self.fail("creating the dataset", f))?;
                // Read it back: it may have been created (public) by someone else meanwhile.
                self.dataset_info()
                    .await
                    .map_err(|f| self.fail(what, f))?
                    .ok_or_else(|| self.fail(what, Failure::RepoMissing))?
            }
        };
        self.check_visibility(&info)?;
        match (self.last_head(), info.sha.clone()) {
            (Some(seen), Some(head)) if seen != head => {
                // Someone else wrote since our restore/upload. Report it; build on it next time.
                self.set_last_head(Some(head.clone()));
                Err(StoreError::Conflict(format!(
                    "dataset {} moved from {} to {} since this container last read or wrote it: another writer (a second Space or container, or a manual upload) uses it; not overwriting now, the next backup publishes on top",
                    self.dataset,
                    short(&seen),
                    short(&head)
                )))
            }
            (_, head) => Ok(head),
        }
    }

    /// Commit the archive and its sidecar on top of `parent`, retrying what is transient
    /// (and looking first whether a failed try landed after all). Returns the new head.
    async fn commit_backup(
        &self,
        archive: &Path,
        sha256: &str,
        size: u64,
        parent: Option<String>,
    ) -> Result<Option<String>, StoreError> {
        let what = "upload";
        let ops = vec![
            CommitOperation::add_file(ARCHIVE_NAME, archive),
            // Bare digest, no newline: what the seed script wrote and reads.
            CommitOperation::add_bytes(SIDECAR_NAME, sha256.to_string().into_bytes()),
        ];
        let message = format!("Backup {}", short(sha256));
        let deadline = self.timeout + Duration::from_secs(size / MIN_UPLOAD_BYTES_PER_SEC);
        let mut tries = 0;
        let new_head = loop {
            if let Err(f) = self.check_pause() {
                return Err(self.fail(what, f));
            }
            tries += 1;
            let commit = self
                .repo
                .create_commit()
                .operations(ops.clone())
                .commit_message(message.clone())
                .revision(BRANCH)
                .maybe_parent_commit(parent.clone())
                .send();
            let failure = match tokio::time::timeout(deadline, commit).await {
                Ok(Ok(done)) => break done.commit_oid,
                Ok(Err(e)) => self.classify(e),
                Err(_) => Failure::Timeout(deadline),
            };
            if let Failure::Conflict = failure {
                // Stale parent (412): drop our view so the next backup builds on the new head.
                self.set_last_head(None);
                return Err(self.fail(what, failure));
            }
            if let Failure::Other(detail) = &failure {
                if detail.starts_with("HTTP 400") {
                    // The usual cause: the Hub did not offer xet, so hf-hub sent the archive
                    // inline in the commit, and the Hub refuses big inline binaries.
                    return Err(self.scrub(StoreError::Other(format!(
                        "the Hub refused the upload to dataset {} ({detail}); hf-hub sends files inline when the Hub does not offer xet transfer, and the Hub refuses large inline files: check that HF_ENDPOINT is a xet-enabled Hub",
                        self.dataset
                    ))));
                }
            }
            if !(failure.is_transient() || matches!(failure, Failure::Timeout(_))) {
                return Err(self.fail(what, failure));
            }
            // The Hub may have applied the commit before the error: look before trying again,
            // or we would commit the same backup twice.
            match self.landed(parent.as_deref(), sha256).await {
                Ok(Landed::Yes(head)) => {
                    info!(dataset = %self.dataset, "the upload landed despite {failure:?}");
                    break Some(head);
                }
                Ok(Landed::Moved(head)) => {
                    self.set_last_head(Some(head));
                    return Err(self.fail(what, Failure::Conflict));
                }
                Ok(Landed::No) => {}
                Err(f) => return Err(self.fail(what, f)),
            }
            let retry = if matches!(failure, Failure::Timeout(_)) {
                None
            } else {
                self.backoff(&failure, tries)
            };
            match retry {
                Some(delay) => {
                    warn!(dataset = %self.dataset, "{what}: {failure:?}; try {} of {MAX_TRIES} in {delay:?}", tries + 1);
                    tokio::time::sleep(delay).await;
                }
                None => return Err(self.fail(what, failure)),
            }
        };
        Ok(new_head)
    }

    /// Squash the history when it is due; the new head when it did.
    async fn squash_if_due(&self, writer: &mut Writer) -> Option<Option<String>> {
        // The squash runs here and nowhere else: only right after an upload that succeeded,
        // so the one commit it leaves holds a backup the engine has just checked (its database
        // copies verified). Squashing drops every older version a restore could fall back to;
        // squashing without a fresh upload could leave only a bad one.
        if self.squash_every > 0
            && writer.uploads_since_squash >= self.squash_every
            && writer.can_commit()
        {
            match self.squash().await {
                Ok(()) => {
                    writer.record_commit();
                    writer.uploads_since_squash = 0;
                    let head = self.dataset_info().await.ok().flatten().and_then(|i| i.sha);
                    info!(dataset = %self.dataset, "squashed the history of dataset {} to one commit", self.dataset);
                    self.set_last_head(head.clone());
                    return Some(head);
                }
                // The upload itself succeeded; squashing is retried after the next one.
                Err(f) => warn!("{}", self.fail("squashing the history", f)),
            }
        }
        None
    }
}

impl Writer {
    /// Drop commits older than an hour; true when another one fits the budget.
    fn can_commit(&mut self) -> bool {
        let hour = Duration::from_secs(3600);
        while self.commits.front().is_some_and(|t| t.elapsed() > hour) {
            self.commits.pop_front();
        }
        self.commits_per_hour == 0 || (self.commits.len() as u32) < self.commits_per_hour
    }

    fn record_commit(&mut self) {
        if self.commits_per_hour > 0 {
            self.commits.push_back(Instant::now());
        }
    }
}

#[async_trait]
impl Store for HfStore {
    fn describe(&self) -> String {
        if self.endpoint == DEFAULT_ENDPOINT {
            format!("hf:{}", self.dataset)
        } else {
            format!("hf:{} at {}", self.dataset, self.endpoint)
        }
    }

    async fn list_versions(&self) -> Result<Vec<Version>, StoreError> {
        let what = "listing the backup versions";
        let Some(info) = self.dataset_info().await.map_err(|f| self.fail(what, f))? else {
            self.check_token_after_404(what).await?;
            return Ok(Vec::new());
        };
        self.check_visibility(&info)?;
        let Some(head) = info.sha else {
            return Ok(Vec::new());
        };
        self.adopt_head(Some(&head));
        let commits = self.commits_from(&head, what).await?;
        let picked = self.pair_commits(commits, what).await?;
        let wanted: Vec<(String, Pair)> = picked
            .iter()
            .map(|(c, pair)| (c.id.clone(), pair.clone()))
            .collect();
        let shas: Vec<Option<String>> = futures_util::stream::iter(wanted)
            .map(|(id, pair)| async move { self.claimed_sha(&id, &pair, what).await })
            .buffered(LIST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(picked
            .into_iter()
            .zip(shas)
            .map(|((commit, pair), sha256)| Version {
                id: commit.id,
                time: commit.date,
                size: pair.archive.1,
                sha256,
            })
            .collect())
    }

    async fn fetch(
        &self,
        version: &Version,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<Fetched, StoreError> {
        // Commit ids are immutable: what was listed is what is downloaded. The baseline for
        // the next upload stays the head read by `head`/`list_versions` (an older version
        // restored is not what the next upload builds on).
        let expected_sha256 = version.sha256.clone().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{SIDECAR_NAME} in dataset {} at commit {} does not hold a SHA-256 digest: the archive cannot be verified",
                self.dataset,
                short(&version.id)
            ))
        })?;
        let (archive, actual_sha256) = self
            .download_archive(&version.id, version.size, scratch, progress)
            .await?;
        info!(dataset = %self.dataset, commit = short(&version.id), size = version.size, "downloaded {ARCHIVE_NAME}");
        Ok(Fetched {
            archive,
            expected_sha256,
            actual_sha256,
            size: version.size,
        })
    }

    async fn fetch_latest(&self, scratch: &Path) -> Result<Option<Fetched>, StoreError> {
        let what = "reading the latest backup";
        let (commit, archive_size, sidecar_size) = match self.locate(what).await? {
            Located::NoDataset => {
                info!(dataset = %self.dataset, "dataset {} does not exist yet: nothing to restore; the first backup creates it (private)", self.dataset);
                self.set_last_head(None);
                return Ok(None);
            }
            Located::NoBackup { commit } => {
                info!(dataset = %self.dataset, "dataset {} holds no {ARCHIVE_NAME}: nothing to restore", self.dataset);
                self.set_last_head(commit);
                return Ok(None);
            }
            Located::Backup {
                commit,
                archive_size,
                sidecar_size,
            } => (commit, archive_size, sidecar_size),
        };
        let sha256 = self.read_sidecar(&commit, sidecar_size, what).await?;
        let version = Version {
            id: commit.clone(),
            time: None,
            size: archive_size,
            sha256: Some(sha256),
        };
        let fetched = self.fetch(&version, scratch, &Progress::default()).await?;
        // What we restored from is what the next upload must build on.
        self.set_last_head(Some(commit));
        Ok(Some(fetched))
    }

    async fn put(&self, archive: &Path, sha256: &str) -> Result<Option<String>, StoreError> {
        let what = "upload";
        let mut writer = self.writer.lock().await;
        if !writer.can_commit() {
            return Err(StoreError::Unavailable(format!(
                "not uploading to dataset {}: {} commits in the last hour already (the Hub refuses more than ~128/hour); raise ENTRYPOINT_BACKUP_INTERVAL",
                self.dataset,
                writer.commits.len()
            )));
        }
        let size = std::fs::metadata(archive)
            .map_err(|e| {
                StoreError::Other(format!(
                    "cannot read the archive {}: {e}",
                    archive.display()
                ))
            })?
            .len();
        let parent = self.parent_for_upload(what).await?;
        let new_head = self.commit_backup(archive, sha256, size, parent).await?;
        writer.record_commit();
        writer.uploads_since_squash += 1;
        let new_head = match new_head {
            Some(h) => Some(h),
            // A hub that does not report the commit id: read it back (best effort).
            None => self.dataset_info().await.ok().flatten().and_then(|i| i.sha),
        };
        self.set_last_head(new_head.clone());
        info!(dataset = %self.dataset, commit = new_head.as_deref().map(short), size, "uploaded {ARCHIVE_NAME}");
        Ok(self.squash_if_due(&mut writer).await.unwrap_or(new_head))
    }

    async fn head(&self) -> Result<Option<Version>, StoreError> {
        let what = "reading the latest backup's digest";
        // A restore that finds the local state already equal to the latest backup stops at
        // `head`: that commit is then the baseline for conflict detection.
        match self.locate(what).await? {
            Located::NoDataset => Ok(None),
            Located::NoBackup { commit } => {
                self.adopt_head(commit.as_ref());
                Ok(None)
            }
            Located::Backup {
                commit,
                archive_size,
                sidecar_size,
            } => {
                let sha256 = self.read_sidecar(&commit, sidecar_size, what).await?;
                self.adopt_head(Some(&commit));
                Ok(Some(Version {
                    id: commit,
                    time: None,
                    size: archive_size,
                    sha256: Some(sha256),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(token: Option<&str>) -> HfStore {
        HfStore::open(&HfSettings {
            dataset: "alice/claw".into(),
            token: token.map(Secret::new),
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_public: false,
            squash_every: 24,
            timeout: Duration::from_secs(5),
        })
        .await
        .expect("open does no I/O")
    }

    #[tokio::test]
    async fn errors_are_scrubbed_of_the_token_and_line_breaks() {
        let s = store(Some("hf_secret_123")).await;
        let e = s.scrub(StoreError::Other(
            "server said: bad hf_secret_123\nsecond line".into(),
        ));
        assert_eq!(e.to_string(), "server said: bad <redacted> second line");
    }

    #[test]
    fn commit_budget_counts_the_last_hour() {
        let mut w = Writer {
            uploads_since_squash: 0,
            commits: VecDeque::new(),
            commits_per_hour: 2,
        };
        assert!(w.can_commit());
        w.record_commit();
        w.record_commit();
        assert!(!w.can_commit(), "budget of 2 used up");
        // Commits older than an hour no longer count.
        // (A machine up for less than an hour cannot express "an hour ago": skip that part.)
        if let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(3601)) {
            w.commits[0] = long_ago;
            assert!(w.can_commit());
        }
        w.commits_per_hour = 0;
        w.record_commit();
        w.record_commit();
        assert!(w.can_commit(), "0 = unlimited");
    }

    #[tokio::test]
    async fn backoff_honours_retry_after_and_pauses_on_long_ones() {
        let s = store(None).await;
        assert_eq!(
            s.backoff(&Failure::RateLimited(Some(Duration::from_secs(3))), 1),
            Some(Duration::from_secs(3))
        );
        assert!(s.check_pause().is_ok());
        assert_eq!(
            s.backoff(&Failure::RateLimited(Some(Duration::from_secs(3600))), 1),
            None
        );
        assert!(
            matches!(s.check_pause(), Err(Failure::RateLimited(Some(d))) if d > Duration::from_secs(3500))
        );
        let s = store(None).await;
        let d = s.backoff(&Failure::Server(503), 2).expect("retried");
        assert!(d >= BASE_DELAY && d <= BASE_DELAY * 2, "{d:?}");
        assert_eq!(s.backoff(&Failure::Server(503), MAX_TRIES), None, "bounded");
        assert_eq!(
            s.backoff(&Failure::Timeout(Duration::from_secs(5)), 1),
            None,
            "a stall is not retried"
        );
        assert_eq!(s.backoff(&Failure::Unauthorized, 1), None);
    }
}
