//! Restore: fetch -> verify sidecar -> test archive -> extract to staging -> atomic swap.
//!
//! TODO(backup-engine): implement; the signatures below are what `cli` and `run` call.

use crate::backup::Job;
use crate::store::Store;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Restored {
        sha256: String,
        size: u64,
    },
    /// The store positively holds no backup: fresh start.
    NoBackup,
}

/// Restore the latest backup over the state dir. On any error the state on disk is untouched
/// and uploads stay blocked (a marker in the meta dir) until a restore succeeds or a backup is
/// forced.
pub async fn restore_latest(_job: &Job, _store: &dyn Store) -> anyhow::Result<Outcome> {
    anyhow::bail!("restore: not implemented yet")
}

/// Fetch, hash and fully read the latest backup without changing anything.
pub async fn verify_latest(_job: &Job, _store: &dyn Store) -> anyhow::Result<Outcome> {
    anyhow::bail!("verify: not implemented yet")
}
