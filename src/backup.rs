//! Backup: snapshot -> changed? -> archive -> store.put, one at a time across processes.
//!
//! What it keeps between backups (the member cache, the spare copy, the database copies, the
//! fingerprint, `state.sha256`) lives in the meta dir; `meta` names every file there and says
//! how durable each one is.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tracing::info;

use crate::archive::write::{self as awrite, Cache, Source};
use crate::fsutil::{now_rfc3339, write_atomic};
use crate::livedb;
use crate::meta::{
    lock, Job, BLOCKED, CACHE_ARCHIVE, CACHE_INDEX, COPIES, FINGERPRINT, RECORD, SCRATCH, SPARE,
    STATE_SHA,
};
use crate::snapshot::{self, Entry, Fingerprint, Kind};
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
    fs::create_dir_all(&job.meta_dir)
        .with_context(|| format!("cannot create {}", job.meta_dir.display()))?;
    let _lock = lock(&job.meta_dir, "backup").await?;
    if !force {
        if let Ok(why) = fs::read_to_string(job.meta_dir.join(BLOCKED)) {
            bail!(
                "uploads are paused because the last restore failed ({}); fix the store and restart, \
                 or run `entrypoint backup --force` to upload the state on disk anyway",
                why.trim()
            );
        }
    }
    if !job.state_dir.is_dir() {
        bail!(
            "nothing to back up: {} does not exist",
            job.state_dir.display()
        );
    }
    let j = job.clone();
    let spares = Spares {
        store: store.spare_archive(),
        keep: store.offers_spares(),
    };
    let prepared = tokio::task::spawn_blocking(move || prepare(&j, force, spares))
        .await
        .context("backup task failed")??;
    let p = match prepared {
        Prepared::Skip => {
            let j = job.clone();
            let ms = started.elapsed().as_millis() as u64;
            tokio::task::spawn_blocking(move || write_record(&j.meta_dir, None, ms)).await??;
            return Ok(Outcome::Skipped);
        }
        Prepared::Archive(p) => p,
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
        let _ = fs::remove_file(&p.archive);
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

/// The last backup's record (time, size, sha, duration, skipped/uploaded) for `status`, if any.
pub fn last_record(meta_dir: &Path) -> Option<serde_json::Value> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(meta_dir.join(RECORD)).ok()?).ok()?;
    if let Ok(why) = fs::read_to_string(meta_dir.join(BLOCKED)) {
        v["uploads_paused"] =
            serde_json::Value::String(format!("last restore failed: {}", why.trim()));
    }
    Some(v)
}

enum Prepared {
    Skip,
    Archive(Box<Ready>),
}

struct Ready {
    archive: PathBuf,
    /// A copy of `archive` to keep as `SPARE` (its index's `prev`).
    spare: Option<PathBuf>,
    sha256: String,
    size: u64,
    files: u64,
    index: awrite::Index,
    stats: awrite::Stats,
    fingerprint: Fingerprint,
}

/// Old archive files the new one may be written over (see `take_over`).
struct Spares {
    /// The store's (`Store::spare_archive`).
    store: Option<PathBuf>,
    /// Keep a spare copy of an archive that has no file to follow it (`Store::offers_spares`).
    keep: bool,
}

/// Scan, decide, archive (blocking). The stages, in order:
/// 1. `scan`: list the tree (beside loading the last fingerprint) and classify it: every
///    file that could be a database is sniffed here, before any copy starts (`livedb`'s rule);
/// 2. `unchanged`: the stat-level decision; databases whose stat moved are copied (verified)
///    and compared by logical hash;
/// 3. `build`: the remaining databases are copied beside the archive, which waits for a copy
///    only when it reaches that database; the fingerprint takes the copies' hashes.
fn prepare(job: &Job, force: bool, spares: Spares) -> Result<Prepared> {
    let meta = &job.meta_dir;
    let copies = Copies::open(meta)?;
    let (prev, tree) = scan(job)?;
    copies.prune(&tree.entries)?;
    let scratch = meta.join(SCRATCH);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let mut copier = livedb::Copier::start();
    if let (Some(prev), false) = (&prev, force) {
        if unchanged(job, prev, &tree, &copier, &copies)? {
            drop(copier);
            let _ = fs::remove_dir_all(&scratch);
            return Ok(Prepared::Skip);
        }
    }
    // The last fingerprint has done its part: freed before the archive's buffers peak.
    let racy_since_ns = prev
        .as_ref()
        .map_or(i64::MIN, |p| p.scan_start_ns - snapshot::RACY_NS);
    drop(prev);
    let plan = Plan {
        racy_since_ns,
        force,
        spares,
    };
    build(job, tree, &mut copier, &copies, &scratch, plan)
}

/// What stage 3 takes from the ones before it.
struct Plan {
    /// Files changed since this time (ns) can't be trusted by stat (the last scan's window).
    racy_since_ns: i64,
    /// Upload even when the archive equals the stored backup.
    force: bool,
    spares: Spares,
}

/// Stage 1: the tree, classified, and the last fingerprint (loaded while the tree is listed).
fn scan(job: &Job) -> Result<(Option<Fingerprint>, snapshot::Tree)> {
    let started = Instant::now();
    let skip = snapshot::excludes(&job.excludes)?;
    let (prev, tree) = std::thread::scope(|s| {
        let loader = s.spawn(|| Fingerprint::load(&job.meta_dir.join(FINGERPRINT)));
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

/// Stage 2: true when nothing meaningful changed since the last upload. Every entry must be
/// stat-equal to the fingerprint's (a racily-clean file also by content); a database whose
/// stat moved is copied and compared by logical hash (the gateway's lease heartbeat alone
/// must not cause an upload). When the copies say "same", their new stat is remembered so
/// the next check needn't copy them again.
fn unchanged(
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
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Sqlite)
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
        let newer: HashMap<&[u8], &Entry> = moved.iter().map(|e| (e.rel.as_slice(), *e)).collect();
        let fp = Fingerprint {
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
        };
        fp.save(&job.meta_dir.join(FINGERPRINT))?;
    }
    Ok(true)
}

/// Stage 3: copy the databases beside the archive, write it, and make the fingerprint.
fn build(
    job: &Job,
    mut tree: snapshot::Tree,
    copier: &mut livedb::Copier,
    copies: &Copies,
    scratch: &Path,
    plan: Plan,
) -> Result<Prepared> {
    let meta = &job.meta_dir;
    let settled = snapshot::archive_order(&mut tree.entries);
    // In archive order: the writer waits for a copy only when it reaches that database.
    let dbs: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Sqlite)
        .collect();
    for e in &dbs {
        copier.queue(&e.rel, e.path_in(&job.state_dir), copies.path(&e.rel));
    }
    copier.close();
    let cache = Cache::open(&meta.join(CACHE_ARCHIVE), &meta.join(CACHE_INDEX));
    let out = scratch.join("archive.tar.gz");
    let spare = place_output(meta, cache.as_ref(), &out, &plan.spares, scratch);
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
    if !plan.force
        && fs::read_to_string(meta.join(STATE_SHA)).is_ok_and(|s| s.trim() == written.sha256)
    {
        // Same bytes as what is stored (e.g. only racily-clean files were re-read).
        fingerprint.save(&meta.join(FINGERPRINT))?;
        let _ = fs::remove_dir_all(scratch);
        return Ok(Prepared::Skip);
    }
    Ok(Prepared::Archive(Box::new(Ready {
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

/// Choose the file the archive is written over (a spare whose pages are rewritten in place,
/// see `take_over`), and whether to keep a spare copy of it; returns the spare copy's path.
fn place_output(
    meta: &Path,
    cache: Option<&Cache>,
    out: &Path,
    spares: &Spares,
    scratch: &Path,
) -> Option<PathBuf> {
    // Our own spare is only worth its disk space while the cache's `prev` names it.
    let own = meta.join(SPARE);
    let own_fits = cache
        .and_then(Cache::prev_file)
        .is_some_and(|f| awrite::FileId::of(&own).ok() == Some(f));
    if !own_fits {
        let _ = fs::remove_file(&own);
    }
    if (own_fits && take_over(&own, out))
        || spares.store.as_ref().is_some_and(|s| take_over(s, out))
    {
        tracing::debug!("backup: overwriting a spare archive file in place");
    }
    // With no cache file to follow this archive (none, or one of unknown identity), the
    // store's next spare won't hold its bytes: write a copy that will.
    (spares.keep && cache.and_then(Cache::id).is_none() && awrite::this_boot().is_some())
        .then(|| scratch.join(SPARE))
}

/// Move `spare` (an archive the store is about to delete) to `out`, for the new archive to
/// overwrite in place: a new 300 MB file costs the kernel ~3x more than rewriting the pages of
/// an old one (page allocation, delayed-allocation bookkeeping, and freeing the old one).
/// Only when nobody can see the change: after the rename no one can open it by name, and a
/// write lease is granted only while no other process has it open; it must have no other
/// link. Otherwise it goes back and the archive is a new file.
fn take_over(spare: &Path, out: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    if fs::rename(spare, out).is_err() {
        return false; // e.g. another filesystem
    }
    let alone = OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .is_ok_and(|f| {
            let fd = f.as_raw_fd();
            // SAFETY: fcntl on an fd we own; no memory is passed.
            let leased = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) } == 0;
            if leased {
                // SAFETY: as above.
                unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
            }
            leased && f.metadata().is_ok_and(|m| m.nlink() == 1)
        });
    if !alone {
        let _ = fs::rename(out, spare);
    }
    alone
}

/// The kept copy of each database (`copies/` in the meta dir): what went into the last
/// archive, so the next backup rewrites only the pages that changed (`livedb::copy`).
struct Copies {
    dir: PathBuf,
}

impl Copies {
    fn open(meta: &Path) -> Result<Copies> {
        let dir = meta.join(COPIES);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Copies { dir })
    }

    /// Where the copy of the database at `rel` is kept: a name derived from the path (paths
    /// may be long or not UTF-8).
    fn path(&self, rel: &[u8]) -> PathBuf {
        let h = blake3::hash(rel).to_hex();
        self.dir.join(format!("{}.sqlite", &h[..24]))
    }

    /// Delete the copies of databases that are gone (and their side files).
    fn prune(&self, entries: &[Entry]) -> Result<()> {
        let keep: std::collections::HashSet<PathBuf> = entries
            .iter()
            .filter(|e| e.kind == Kind::Sqlite)
            .map(|e| self.path(&e.rel))
            .collect();
        let dir = &self.dir;
        for f in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = f?.path();
            let db = p.to_string_lossy();
            let base = livedb::SIDE_SUFFIXES
                .iter()
                .find_map(|s| db.strip_suffix(s))
                .map_or_else(|| p.clone(), PathBuf::from);
            if !keep.contains(&base) {
                let _ = fs::remove_file(&p);
            }
        }
        Ok(())
    }
}

/// After a successful upload: the archive becomes the member cache, the fingerprint and the
/// record move on, the restore latch and the pre-restore copy go.
fn commit(job: &Job, p: Ready, force: bool, duration: Duration) -> Result<()> {
    let meta = &job.meta_dir;
    let cache = meta.join(CACHE_ARCHIVE);
    // The old index goes first: a crash before the new one is in place leaves no cache (never
    // an index describing another file).
    let _ = fs::remove_file(meta.join(CACHE_INDEX));
    fs::rename(&p.archive, &cache)?;
    // The cache must survive a power cut intact before the index points into it.
    File::open(&cache)?.sync_all()?;
    if let Some(spare) = &p.spare {
        // Not synced: the index trusts it for this boot only.
        fs::rename(spare, meta.join(SPARE))?;
    }
    let mut index = p.index;
    index.file = Some(awrite::FileId::of(&cache)?);
    let idx_tmp = meta.join(format!("{CACHE_INDEX}.tmp"));
    fs::write(&idx_tmp, serde_json::to_vec(&index)?)?;
    fs::rename(&idx_tmp, meta.join(CACHE_INDEX))?;
    p.fingerprint.save(&meta.join(FINGERPRINT))?;
    write_atomic(&meta.join(STATE_SHA), p.sha256.as_bytes())?;
    if force {
        let _ = fs::remove_file(meta.join(BLOCKED));
    }
    // Written by versions before the binary format.
    let _ = fs::remove_file(meta.join("fingerprint.json"));
    // The state replaced by the last restore was kept until now (see `restore`).
    if let Some(pre) = crate::meta::pre_restore_dir(&job.state_dir) {
        if pre.exists() {
            info!(
                "backup uploaded; removing {} kept from before the last restore",
                pre.display()
            );
            let _ = fs::remove_dir_all(&pre);
        }
    }
    let _ = fs::remove_dir_all(meta.join(SCRATCH));
    let up = Upload {
        time: now_rfc3339(),
        sha256: p.sha256,
        size: p.size,
        files: p.files,
        duration_ms: duration.as_millis() as u64,
        members: p.stats.members,
        reused_members: p.stats.reused_members,
    };
    write_record(meta, Some(up), duration.as_millis() as u64)
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct Upload {
    time: String,
    sha256: String,
    size: u64,
    files: u64,
    duration_ms: u64,
    members: u64,
    reused_members: u64,
}

/// `{"last_upload": {...}, "last_check": {"time", "result", "duration_ms"}}`.
fn write_record(meta: &Path, upload: Option<Upload>, ms: u64) -> Result<()> {
    let path = meta.join(RECORD);
    let mut v: serde_json::Value = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let result = if upload.is_some() {
        "uploaded"
    } else {
        "skipped"
    };
    if let Some(u) = upload {
        v["last_upload"] = serde_json::to_value(u)?;
    }
    v["last_check"] =
        serde_json::json!({ "time": now_rfc3339(), "result": result, "duration_ms": ms });
    // Informational only: atomic, but not worth an fsync on every periodic check.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(&v)?)?;
    fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state dir with a note and a WAL database holding the gateway's owner lease.
    fn state(d: &Path) -> (Job, rusqlite::Connection) {
        let job = Job {
            state_dir: d.join(".openclaw"),
            meta_dir: d.join(".openclaw-space"),
            excludes: Vec::new(),
        };
        fs::create_dir_all(job.state_dir.join("state")).unwrap();
        fs::create_dir_all(&job.meta_dir).unwrap();
        fs::write(job.state_dir.join("notes.md"), "hello\n".repeat(100)).unwrap();
        let c = rusqlite::Connection::open(job.state_dir.join("state/openclaw.sqlite")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE state_leases (scope TEXT, lease_key TEXT, owner TEXT, heartbeat_at INTEGER,
               PRIMARY KEY (scope, lease_key));
             INSERT INTO state_leases VALUES ('gateway-owner', 'global', 'me', 1);
             CREATE TABLE memory (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO memory (body) VALUES ('a'), ('b');",
        )
        .unwrap();
        (job, c)
    }

    /// The fingerprint a full backup of the state makes now (stage 3), and stage 2's verdict
    /// on the tree as it is after `change`.
    fn verdict(job: &Job, change: impl FnOnce()) -> bool {
        let (_, tree) = scan(job).unwrap();
        let copies = Copies::open(&job.meta_dir).unwrap();
        let mut copier = livedb::Copier::start();
        let plan = Plan {
            racy_since_ns: i64::MIN,
            force: true,
            spares: Spares {
                store: None,
                keep: false,
            },
        };
        let scratch = job.meta_dir.join(SCRATCH);
        fs::create_dir_all(&scratch).unwrap();
        let Prepared::Archive(ready) =
            build(job, tree, &mut copier, &copies, &scratch, plan).unwrap()
        else {
            panic!("a forced build archives");
        };
        drop(copier);
        change();
        let (_, tree) = scan(job).unwrap();
        let copier = livedb::Copier::start();
        unchanged(job, &ready.fingerprint, &tree, &copier, &copies).unwrap()
    }

    #[test]
    fn the_decision_ignores_the_lease_heartbeat_and_sees_everything_else() {
        let d = tempfile::tempdir().unwrap();
        let (job, c) = state(d.path());
        assert!(verdict(&job, || {}), "nothing changed");
        let _ = fs::remove_file(job.meta_dir.join(FINGERPRINT));
        assert!(
            verdict(&job, || {
                c.execute("UPDATE state_leases SET heartbeat_at = 2", [])
                    .unwrap();
            }),
            "a heartbeat is not a change"
        );
        assert!(
            job.meta_dir.join(FINGERPRINT).exists(),
            "the database's new stat is remembered"
        );
        assert!(!verdict(&job, || {
            c.execute("UPDATE memory SET body = 'c' WHERE id = 1", [])
                .unwrap();
        }));
        assert!(!verdict(&job, || {
            fs::write(job.state_dir.join("new.md"), "x").unwrap();
        }));
        assert!(!verdict(&job, || {
            fs::remove_file(job.state_dir.join("notes.md")).unwrap();
        }));
    }

    #[test]
    fn a_spare_archive_is_taken_over_only_when_nobody_else_has_it() {
        let d = tempfile::tempdir().unwrap();
        let (spare, out) = (d.path().join("spare"), d.path().join("out"));
        fs::write(&spare, b"old archive").unwrap();
        // Open elsewhere: a reader would see the new bytes. It stays where it was.
        let reader = File::open(&spare).unwrap();
        assert!(!take_over(&spare, &out));
        assert!(spare.exists() && !out.exists());
        drop(reader);
        // Another link to the same inode (e.g. a member cache): also left alone.
        fs::hard_link(&spare, d.path().join("link")).unwrap();
        assert!(!take_over(&spare, &out));
        assert!(spare.exists() && !out.exists());
        fs::remove_file(d.path().join("link")).unwrap();
        // Nobody else: moved.
        assert!(take_over(&spare, &out));
        assert!(!spare.exists());
        assert_eq!(fs::read(&out).unwrap(), b"old archive");
    }
}
