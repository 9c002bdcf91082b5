//! Restore: fetch -> verify sidecar -> test archive -> extract to staging -> atomic swap.
//!
//! The swap (names next to the state dir, same filesystem):
//! 1. extract into `.openclaw.staging-<id>/.openclaw` (fresh, empty), check its databases
//!    (`quick_check`) and clear the dead gateway's owner lease;
//! 2. rename `.openclaw` -> `.openclaw.old-<id>`, then `staging/.openclaw` -> `.openclaw`,
//!    fsync the parent;
//! 3. rename `.openclaw.old-<id>` -> `.openclaw.pre-restore` (kept until the next successful
//!    backup, see below).
//!
//! A kill at any moment leaves the old or the new state in place: `recover` (run before every
//! restore) puts `.openclaw.old-*` back when `.openclaw` is missing, and tidies leftovers.
//!
//! When is the state on disk replaced? Only when it is not already the store's latest backup
//! (`state.sha256` in the meta dir records the backup it equals, written by every upload and
//! restore), so a persistent /data is never replaced by the same or an older copy of itself.
//! Local state with no record, or a different one, may hold work the store lacks (backups
//! failed, or the meta dir was lost): the store still wins, since it is what the operator
//! configured as the source of truth, but the replaced state is kept as `.openclaw.pre-restore`
//! until the next successful backup, so nothing is lost without a chance to look.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tracing::{info, warn};

use crate::archive::{extract, write as awrite, ROOT};
use crate::backup::{self, Job, BLOCKED, FINGERPRINT, STATE_SHA};
use crate::openclaw::state;
use crate::snapshot::{self, Fingerprint, Kind};
use crate::store::dir::sync_dir;
use crate::store::{Fetched, Store};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Restored {
        sha256: String,
        size: u64,
    },
    /// The store positively holds no backup: fresh start.
    NoBackup,
    /// The state on disk already is the store's latest backup: nothing to do.
    UpToDate {
        sha256: String,
    },
    /// `verify`: the latest backup is intact and extractable.
    Verified {
        sha256: String,
        size: u64,
        files: u64,
    },
}

/// Restore the latest backup over the state dir. On any error the state on disk is untouched
/// and uploads stay blocked (a marker in the meta dir) until a restore succeeds or a backup is
/// forced.
pub async fn restore_latest(job: &Job, store: &dyn Store) -> anyhow::Result<Outcome> {
    fs::create_dir_all(&job.meta_dir)
        .with_context(|| format!("cannot create {}", job.meta_dir.display()))?;
    let _lock = backup::lock(&job.meta_dir, "restore").await?;
    recover(&job.state_dir)?;
    let result = restore_inner(job, store).await;
    match &result {
        Ok(_) => {
            let _ = fs::remove_file(job.meta_dir.join(BLOCKED));
        }
        Err(e) => {
            let _ = backup::write_atomic(&job.meta_dir.join(BLOCKED), format!("{e:#}").as_bytes());
        }
    }
    result
}

async fn restore_inner(job: &Job, store: &dyn Store) -> Result<Outcome> {
    let head = store
        .head()
        .await
        .with_context(|| format!("cannot read the latest backup in {}", store.describe()))?;
    let Some(head) = head else {
        return Ok(Outcome::NoBackup);
    };
    let local = fs::read_to_string(job.meta_dir.join(STATE_SHA)).ok();
    if local.as_deref().map(str::trim) == Some(head.sha256.as_str()) && job.state_dir.is_dir() {
        return Ok(Outcome::UpToDate {
            sha256: head.sha256,
        });
    }
    let Some(f) = fetch(job, store).await? else {
        return Ok(Outcome::NoBackup);
    };
    let j = job.clone();
    tokio::task::spawn_blocking(move || {
        let r = install(&j, &f);
        let _ = fs::remove_file(&f.archive);
        r
    })
    .await
    .context("restore task failed")?
}

/// Fetch, hash and fully read the latest backup without changing anything.
pub async fn verify_latest(job: &Job, store: &dyn Store) -> anyhow::Result<Outcome> {
    fs::create_dir_all(&job.meta_dir)
        .with_context(|| format!("cannot create {}", job.meta_dir.display()))?;
    let Some(f) = fetch(job, store).await? else {
        return Ok(Outcome::NoBackup);
    };
    tokio::task::spawn_blocking(move || {
        let r = check_hash(&f).and_then(|()| extract::verify(&f.archive));
        let _ = fs::remove_file(&f.archive);
        let stats = r?;
        Ok(Outcome::Verified {
            sha256: f.actual_sha256,
            size: f.size,
            files: stats.files,
        })
    })
    .await
    .context("verify task failed")?
}

/// Download the latest backup into the meta dir (None: the store holds none).
async fn fetch(job: &Job, store: &dyn Store) -> Result<Option<Fetched>> {
    store.fetch_latest(&job.meta_dir).await.with_context(|| {
        format!(
            "cannot download the latest backup from {}",
            store.describe()
        )
    })
}

fn check_hash(f: &Fetched) -> Result<()> {
    if f.expected_sha256 != f.actual_sha256 {
        bail!(
            "the backup is corrupt: its sidecar says SHA-256 {} but the archive hashes to {}",
            f.expected_sha256,
            f.actual_sha256
        );
    }
    Ok(())
}

/// Verify, extract to staging, fix up, swap (blocking).
fn install(job: &Job, f: &Fetched) -> Result<Outcome> {
    check_hash(f)?;
    let parent = job
        .state_dir
        .parent()
        .ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let name = file_name(&job.state_dir)?;
    let id = format!("{}-{}", std::process::id(), snapshot::now_ns());
    let staging = parent.join(format!("{name}.staging-{id}"));
    fs::create_dir(&staging)
        .with_context(|| format!("cannot create the staging dir {}", staging.display()))?;
    let mut members = Vec::new();
    let result = (|| -> Result<Outcome> {
        let mut stats = extract::extract(&f.archive, &staging)?;
        members = std::mem::take(&mut stats.members);
        let new = staging.join(ROOT);
        prepare_databases(&new)?;
        // The new state must be on disk before it replaces the old one (a power cut after the
        // rename must not leave empty files): one syncfs instead of an fsync per file.
        let dir = fs::File::open(&new).with_context(|| format!("cannot open {}", new.display()))?;
        nix::unistd::syncfs(&dir).with_context(|| format!("cannot sync {}", new.display()))?;
        swap(&job.state_dir, &new, &id)?;
        info!(
            "restored {} files ({} MB) from backup {}",
            stats.files,
            stats.bytes >> 20,
            &f.actual_sha256[..12]
        );
        Ok(Outcome::Restored {
            sha256: f.actual_sha256.clone(),
            size: f.size,
        })
    })();
    let _ = fs::remove_dir_all(&staging);
    let outcome = result?;
    seed_member_cache(job, f, members);
    // The state now equals this backup: record it, and its fingerprint, so an unchanged state
    // is neither restored again nor re-uploaded.
    backup::write_atomic(&job.meta_dir.join(STATE_SHA), f.actual_sha256.as_bytes())?;
    match fingerprint(job) {
        Ok(fp) => fp.save(&job.meta_dir.join(FINGERPRINT))?,
        Err(e) => {
            warn!(
                "cannot fingerprint the restored state ({e:#}); the next backup uploads it again"
            );
            let _ = fs::remove_file(job.meta_dir.join(FINGERPRINT));
        }
    }
    Ok(outcome)
}

/// Keep the fetched archive as the backup's member cache (indexed by content only: the
/// restored files have new inodes), so the first backup after a restore copies the members of
/// unchanged regions instead of compressing everything again. Only for archives cut into
/// members like ours; a seed's single huge member could never be reused.
fn seed_member_cache(job: &Job, f: &Fetched, members: Vec<(u64, u64, u64, String)>) {
    // Empty unless every member was one of ours (`extract::Stats::members`).
    if members.is_empty() {
        return;
    }
    let mut index = awrite::Index {
        format: awrite::format_id(),
        size: f.size,
        members: members
            .into_iter()
            .map(|(coff, clen, ulen, ukey)| awrite::MemberRec {
                skey: None,
                ukey,
                ulen,
                coff,
                clen,
                last: false,
            })
            .collect(),
        sha_states: Vec::new(),
        file: None,
        prev: None,
    };
    let cache = job.meta_dir.join(backup::CACHE_ARCHIVE);
    let r = (|| -> Result<()> {
        // Archive first, index last (the index names the archive's size: a mismatch disables it).
        let _ = fs::remove_file(job.meta_dir.join(backup::CACHE_INDEX));
        fs::hard_link(&f.archive, &cache)
            .or_else(|_| fs::remove_file(&cache).and_then(|()| fs::hard_link(&f.archive, &cache)))
            .or_else(|_| fs::copy(&f.archive, &cache).map(|_| ()))?;
        // Reused bytes must survive a power cut as written (cheap when the store synced them).
        fs::File::open(&cache)?.sync_all()?;
        index.file = Some(awrite::FileId::of(&cache)?);
        backup::write_json(&job.meta_dir.join(backup::CACHE_INDEX), &index)
    })();
    if let Err(e) = r {
        warn!("cannot keep the restored archive as the member cache: {e:#}");
    }
}

/// Every restored SQLite database must pass `quick_check`; the owner lease of the gateway that
/// wrote it (in a container that is gone) is removed so the new gateway starts at once.
fn prepare_databases(root: &Path) -> Result<()> {
    let tree = snapshot::walk(root, &globset::GlobSet::empty(), None)?;
    for e in tree.entries.iter().filter(|e| e.kind == Kind::Sqlite) {
        let path = e.path_in(root);
        let ctx = || format!("restored database {}", String::from_utf8_lossy(&e.rel));
        let conn = rusqlite::Connection::open(&path).with_context(ctx)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .with_context(ctx)?;
        if check != "ok" {
            bail!("{}: quick_check failed: {check}", ctx());
        }
        let n = state::clear_owner_leases(&conn).with_context(ctx)?;
        if n > 0 {
            info!("{}: cleared {n} stale owner lease(s)", ctx());
        }
        conn.close().map_err(|(_, e)| e).with_context(ctx)?;
    }
    Ok(())
}

fn fingerprint(job: &Job) -> Result<Fingerprint> {
    let skip = snapshot::excludes(&job.excludes)?;
    let tree = snapshot::walk(&job.state_dir, &skip, None)?;
    let mut sqlite = std::collections::BTreeMap::new();
    for e in tree.entries.iter().filter(|e| e.kind == Kind::Sqlite) {
        sqlite.insert(
            hex::encode(&e.rel),
            crate::livedb::logical_hash(&e.path_in(&job.state_dir))?,
        );
    }
    // Every restored file was just written (its ctime is now), yet none is "racily clean":
    // nothing else writes the state until the restore returns and the gateway starts, seconds
    // and many timestamp ticks after this walk, so any later write moves the ctime. Hence a
    // scan time just past the racy window of the newest file instead of hashing every file.
    let newest = tree
        .entries
        .iter()
        .map(|e| e.stat.ctime_ns.max(e.stat.mtime_ns))
        .max()
        .unwrap_or(0);
    Ok(Fingerprint {
        scan_start_ns: newest + snapshot::RACY_NS + 1,
        entries: tree.entries,
        sqlite,
        racy: Default::default(),
    })
}

/// Put `new` in place of `state_dir`; the old state ends as `<name>.pre-restore`.
fn swap(state_dir: &Path, new: &Path, id: &str) -> Result<()> {
    let parent = state_dir
        .parent()
        .ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let name = file_name(state_dir)?;
    let old = parent.join(format!("{name}.old-{id}"));
    let had_old = fs::symlink_metadata(state_dir).is_ok();
    if had_old {
        fs::rename(state_dir, &old)
            .with_context(|| format!("cannot move {} aside", state_dir.display()))?;
    }
    if let Err(e) = fs::rename(new, state_dir) {
        if had_old {
            let _ = fs::rename(&old, state_dir);
        }
        return Err(e)
            .with_context(|| format!("cannot move the restored state to {}", state_dir.display()));
    }
    sync_dir(parent)?;
    if had_old {
        keep_aside(state_dir, &old)?;
        sync_dir(parent)?;
    }
    Ok(())
}

/// `<name>.old-*` -> `<name>.pre-restore` (replacing an older one); an empty old state is
/// simply removed.
fn keep_aside(state_dir: &Path, old: &Path) -> Result<()> {
    let pre = pre_restore_dir(state_dir).ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let empty = fs::read_dir(old)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        fs::remove_dir_all(old)?;
        return Ok(());
    }
    if pre.exists() {
        fs::remove_dir_all(&pre).with_context(|| format!("cannot remove {}", pre.display()))?;
    }
    fs::rename(old, &pre)
        .with_context(|| format!("cannot keep the replaced state as {}", pre.display()))?;
    info!(
        "the replaced state is kept as {} until the next successful backup",
        pre.display()
    );
    Ok(())
}

/// Where the state replaced by the last restore is kept.
pub fn pre_restore_dir(state_dir: &Path) -> Option<PathBuf> {
    let name = state_dir.file_name()?.to_str()?;
    Some(state_dir.parent()?.join(format!("{name}.pre-restore")))
}

/// Finish or undo a swap a kill interrupted, and remove stale staging dirs. Never deletes the
/// only copy of a state.
pub fn recover(state_dir: &Path) -> Result<()> {
    let Some(parent) = state_dir.parent() else {
        return Ok(());
    };
    let name = file_name(state_dir)?;
    let Ok(rd) = fs::read_dir(parent) else {
        return Ok(());
    };
    let mut olds = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!("{name}.staging-")) {
            let _ = fs::remove_dir_all(e.path());
        } else if n.starts_with(&format!("{name}.old-")) {
            olds.push(e.path());
        }
    }
    olds.sort();
    if fs::symlink_metadata(state_dir).is_err() {
        if let Some(last) = olds.pop() {
            warn!(
                "an interrupted restore left {} without {}; putting it back",
                last.display(),
                state_dir.display()
            );
            fs::rename(&last, state_dir)?;
            sync_dir(parent)?;
        }
    }
    for o in olds {
        keep_aside(state_dir, &o)?;
    }
    Ok(())
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the state dir {} has no usable name", p.display()))
}
