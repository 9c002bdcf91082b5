//! Backup, one at a time across processes: lock -> scan -> decide -> build -> put -> commit.
//!
//! The stages, each in its own file: `decide` (scan the tree; has anything meaningful
//! changed since the last upload?), `build` (copy the databases and write the archive), then
//! the store's `put`, and `commit` here (the meta dir moves on). What the engine keeps between
//! backups lives in the meta dir and is reached through `meta::Meta` only.
//!
//! Glossary (the names in this module and in `archive::write`):
//! - **previous archive**: the archive of the last upload or restore, kept in the meta dir as
//!   the *member cache*; its members are copied into the next archive when their bytes are
//!   unchanged.
//! - **settled part**: the archive's leading entries, files that rarely change
//!   (`snapshot::archive_order` puts them first), so the next archive starts with the same
//!   bytes.
//! - **in place**: the new archive is written over the pages of an older archive file; bytes
//!   that are already equal there (the settled part) are left as they are, and the hash
//!   resumes after them (`archive::sha`).
//! - **retiring file**: the archive file of the version the store deletes at the next `put`,
//!   lent to the backup to be written over in place (`store::LocalVersions`).
//! - **spare copy**: a copy of a first backup's settled part (`meta::cache`), kept when no
//!   retiring file will hold the new archive's bytes, for the next archive to be written over.
//! - **racily clean**: a file changed within `snapshot::RACY_NS` of the scan that recorded
//!   it; its stat cannot vouch for its content, so its content is compared instead.

mod build;
mod decide;
mod inplace;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::info;

use crate::archive::write as awrite;
use crate::fsutil::now_rfc3339;
use crate::livedb;
use crate::meta::cache::Install;
use crate::meta::ledger::Upload;
use crate::meta::{pre_restore_dir, Job};
use crate::snapshot::Fingerprint;
use crate::store::Store;

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
pub async fn backup_once(job: &Job, store: &dyn Store, force: bool) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let _lock = job.meta.lock("backup").await?;
    if let (false, Some(why)) = (force, job.meta.uploads_paused()) {
        bail!(
            "uploads are paused because the last restore failed ({why}); fix the store and restart, \
             or run `entrypoint backup --force` to upload the state on disk anyway"
        );
    }
    if !job.state_dir.is_dir() {
        bail!(
            "nothing to back up: {} does not exist",
            job.state_dir.display()
        );
    }
    let (j, lent) = (job.clone(), inplace::Lent::by(store));
    let prepared = tokio::task::spawn_blocking(move || prepare(&j, force, lent))
        .await
        .context("backup task failed")??;
    let Some(p) = prepared else {
        let ms = started.elapsed().as_millis() as u64;
        job.meta.set_record(None, ms)?;
        return Ok(Outcome::Skipped);
    };
    info!(
        "backup: archive ready ({} MB, {} files, {}/{} members reused) in {} ms; uploading to {}",
        p.size >> 20,
        p.files,
        p.stats.reused_members,
        p.stats.members,
        started.elapsed().as_millis(),
        store.describe()
    );
    if let Err(e) = store.put(&p.archive, &p.sha256).await {
        job.meta.clear_scratch();
        return Err(anyhow::Error::new(e).context(format!(
            "upload to {} failed; the previous backup stays the latest",
            store.describe()
        )));
    }
    let duration = started.elapsed();
    tracing::debug!("backup: stored at {} ms", duration.as_millis());
    let (sha256, size, files) = (p.sha256.clone(), p.size, p.files);
    let j = job.clone();
    tokio::task::spawn_blocking(move || commit(&j, *p, force, duration)).await??;
    tracing::debug!("backup: committed at {} ms", started.elapsed().as_millis());
    Ok(Outcome::Uploaded {
        sha256,
        size,
        files,
        duration,
    })
}

/// An archive ready to upload, and what the meta dir keeps of it once uploaded.
struct Ready {
    archive: PathBuf,
    /// A spare copy of `archive`'s settled part to keep (its index's `prev` names it).
    spare: Option<PathBuf>,
    sha256: String,
    size: u64,
    files: u64,
    index: awrite::Index,
    stats: awrite::Stats,
    fingerprint: Fingerprint,
}

/// Scan, decide, build (blocking); None when nothing meaningful changed.
/// 1. `decide::scan`: list the tree (beside loading the last fingerprint) and classify it:
///    every file that could be a database is sniffed here, before any copy starts (`livedb`'s
///    rule);
/// 2. `decide::unchanged`: the stat-level decision; databases whose stat moved are copied
///    (verified) and compared by logical hash;
/// 3. `build::build`: the remaining databases are copied beside the archive, which waits for a
///    copy only when it reaches that database; the fingerprint takes the copies' hashes.
fn prepare(job: &Job, force: bool, lent: inplace::Lent) -> Result<Option<Box<Ready>>> {
    let copies = job.meta.copies()?;
    let (prev, tree) = decide::scan(job)?;
    copies.prune(tree.databases().map(|e| e.rel.as_slice()))?;
    let scratch = job.meta.scratch()?;
    let mut copier = livedb::Copier::start();
    if let (Some(prev), false) = (&prev, force) {
        if decide::unchanged(job, prev, &tree, &copier, &copies)? {
            drop(copier);
            job.meta.clear_scratch();
            return Ok(None);
        }
    }
    // The last fingerprint has done its part: freed before the archive's buffers peak.
    let plan = build::Plan {
        racy_since_ns: prev.as_ref().map_or(i64::MIN, decide::racy_since),
        force,
        lent,
        scratch,
    };
    drop(prev);
    build::build(job, tree, &mut copier, &copies, plan)
}

/// After a successful upload: the archive becomes the member cache, the fingerprint and the
/// record move on, the restore latch and the pre-restore copy go.
fn commit(job: &Job, p: Ready, force: bool, duration: Duration) -> Result<()> {
    let meta = &job.meta;
    meta.keep_as_cache(&p.archive, Install::Move, p.index)?;
    if let Some(spare) = &p.spare {
        meta.keep_spare(spare)?;
    }
    meta.set_fingerprint(&p.fingerprint)?;
    meta.set_state_sha(&p.sha256)?;
    if force {
        meta.resume_uploads();
    }
    // The state replaced by the last restore was kept until now (see `restore`).
    if let Some(pre) = pre_restore_dir(&job.state_dir) {
        if pre.exists() {
            info!(
                "backup uploaded; removing {} kept from before the last restore",
                pre.display()
            );
            let _ = fs::remove_dir_all(&pre);
        }
    }
    meta.clear_scratch();
    let up = Upload {
        time: now_rfc3339(),
        sha256: p.sha256,
        size: p.size,
        files: p.files,
        duration_ms: duration.as_millis() as u64,
        members: p.stats.members,
        reused_members: p.stats.reused_members,
    };
    meta.set_record(Some(up), duration.as_millis() as u64)
}

#[cfg(test)]
mod tests;
