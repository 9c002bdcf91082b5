//! Where backups live: one small trait, one file per backend (litestream's `ReplicaClient`).
//!
//! A backup is a pair: the archive (`latest_backup.tar.gz`, root entry `.openclaw/`) and its
//! sidecar (`latest_backup.sha256`, the hex digest, optionally in `sha256sum` format). A store
//! publishes the pair atomically and hands it back whole; it knows nothing of what is inside.
//! (The bucket store names each archive by its digest and points at the latest with one small
//! pointer file: the same pair, in a layout a non-transactional bucket can publish safely.)
//! The dataset and bucket stores share their Hub client, retries and errors (`hub`).

pub mod bucket;
pub mod dir;
pub mod hf;
mod hub;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::settings::StoreSettings;

/// Seed-compatible file names.
pub const ARCHIVE_NAME: &str = "latest_backup.tar.gz";
pub const SIDECAR_NAME: &str = "latest_backup.sha256";

/// A fetched backup, downloaded to a local file.
#[derive(Debug)]
pub struct Fetched {
    /// The downloaded archive (a temp file the caller owns and removes).
    pub archive: PathBuf,
    /// Digest the sidecar claims (lowercase hex).
    pub expected_sha256: String,
    /// Digest of the bytes actually written to `archive`, computed while downloading.
    pub actual_sha256: String,
    pub size: u64,
}

/// One backup a store holds: an archive with its sidecar, as `list_versions` and `head`
/// describe it without downloading the archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    /// The store's name for it: the folder under `.versions/` (dir), the commit id (hf) or the
    /// archive's name without `.tar.gz` (bucket).
    /// Stable: the same id always names the same bytes.
    pub id: String,
    /// When it was published (RFC 3339, UTC), when the store knows.
    pub time: Option<String>,
    /// The archive's size in bytes.
    pub size: u64,
    /// The digest its sidecar claims (lowercase hex); None when the sidecar is missing or holds
    /// no digest (such a version never verifies, but it is still listed).
    pub sha256: Option<String>,
}

/// How many bytes of an archive a `fetch` has brought over so far: the store sets it as bytes
/// land (a local store: as it reads and hashes them); whoever shows progress reads it. Clones
/// share the count. A retried download starts again from 0.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a store call failed. Each kind gets one clear line and its own behaviour upstream.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store itself does not exist (e.g. the dataset is absent) – not the same as "no backup".
    #[error("{0}")]
    Missing(String),
    /// Credentials rejected (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials valid but not allowed (403), or a public dataset without opt-in.
    #[error("{0}")]
    Forbidden(String),
    /// Network down, timeouts, 5xx after retries, rate limits.
    #[error("{0}")]
    Unavailable(String),
    /// Someone else wrote in between (stale parent commit).
    #[error("{0}")]
    Conflict(String),
    /// The stored pair is unreadable or inconsistent (bad sidecar, truncated body).
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// True when retrying later may help (network, rate limits, conflicts).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// For logs and `status`, e.g. `dir:/backups` or `hf:alice/openclaw-backup`. No secrets.
    fn describe(&self) -> String;

    /// Every backup the store holds, newest first (what a restore may fall back to). Empty only
    /// when the store positively holds none.
    async fn list_versions(&self) -> Result<Vec<Version>, StoreError>;

    /// Download `version` (one `list_versions` or `head` returned) into a new file inside
    /// `scratch` (same filesystem as the state dir), counting the bytes in `progress`.
    /// `Missing` when the version is gone since it was listed; `Corrupt` when its stored pair
    /// is unreadable.
    async fn fetch(
        &self,
        version: &Version,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<Fetched, StoreError>;

    /// The latest backup, without downloading the archive; None only when the store
    /// positively holds no backup. `Corrupt` when the latest pair is unreadable.
    async fn head(&self) -> Result<Option<Version>, StoreError>;

    /// Download the latest backup (`head` then `fetch`). `Ok(None)` only when the store
    /// positively holds no backup: that means a fresh start.
    async fn fetch_latest(&self, scratch: &Path) -> Result<Option<Fetched>, StoreError> {
        match self.head().await? {
            None => Ok(None),
            Some(v) => self
                .fetch(&v, scratch, &Progress::default())
                .await
                .map(Some),
        }
    }

    /// Publish `archive` with its digest as the new latest, archive and sidecar as one unit.
    /// Returns the new version id if the store has one.
    async fn put(&self, archive: &Path, sha256: &str) -> Result<Option<String>, StoreError>;

    /// What the store can do beyond the data operations above (a capability as data): a
    /// store that keeps its versions as files on this machine says so here.
    fn local_versions(&self) -> Option<&dyn LocalVersions> {
        None
    }
}

/// A store that keeps each version's archive as a file on this machine (the `dir` store). The
/// backup may write its new archive over the pages of the file that is about to be deleted
/// anyway: a new 300 MB file costs the kernel ~3x more than rewriting an old one's pages.
///
/// The contract (tested in `dir`):
/// - the store keeps the newest `keep()` versions: a `put` that makes `keep() + 1` of them
///   deletes the oldest;
/// - `retiring()` is the archive file of exactly the version the next `put` deletes: None while
///   fewer than `keep()` versions are kept, and never the latest (so always None when
///   `keep() == 1`);
/// - the caller may rename that one file away and then owns it; its version is gone from
///   then on (`list_versions` and `fetch` no longer offer it) and the next `put` removes what
///   is left of it. Nothing else of the store may be renamed or written.
pub trait LocalVersions: Send + Sync {
    /// How many versions are kept (at least 1).
    fn keep(&self) -> usize;

    /// The archive file the next `put` deletes, if any (see the contract).
    fn retiring(&self) -> Option<PathBuf>;
}

/// Build the configured store, or None when backups are off.
pub async fn open(settings: Option<&StoreSettings>) -> anyhow::Result<Option<Box<dyn Store>>> {
    Ok(match settings {
        None => None,
        Some(StoreSettings::Dir { path, keep }) => {
            Some(Box::new(dir::DirStore::new(path.clone(), *keep)))
        }
        Some(StoreSettings::Hf(hf)) => Some(Box::new(hf::HfStore::open(hf).await?)),
        Some(StoreSettings::Bucket(b)) => Some(Box::new(bucket::BucketStore::open(b).await?)),
    })
}

/// Parse a sidecar: a bare hex digest, or `sha256sum` format (`<hex>  <name>`).
pub fn parse_sidecar(text: &str) -> Result<String, StoreError> {
    let first = text.split_whitespace().next().unwrap_or("");
    let hex = first.to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(StoreError::Corrupt(format!(
            "{SIDECAR_NAME} does not hold a SHA-256 digest (expected 64 hex characters, optionally followed by a file name)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_formats() {
        let h = "A".repeat(64);
        assert_eq!(parse_sidecar(&h).unwrap(), "a".repeat(64));
        assert_eq!(
            parse_sidecar(&format!("{h}  latest_backup.tar.gz\n")).unwrap(),
            "a".repeat(64)
        );
        assert!(parse_sidecar("").is_err());
        assert!(parse_sidecar("xyz").is_err());
    }
}
