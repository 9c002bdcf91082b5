//! Stages 1 and 2 of a backup: scan the state dir, and decide whether anything meaningful
//! changed since the last upload.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;

use crate::livedb;
use crate::meta::{Copies, Job};
use crate::snapshot::{self, Entry, Fingerprint, Kind};

/// Stage 1: the tree, classified, and the last fingerprint (loaded while the tree is listed).
/// Every file that could be a database is sniffed here, before any copy starts: sniffing
/// beside a live copy could drop SQLite's locks (`livedb`'s rule).
pub(super) fn scan(job: &Job) -> Result<(Option<Fingerprint>, snapshot::Tree)> {
    let started = Instant::now();
    let skip = snapshot::excludes(&job.excludes)?;
    let (prev, tree) = std::thread::scope(|s| {
        let loader = s.spawn(|| job.meta.fingerprint());
        let tree = snapshot::list(&job.state_dir, &skip);
        (loader.join().unwrap_or_default(), tree)
    });
    let mut tree = tree?;
    debug_assert!(!livedb::any_live(), "sniffing beside a live copy");
    snapshot::classify(
        &job.state_dir,
        &mut tree,
        prev.as_ref().map(Fingerprint::by_path).as_ref(),
    )?;
    tracing::debug!(
        "backup: {} entries walked in {} ms",
        tree.entries.len(),
        started.elapsed().as_millis()
    );
    Ok((prev, tree))
}

/// Files changed since this time (ns) can't be trusted by stat: the last scan's racy window.
pub(super) fn racy_since(prev: &Fingerprint) -> i64 {
    prev.scan_start_ns - snapshot::RACY_NS
}

/// Stage 2: true when nothing meaningful changed since the last upload. Every entry must be
/// stat-equal to the fingerprint's (a racily-clean file also by content); a database whose
/// stat moved is copied and compared by logical hash (the gateway's lease heartbeat alone
/// must not cause an upload). When the copies say "same", their new stat is remembered so
/// the next check needn't copy them again.
pub(super) fn unchanged(
    job: &Job,
    prev: &Fingerprint,
    tree: &snapshot::Tree,
    copier: &livedb::Copier,
    copies: &Copies,
) -> Result<bool> {
    if tree.entries.len() != prev.entries.len() {
        return Ok(false);
    }
    let prev_map = prev.by_path();
    let moved: Vec<&Entry> = tree
        .databases()
        .filter(|e| {
            prev_map
                .get(e.rel.as_slice())
                .is_some_and(|p| !e.same_stat(p))
        })
        .collect();
    // Copied on the copier's thread while the files are compared here.
    for e in &moved {
        copier.queue(&e.rel, e.path_in(&job.state_dir), copies.path(&e.rel));
    }
    for e in &tree.entries {
        let Some(p) = prev_map.get(e.rel.as_slice()) else {
            return Ok(false);
        };
        let same = match e.kind {
            Kind::Sqlite => p.kind == Kind::Sqlite,
            _ => e.same_stat(p) && prev.vouches_for(e, &job.state_dir),
        };
        if !same {
            return Ok(false);
        }
    }
    for e in &moved {
        let now = copier.copied(&e.rel)?.hash;
        if prev.sqlite.get(&hex::encode(&e.rel)) != Some(&now) {
            return Ok(false);
        }
    }
    if !moved.is_empty() {
        job.meta.set_fingerprint(&with_new_stats(prev, &moved))?;
    }
    Ok(true)
}

/// `prev` with the stat of the `moved` databases (their content is the same).
fn with_new_stats(prev: &Fingerprint, moved: &[&Entry]) -> Fingerprint {
    let newer: HashMap<&[u8], &Entry> = moved.iter().map(|e| (e.rel.as_slice(), *e)).collect();
    Fingerprint {
        scan_start_ns: prev.scan_start_ns,
        entries: prev
            .entries
            .iter()
            .map(|e| {
                newer
                    .get(e.rel.as_slice())
                    .map_or_else(|| e.clone(), |n| (*n).clone())
            })
            .collect(),
        sqlite: prev.sqlite.clone(),
        racy: prev.racy.clone(),
    }
}
