//! Stage 3 of a backup: copy the databases beside the archive, write the archive (in place
//! when a file is lent for it), and make the fingerprint of what went in.

use std::time::Instant;

use anyhow::Result;

use super::inplace::{self, Lent};
use super::Ready;
use crate::archive::write::{self as awrite, Source};
use crate::livedb;
use crate::meta::{Copies, Job, Scratch};
use crate::snapshot::{self, Entry, Fingerprint};

/// What stage 3 takes from the ones before it.
pub(super) struct Plan {
    /// Files changed since this time (ns) can't be trusted by stat (the last scan's window).
    pub racy_since_ns: i64,
    /// Upload even when the archive equals the stored backup.
    pub force: bool,
    /// The files the archive may be written over.
    pub lent: Lent,
    /// An empty folder for the archive (`Meta::scratch`).
    pub scratch: Scratch,
}

/// Build the archive of `tree`; None when it equals the stored backup (and `force` is off).
pub(super) fn build(
    job: &Job,
    mut tree: snapshot::Tree,
    copier: &mut livedb::Copier,
    copies: &Copies,
    plan: Plan,
) -> Result<Option<Box<Ready>>> {
    let settled = snapshot::archive_order(&mut tree.entries);
    // In archive order: the writer waits for a copy only when it reaches that database.
    let dbs: Vec<&Entry> = tree.databases().collect();
    for e in &dbs {
        copier.queue(&e.rel, e.path_in(&job.state_dir), copies.path(&e.rel));
    }
    copier.close();
    let cache = job.meta.member_cache();
    let out = plan.scratch.archive();
    let spare = inplace::place_output(&job.meta, cache.as_ref(), &out, &plan.lent, &plan.scratch);
    let sqlite_copy = |rel: &[u8]| copier.copy(rel);
    let src = Source {
        root: &job.state_dir,
        entries: &tree.entries,
        settled,
        sqlite_copy: &sqlite_copy,
        racy_since_ns: plan.racy_since_ns,
        hash_since_ns: tree.scan_start_ns - snapshot::RACY_NS,
    };
    let t = Instant::now();
    let written = awrite::write(&src, cache.as_ref(), &out, spare.as_deref())?;
    tracing::debug!(
        "backup: archive written in {} ms ({} MB left in place, hash resumed after {} MB)",
        t.elapsed().as_millis(),
        written.stats.left_in_place >> 20,
        written.stats.hash_resumed_at >> 20
    );
    let sqlite = dbs
        .iter()
        .map(|e| Ok((hex::encode(&e.rel), copier.copied(&e.rel)?.hash)))
        .collect::<Result<_>>()?;
    drop(dbs);
    let fingerprint = Fingerprint {
        scan_start_ns: tree.scan_start_ns,
        racy: written
            .racy
            .iter()
            .map(|(k, v)| (hex::encode(k), v.clone()))
            .collect(),
        sqlite,
        entries: tree.entries,
    };
    if !plan.force && job.meta.state_sha().as_deref() == Some(written.sha256.as_str()) {
        // Same bytes as what is stored (e.g. only racily-clean files were re-read).
        job.meta.set_fingerprint(&fingerprint)?;
        job.meta.clear_scratch();
        return Ok(None);
    }
    Ok(Some(Box::new(Ready {
        archive: out,
        spare,
        sha256: written.sha256,
        size: written.size,
        files: written.files,
        index: written.index,
        stats: written.stats,
        fingerprint,
    })))
}
