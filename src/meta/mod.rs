//! The meta dir, `<data dir>/.openclaw-space` (never backed up): the only module that names
//! a file in it, and the one that says how durable each file is. Backup and restore keep
//! their bookkeeping here through `Meta`; neither knows a file name.
//!
//! | file | owner here | durability | when lost or torn |
//! |---|---|---|---|
//! | `backup.lock` | `Meta::lock` | flock, no content | - |
//! | `run.lock` | `Meta::hold_run_lock` | flock, no content | - |
//! | `state.sha256` | `ledger` | synced | the next restore fetches again |
//! | `restore-failed` | `ledger` | synced | (a lost latch would let an empty state upload: synced) |
//! | `restore-skipped.json` | `ledger` | synced | the next fallback tries those versions again |
//! | `fingerprint.bin` | `ledger` | synced | the next backup uploads |
//! | `last-backup.json` | `ledger` | plain | `status` shows less until the next backup |
//! | `members.tar.gz` | `cache` | fsynced before its index is written | no member reuse |
//! | `members.json` | `cache` | plain, after the archive; names its file | no member reuse |
//! | `spare.tar.gz` | `cache` | never synced; trusted for this boot only | written anew |
//! | `copies/` | `Copies` | plain; repaired by the next refresh | databases copied whole |
//! | `scratch/` | `Meta::scratch` | temporary, emptied by each backup | - |
//! | `downloads/` | `Meta::downloads` | temporary, emptied by each restore | - |
//!
//! "synced" and "plain" are `fsutil::Durability`. Beside the state dir, `<name>.pre-restore`
//! holds the state the last restore replaced (`pre_restore_dir`).

pub mod cache;
pub mod ledger;

use std::fs::{self, File, OpenOptions};
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
    /// `<data dir>/.openclaw-space`.
    pub meta: Meta,
    /// User globs (relative to the state dir) to leave out, on top of OpenClaw's volatile paths.
    pub excludes: Vec<String>,
}

/// The meta dir of one data dir.
#[derive(Debug, Clone)]
pub struct Meta {
    dir: PathBuf,
}

/// How long a backup or restore waits for another one holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(120);

const LOCK: &str = "backup.lock";
/// Held by `run` for its whole life, so `restore` can tell that a gateway uses the state.
const RUN_LOCK: &str = "run.lock";
const SCRATCH: &str = "scratch";
const DOWNLOADS: &str = "downloads";
const COPIES: &str = "copies";

impl Meta {
    pub fn new(dir: PathBuf) -> Meta {
        Meta { dir }
    }

    /// The folder itself, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create the folder if needed.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Take the backup/restore lock (one at a time, across processes), waiting up to
    /// `LOCK_WAIT` for another holder. `what` names the caller in messages.
    pub async fn lock(&self, what: &str) -> Result<Flock<File>> {
        self.create()?;
        let path = self.file(LOCK);
        let mut file = open_lock_file(&path)?;
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

    /// Held for the life of `run`, so `restore` can tell that a gateway uses the state dir.
    /// `Err` names `root` when another `run` holds it.
    pub fn hold_run_lock(&self, root: &Path) -> Result<Flock<File>> {
        self.create()?;
        let file = open_lock_file(&self.file(RUN_LOCK))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            anyhow::anyhow!(
                "another entrypoint is already running on {} ({e}); stop it first",
                root.display()
            )
        })
    }

    /// True when a `run` holds its lock on this data dir.
    pub fn run_lock_held(&self) -> bool {
        let Ok(file) = OpenOptions::new().write(true).open(self.file(RUN_LOCK)) else {
            return false;
        };
        Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
    }

    /// An empty `scratch/`, where a backup builds its archive. Call with the lock held.
    pub fn scratch(&self) -> Result<Scratch> {
        Ok(Scratch {
            dir: fresh_dir(&self.file(SCRATCH))?,
        })
    }

    /// Remove `scratch/` and what is left in it.
    pub fn clear_scratch(&self) {
        let _ = fs::remove_dir_all(self.file(SCRATCH));
    }

    /// An empty `downloads/`, where a store puts a fetched archive (same filesystem as the
    /// state dir, so it can be linked into the member cache). Call with the lock held.
    pub fn downloads(&self) -> Result<PathBuf> {
        fresh_dir(&self.file(DOWNLOADS))
    }

    /// The kept database copies (`copies/`), created if needed.
    pub fn copies(&self) -> Result<Copies> {
        let dir = self.file(COPIES);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Copies { dir })
    }
}

/// The files a backup writes before it is committed (`scratch/`).
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// The archive being built.
    pub fn archive(&self) -> PathBuf {
        self.dir.join("archive.tar.gz")
    }

    /// The spare copy being written beside it (see `cache`).
    pub fn spare(&self) -> PathBuf {
        self.dir.join("spare.tar.gz")
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock {}", path.display()))
}

fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// The kept copy of each database (`copies/`): what went into the last archive, so the next
/// backup rewrites only the pages that changed (`livedb::copy`).
pub struct Copies {
    dir: PathBuf,
}

impl Copies {
    /// Where the copy of the database at `rel` is kept: a name derived from the path (paths
    /// may be long or not UTF-8).
    pub fn path(&self, rel: &[u8]) -> PathBuf {
        let h = blake3::hash(rel).to_hex();
        self.dir.join(format!("{}.sqlite", &h[..24]))
    }

    /// Delete the copies (and their side files) of databases not in `live`.
    pub fn prune<'a>(&self, live: impl Iterator<Item = &'a [u8]>) -> Result<()> {
        let keep: std::collections::HashSet<PathBuf> = live.map(|rel| self.path(rel)).collect();
        let dir = &self.dir;
        for f in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = f?.path();
            let db = p.to_string_lossy();
            let base = crate::livedb::SIDE_SUFFIXES
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

/// Where the state replaced by the last restore is kept.
pub fn pre_restore_dir(state_dir: &Path) -> Option<PathBuf> {
    let name = state_dir.file_name()?.to_str()?;
    Some(state_dir.parent()?.join(format!("{name}.pre-restore")))
}
