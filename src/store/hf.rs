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

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use hf_hub::repository::{CommitOperation, DatasetInfo, RepoTreeEntry};
use hf_hub::{HFRepository, RepoTypeDataset};
use tracing::{info, warn};

use super::hub::failure::{Failure, Kind};
use super::hub::{local_size, Conn, MAX_TRIES, MIN_UPLOAD_BYTES_PER_SEC};
use super::{
    parse_sidecar, Fetched, Progress, Store, StoreError, Version, ARCHIVE_NAME, SIDECAR_NAME,
};
use crate::settings::HfSettings;

/// The branch backups live on.
const BRANCH: &str = "main";
/// Commits (uploads and squashes) allowed per rolling hour. The Hub was seen refusing more than
/// 128 per hour per repo; the default backup interval (5 min) makes 12.
pub const DEFAULT_COMMITS_PER_HOUR: u32 = 60;
/// A sidecar is a 64-character digest; anything much bigger is not one.
const MAX_SIDECAR_BYTES: u64 = 4096;
/// Commits looked at when listing versions: far more than lie between two squashes (every 24
/// uploads by default); with squashing off, the newest this many.
pub const MAX_LISTED_COMMITS: usize = 100;
/// Requests in flight while reading the commits' files for `list_versions`.
const LIST_CONCURRENCY: usize = 4;

pub struct HfStore {
    /// Client, deadlines, retries and error lines, shared with the bucket store.
    conn: Conn,
    squash_every: u32,
    repo: HFRepository<RepoTypeDataset>,
    /// Head of `main` as of this process's last fetch or upload: the next upload's parent.
    last_head: Mutex<Option<String>>,
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
        let conn = Conn::new(Kind::Dataset, &settings.dataset, &settings.hub)?;
        Ok(HfStore {
            repo: conn.client.dataset(&conn.owner, &conn.short_name),
            conn,
            squash_every: settings.squash_every,
            last_head: Mutex::new(None),
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

    fn last_head(&self) -> Option<String> {
        self.last_head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_head(&self, head: Option<String>) {
        *self.last_head.lock().unwrap_or_else(|p| p.into_inner()) = head;
    }

    /// `main`'s info (head commit, visibility), or None when the dataset does not exist.
    async fn dataset_info(&self) -> Result<Option<DatasetInfo>, Failure> {
        match self
            .conn
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

    /// The dataset's info for a read (`what`), or None when it does not exist (after making
    /// sure the 404 was not a rejected token in disguise).
    async fn dataset_for_read(&self, what: &str) -> Result<Option<DatasetInfo>, StoreError> {
        let info = self
            .dataset_info()
            .await
            .map_err(|f| self.conn.fail(what, f))?;
        if info.is_none() {
            self.conn.check_token_after_404(what).await?;
        }
        Ok(info)
    }

    /// Find the latest backup: head of `main`, then both files' sizes at that commit.
    async fn locate(&self, what: &str) -> Result<Located, StoreError> {
        let Some(info) = self.dataset_for_read(what).await? else {
            return Ok(Located::NoDataset);
        };
        self.conn.check_visibility(info.private)?;
        let Some(commit) = info.sha else {
            return Ok(Located::NoBackup { commit: None });
        };
        match self.pair_at(&commit, what).await? {
            None => Ok(Located::NoBackup { commit: Some(commit) }),
            Some(Pair { sidecar: None, .. }) => Err(StoreError::Corrupt(format!(
                "dataset {} has {ARCHIVE_NAME} but no {SIDECAR_NAME} at commit {}: the archive cannot be verified; upload a matching {SIDECAR_NAME} or remove the archive to start fresh",
                self.conn.name,
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
            .conn
            .call("listing the backup files", || {
                self.repo
                    .get_paths_info()
                    .paths(vec![ARCHIVE_NAME.to_string(), SIDECAR_NAME.to_string()])
                    .revision(commit.to_string())
                    .send()
            })
            .await
            .map_err(|f| self.conn.fail(what, f))?;
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
        self.conn
            .collect("listing the dataset's commits", || {
                let commits = self.repo.list_commits().revision(head.to_string());
                commits.limit(MAX_LISTED_COMMITS).send()
            })
            .await
            .map_err(|f| self.conn.fail(what, f))
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
                self.conn.name
            )));
        }
        let bytes = self
            .conn
            .call("reading the sidecar", || {
                self.repo
                    .download_file_to_bytes()
                    .filename(SIDECAR_NAME)
                    .revision(commit.to_string())
                    .send()
            })
            .await
            .map_err(|f| self.conn.fail(what, f))?;
        let text = String::from_utf8_lossy(&bytes);
        parse_sidecar(&text).map_err(|e| {
            self.conn.scrub(StoreError::Corrupt(format!(
                "dataset {}: {e}",
                self.conn.name
            )))
        })
    }

    /// Stream the archive at `commit` into a new file in `scratch`, hashing as it arrives.
    async fn download_archive(
        &self,
        commit: &str,
        size: u64,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<(PathBuf, String), StoreError> {
        self.conn
            .download(ARCHIVE_NAME, size, scratch, progress, || {
                self.repo
                    .download_file_stream()
                    .filename(ARCHIVE_NAME)
                    .revision(commit.to_string())
                    .send()
            })
            .await
    }

    /// Create the dataset, private. Someone else creating it first (409) is fine.
    async fn create_dataset(&self) -> Result<(), Failure> {
        self.conn
            .call("creating the dataset", || {
                self.conn
                    .client
                    .create_repository()
                    .repo_id(&self.conn.name)
                    .repo_type(RepoTypeDataset)
                    .private(true)
                    .exist_ok(true)
                    .send()
            })
            .await?;
        info!(dataset = %self.conn.name, "created private dataset {} for backups", self.conn.name);
        Ok(())
    }

    /// After a failed commit: did it land anyway (a 5xx or timeout after the Hub applied it)?
    async fn landed(&self, parent: Option<&str>, sha256: &str) -> Result<Landed, Failure> {
        let head = self.dataset_info().await?.and_then(|i| i.sha);
        match head {
            Some(h) if Some(h.as_str()) != parent => {
                let digest = self
                    .conn
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
    /// hf-hub 1.0 has no call for it (facts/hf-hub-protocol.md §2).
    async fn squash(&self) -> Result<(), Failure> {
        let url = format!(
            "{}/api/datasets/{}/super-squash/{BRANCH}",
            self.conn.endpoint, self.conn.name
        );
        let body = serde_json::json!({ "message": "Squash backup history (openclaw-space)" });
        self.conn
            .raw("squashing the history", || {
                self.conn.http.post(&url).json(&body)
            })
            .await
            .map(drop)
    }
}

enum Landed {
    /// Our commit is the head.
    Yes(String),
    /// Nothing changed: safe to try again.
    No,
    /// Someone else's commit is the head.
    Moved(String),
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
        let info = match self
            .dataset_info()
            .await
            .map_err(|f| self.conn.fail(what, f))?
        {
            Some(info) => info,
            None => {
                self.create_dataset()
                    .await
                    .map_err(|f| self.conn.fail("creating the dataset", f))?;
                // Read it back: it may have been created (public) by someone else meanwhile.
                self.dataset_info()
                    .await
                    .map_err(|f| self.conn.fail(what, f))?
                    .ok_or_else(|| self.conn.fail(what, Failure::RepoMissing))?
            }
        };
        self.conn.check_visibility(info.private)?;
        match (self.last_head(), info.sha.clone()) {
            (Some(seen), Some(head)) if seen != head => {
                // Someone else wrote since our restore/upload. Report it; build on it next time.
                self.set_last_head(Some(head.clone()));
                Err(StoreError::Conflict(format!(
                    "dataset {} moved from {} to {} since this container last read or wrote it: another writer (a second Space or container, or a manual upload) uses it; not overwriting now, the next backup publishes on top",
                    self.conn.name,
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
        let deadline = self.conn.timeout + Duration::from_secs(size / MIN_UPLOAD_BYTES_PER_SEC);
        let mut tries = 0;
        let new_head = loop {
            if let Err(f) = self.conn.check_pause() {
                return Err(self.conn.fail(what, f));
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
                Ok(Err(e)) => self.conn.classify(e),
                Err(_) => Failure::Timeout(deadline),
            };
            if let Failure::Conflict = failure {
                // Stale parent (412): drop our view so the next backup builds on the new head.
                self.set_last_head(None);
                return Err(self.conn.fail(what, failure));
            }
            if let Failure::Other(detail) = &failure {
                if detail.starts_with("HTTP 400") {
                    // The usual cause: the Hub did not offer xet, so hf-hub sent the archive
                    // inline in the commit, and the Hub refuses big inline binaries.
                    return Err(self.conn.scrub(StoreError::Other(format!(
                        "the Hub refused the upload to dataset {} ({detail}); hf-hub sends files inline when the Hub does not offer xet transfer, and the Hub refuses large inline files: check that HF_ENDPOINT is a xet-enabled Hub",
                        self.conn.name
                    ))));
                }
            }
            if !(failure.is_transient() || matches!(failure, Failure::Timeout(_))) {
                return Err(self.conn.fail(what, failure));
            }
            // The Hub may have applied the commit before the error: look before trying again,
            // or we would commit the same backup twice.
            match self.landed(parent.as_deref(), sha256).await {
                Ok(Landed::Yes(head)) => {
                    info!(dataset = %self.conn.name, "the upload landed despite {failure:?}");
                    break Some(head);
                }
                Ok(Landed::Moved(head)) => {
                    self.set_last_head(Some(head));
                    return Err(self.conn.fail(what, Failure::Conflict));
                }
                Ok(Landed::No) => {}
                Err(f) => return Err(self.conn.fail(what, f)),
            }
            let retry = if matches!(failure, Failure::Timeout(_)) {
                None
            } else {
                self.conn.backoff(&failure, tries)
            };
            match retry {
                Some(delay) => {
                    warn!(dataset = %self.conn.name, "{what}: {failure:?}; try {} of {MAX_TRIES} in {delay:?}", tries + 1);
                    tokio::time::sleep(delay).await;
                }
                None => return Err(self.conn.fail(what, failure)),
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
                    info!(dataset = %self.conn.name, "squashed the history of dataset {} to one commit", self.conn.name);
                    self.set_last_head(head.clone());
                    return Some(head);
                }
                // The upload itself succeeded; squashing is retried after the next one.
                Err(f) => warn!("{}", self.conn.fail("squashing the history", f)),
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
        self.conn.describe("hf", &self.conn.name)
    }

    async fn list_versions(&self) -> Result<Vec<Version>, StoreError> {
        let what = "listing the backup versions";
        let Some(info) = self.dataset_for_read(what).await? else {
            return Ok(Vec::new());
        };
        self.conn.check_visibility(info.private)?;
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
                self.conn.name,
                short(&version.id)
            ))
        })?;
        let (archive, actual_sha256) = self
            .download_archive(&version.id, version.size, scratch, progress)
            .await?;
        info!(dataset = %self.conn.name, commit = short(&version.id), size = version.size, "downloaded {ARCHIVE_NAME}");
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
                info!(dataset = %self.conn.name, "dataset {} does not exist yet: nothing to restore; the first backup creates it (private)", self.conn.name);
                self.set_last_head(None);
                return Ok(None);
            }
            Located::NoBackup { commit } => {
                info!(dataset = %self.conn.name, "dataset {} holds no {ARCHIVE_NAME}: nothing to restore", self.conn.name);
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
                self.conn.name,
                writer.commits.len()
            )));
        }
        let size = local_size(archive)?;
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
        info!(dataset = %self.conn.name, commit = new_head.as_deref().map(short), size, "uploaded {ARCHIVE_NAME}");
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
}
