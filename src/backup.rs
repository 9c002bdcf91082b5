//! Backup: snapshot -> changed? -> archive -> store.put, one at a time across processes.
//!
//! TODO(backup-engine): implement; the signatures below are what `cli` and `run` call.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::Store;

/// Where and what to back up.
#[derive(Debug, Clone)]
pub struct Job {
    /// `<data dir>/.openclaw`.
    pub state_dir: PathBuf,
    /// `<data dir>/.openclaw-space`: lock, fingerprint, last-backup record.
    pub meta_dir: PathBuf,
    /// User globs (relative to the state dir) to leave out, on top of OpenClaw's volatile paths.
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing meaningful changed since the last upload.
    Skipped,
    Uploaded {
        sha256: String,
        size: u64,
        files: u64,
        duration: Duration,
    },
}

/// Take one backup. `force` uploads even when nothing changed and even when the last restore
/// failed (the "no upload of an unverified empty state" latch).
pub async fn backup_once(_job: &Job, _store: &dyn Store, _force: bool) -> anyhow::Result<Outcome> {
    anyhow::bail!("backup: not implemented yet")
}

/// The last backup's record (time, size, sha, duration, skipped/uploaded) for `status`, if any.
pub fn last_record(_meta_dir: &std::path::Path) -> Option<serde_json::Value> {
    None
}
