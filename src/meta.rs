//! The meta dir (`<data dir>/.openclaw-space`, never backed up) and the names this program
//! keeps beside the state dir: one place that names them all.
//!
//! In the meta dir (durability: `fsutil::write_atomic` = fsynced, "plain" = atomic rename
//! only, rebuilt or harmless when lost):
//! - `backup.lock`: flock held by a backup or restore (one at a time, across processes);
//! - `run.lock`: flock held by `entrypoint run` (a restore refuses while it is held);
//! - `fingerprint.bin` (fsynced): stat-level view + logical database hashes of the last upload;
//! - `members.tar.gz` + `members.json` (archive fsynced, then the index): the last archive and
//!   its member index, the reuse cache;
//! - `spare.tar.gz` (never fsynced; trusted for this boot only): a copy of a first backup's
//!   settled start for the next archive to be written over in place;
//! - `copies/` (plain; repaired by the next refresh): the verified copy of each database;
//! - `scratch/`: the archive being built;
//! - `state.sha256` (fsynced): the backup the local state equals (last upload or restore);
//! - `restore-failed` (fsynced): blocks non-forced uploads after a failed restore;
//! - `restore-skipped.json` (fsynced): versions a fallback restore found bad;
//! - `last-backup.json` (plain): the record `status` shows.
//!
//! Beside the state dir: `<name>.pre-restore`, the state the last restore replaced.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use tracing::info;

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

/// How long a backup or restore waits for another one holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(120);

pub(crate) const LOCK: &str = "backup.lock";
/// Held by `run` for its whole life, so `restore` can tell that a gateway uses the state.
pub(crate) const RUN_LOCK: &str = "run.lock";
pub(crate) const FINGERPRINT: &str = "fingerprint.bin";
pub(crate) const CACHE_ARCHIVE: &str = "members.tar.gz";
pub(crate) const CACHE_INDEX: &str = "members.json";
pub(crate) const STATE_SHA: &str = "state.sha256";
pub(crate) const BLOCKED: &str = "restore-failed";
pub(crate) const SPARE: &str = "spare.tar.gz";
pub(crate) const RECORD: &str = "last-backup.json";
pub(crate) const SCRATCH: &str = "scratch";
pub(crate) const COPIES: &str = "copies";

/// Newer versions skipped by the last fallback, while the state still equals the one taken.
pub(crate) const SKIPPED: &str = "restore-skipped.json";

/// Take the backup/restore lock, waiting up to `LOCK_WAIT` for another holder.
pub(crate) async fn lock(meta_dir: &Path, what: &str) -> Result<Flock<File>> {
    let path = meta_dir.join(LOCK);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                if Instant::now() >= deadline {
                    bail!("{what}: another backup or restore still holds {} after {LOCK_WAIT:?}; try again later", path.display());
                }
                if !said {
                    info!("{what}: waiting for another backup or restore to finish");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((_, e)) => bail!("cannot lock {}: {e}", path.display()),
        }
    }
}

/// Where the state replaced by the last restore is kept.
pub fn pre_restore_dir(state_dir: &Path) -> Option<PathBuf> {
    let name = state_dir.file_name()?.to_str()?;
    Some(state_dir.parent()?.join(format!("{name}.pre-restore")))
}
