//! Snapshot: a consistent, deterministic view of the state dir, and its change fingerprint.
//!
//! - `walk` lists the tree in sorted (byte) order with stable metadata, leaving out OpenClaw's
//!   volatile paths, the user's globs and the `-wal`/`-shm`/`-journal` of SQLite databases.
//! - SQLite databases (recognised by their 16-byte header, not by name) are never archived raw:
//!   `livedb` keeps a verified, consistent copy of each; this module only finds them.
//! - `Fingerprint` is what the last upload contained, at stat level (path, size, mtime, ctime,
//!   inode, mode), plus a logical hash of each database that ignores the gateway's lease rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::livedb;
use crate::openclaw::state;

mod codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A SQLite database: archived as a consistent copy (`livedb::copy`), never byte-for-byte.
    Sqlite,
}

/// The stat fields that tell whether a file may have changed (restic's rule: mtime alone is
/// not enough, programs can set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatId {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl StatId {
    fn of(m: &fs::Metadata) -> StatId {
        StatId {
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        }
    }
}

/// One path of the state dir as it will be archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the state dir, `/`-separated, hex of the raw bytes (names need not be UTF-8);
    /// empty for the state dir itself.
    pub rel: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub stat: StatId,
    /// Symlink target, raw bytes.
    pub target: Vec<u8>,
    /// For a database: the stat of its `-wal` (a commit may touch only the WAL).
    pub wal: Option<StatId>,
}

impl Entry {
    /// True when the archived bytes of this entry are known not to have changed since `prev`
    /// without reading it. Directories are archived without times (see `archive`), so only
    /// their mode counts.
    pub fn same_stat(&self, prev: &Entry) -> bool {
        if self.kind != prev.kind || self.mode != prev.mode || self.rel != prev.rel {
            return false;
        }
        match self.kind {
            Kind::Dir => true,
            _ => self.stat == prev.stat && self.target == prev.target && self.wal == prev.wal,
        }
    }

    pub fn path_in(&self, root: &Path) -> PathBuf {
        if self.rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(std::ffi::OsStr::from_bytes(&self.rel))
        }
    }
}

/// The result of a walk.
#[derive(Debug)]
pub struct Tree {
    pub entries: Vec<Entry>,
    /// Wall-clock time (ns since the epoch) when the walk started; files changed within a
    /// timestamp tick of it are "racily clean" and must be read next time.
    pub scan_start_ns: i64,
}

impl Tree {
    /// The entries that are SQLite databases.
    pub fn databases(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == Kind::Sqlite)
    }
}

/// The globs to leave out: OpenClaw's volatile paths plus the user's.
pub fn excludes(user: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in state::VOLATILE
        .iter()
        .copied()
        .chain(user.iter().map(String::as_str))
    {
        let glob = GlobBuilder::new(g)
            .literal_separator(false)
            .build()
            .with_context(|| format!("ENTRYPOINT_BACKUP_EXCLUDE: '{g}' is not a valid glob"))?;
        b.add(glob);
    }
    Ok(b.build()?)
}

/// Walk `root` in sorted order. `prev` (the last fingerprint's entries by path) saves reading
/// the header of files whose stat did not change.
pub fn walk(root: &Path, skip: &GlobSet, prev: Option<&HashMap<&[u8], &Entry>>) -> Result<Tree> {
    let mut tree = list(root, skip)?;
    classify(root, &mut tree, prev)?;
    Ok(tree)
}

/// The listing half of `walk`: every path in sorted order with its stat, regular files as
/// `Kind::File` until `classify` finds the databases. Two threads share the directories.
pub fn list(root: &Path, skip: &GlobSet) -> Result<Tree> {
    let scan_start_ns = now_ns();
    let meta = fs::symlink_metadata(root)
        .with_context(|| format!("cannot read the state dir {}", root.display()))?;
    let top = Entry {
        rel: Vec::new(),
        kind: Kind::Dir,
        mode: meta.mode() & 0o7777,
        stat: StatId::default(),
        target: Vec::new(),
        wal: None,
    };
    let work = Listing {
        queue: Mutex::new((vec![Vec::new()], 1)),
        more: Condvar::new(),
        listed: Mutex::new(HashMap::new()),
        failed: Mutex::new(None),
    };
    std::thread::scope(|s| {
        for _ in 0..LIST_THREADS {
            s.spawn(|| work.run(root, skip));
        }
    });
    if let Some(e) = work.failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut listed = work.listed.into_inner().unwrap_or_default();
    let mut entries = vec![top];
    stitch(&[], &mut listed, &mut entries);
    Ok(Tree {
        entries,
        scan_start_ns,
    })
}

/// Listing threads (stat calls are mostly system time: two cores halve the walk).
const LIST_THREADS: usize = 2;

/// Directories waiting to be listed (+ how many are queued or being listed), and the result.
struct Listing {
    queue: Mutex<(Vec<Vec<u8>>, usize)>,
    more: Condvar,
    /// Directory (relative) -> its children, sorted.
    listed: Mutex<HashMap<Vec<u8>, Vec<Entry>>>,
    failed: Mutex<Option<anyhow::Error>>,
}

impl Listing {
    fn run(&self, root: &Path, skip: &GlobSet) {
        loop {
            let rel = {
                let Ok(mut q) = self.queue.lock() else { return };
                loop {
                    if let Some(r) = q.0.pop() {
                        break r;
                    }
                    if q.1 == 0 {
                        return;
                    }
                    q = match self.more.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(std::ffi::OsStr::from_bytes(&rel))
            };
            let children = list_dir(&dir, &rel, skip);
            let Ok(mut q) = self.queue.lock() else { return };
            match children {
                Ok(children) => {
                    for c in children.iter().filter(|c| c.kind == Kind::Dir) {
                        q.0.push(c.rel.clone());
                        q.1 += 1;
                    }
                    if let Ok(mut l) = self.listed.lock() {
                        l.insert(rel, children);
                    }
                }
                Err(e) => {
                    // Stop everyone: drop the queue, keep the first error.
                    q.1 -= q.0.len();
                    q.0.clear();
                    if let Ok(mut f) = self.failed.lock() {
                        f.get_or_insert(e);
                    }
                }
            }
            q.1 -= 1;
            self.more.notify_all();
        }
    }
}

/// Depth-first, sorted: a directory's children right after it.
fn stitch(rel: &[u8], listed: &mut HashMap<Vec<u8>, Vec<Entry>>, out: &mut Vec<Entry>) {
    for child in listed.remove(rel).unwrap_or_default() {
        let is_dir = child.kind == Kind::Dir;
        let r = child.rel.clone();
        out.push(child);
        if is_dir {
            stitch(&r, listed, out);
        }
    }
}

/// The children of one directory, sorted by name.
fn list_dir(dir: &Path, rel: &[u8], skip: &GlobSet) -> Result<Vec<Entry>> {
    // Kept open while we stat: `DirEntry::metadata` is an `fstatat` relative to the listed
    // directory, which saves resolving every path from the root.
    let mut listed: Vec<fs::DirEntry> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    listed.sort_by_cached_key(|d| d.file_name());
    let mut out = Vec::with_capacity(listed.len());
    for d in listed {
        let name = d.file_name();
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        if skip.is_match(Path::new(std::ffi::OsStr::from_bytes(&child_rel))) {
            continue;
        }
        let meta = match d.metadata() {
            Ok(m) => m,
            // Deleted between the listing and the stat: it is simply not in this snapshot.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", d.path().display())),
        };
        let ft = meta.file_type();
        let (kind, target) = if ft.is_dir() {
            (Kind::Dir, Vec::new())
        } else if ft.is_symlink() {
            let t = match fs::read_link(d.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read the symlink {}", d.path().display()))
                }
            };
            (Kind::Symlink, t.as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            (Kind::File, Vec::new())
        } else {
            // Sockets, FIFOs, devices: nothing a restore could or should recreate.
            tracing::debug!(
                "backup: skipping {} (not a file, dir or symlink)",
                d.path().display()
            );
            continue;
        };
        out.push(Entry {
            rel: child_rel,
            kind,
            mode: meta.mode() & 0o7777,
            stat: StatId::of(&meta),
            target,
            wal: None,
        });
    }
    Ok(out)
}

/// The classifying half of `walk`: find the SQLite databases (by header; a file whose stat
/// matches `prev` keeps its kind), leave out their `-wal`/`-shm`/`-journal`, and note the stat
/// of each one's WAL (a commit may change only the WAL).
///
/// Every file is sniffed here, through `livedb::sniff`, before a backup copies any database:
/// never while a copy holds its read lock (see the rule in `livedb`). A file named like a side
/// file is never sniffed.
pub fn classify(root: &Path, tree: &mut Tree, prev: Option<&HashMap<&[u8], &Entry>>) -> Result<()> {
    for e in tree.entries.iter_mut().filter(|e| e.kind == Kind::File) {
        let known = prev
            .and_then(|p| p.get(e.rel.as_slice()))
            .filter(|p| p.stat == e.stat && matches!(p.kind, Kind::File | Kind::Sqlite))
            .map(|p| p.kind);
        e.kind = match known {
            Some(k) => k,
            None if could_be_sqlite(e.stat.size) => {
                let path = e.path_in(root);
                match livedb::sniff(&path) {
                    Ok(true) => Kind::Sqlite,
                    Ok(false) => Kind::File,
                    // Gone since the listing: the archive writes what it finds then.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Kind::File,
                    Err(err) => {
                        return Err(err).with_context(|| format!("cannot read {}", path.display()))
                    }
                }
            }
            None => Kind::File,
        };
    }
    let entries = &mut tree.entries;
    let dbs: HashSet<Vec<u8>> = entries
        .iter()
        .filter(|e| e.kind == Kind::Sqlite)
        .map(|e| e.rel.clone())
        .collect();
    if dbs.is_empty() {
        return Ok(());
    }
    let mut wal_stats: HashMap<Vec<u8>, StatId> = HashMap::new();
    entries.retain(|e| {
        for suffix in livedb::SIDE_SUFFIXES {
            if let Some(base) = e.rel.strip_suffix(suffix.as_bytes()) {
                if dbs.contains(base) {
                    if *suffix == "-wal" {
                        wal_stats.insert(base.to_vec(), wal_identity(e.stat));
                    }
                    return false;
                }
            }
        }
        true
    });
    for e in entries.iter_mut().filter(|e| e.kind == Kind::Sqlite) {
        e.wal = wal_stats.get(&e.rel).copied();
    }
    Ok(())
}

/// Put the entries in archive order and return how many come before the ones that change all
/// the time. Sorted, except that databases and `state::changes_often` paths go last (sorted
/// among themselves): the settled part of the tree then makes the same leading bytes in every
/// archive, which the next backup neither recompresses nor hashes again (`archive::sha`).
/// Still a valid tar order: a directory that goes last has only such entries below it.
pub fn archive_order(entries: &mut Vec<Entry>) -> usize {
    let (late, mut early): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries)
        .into_iter()
        .partition(|e| e.kind == Kind::Sqlite || state::changes_often(&e.rel));
    let settled = early.len();
    early.extend(late);
    *entries = early;
    settled
}

/// What of a WAL's stat counts: not its ctime, as SQLite running as root fchown()s the WAL on
/// every open (ours included), which moves the ctime and nothing else.
fn wal_identity(stat: StatId) -> StatId {
    StatId {
        ctime_ns: 0,
        ..stat
    }
}

/// A database of the last fingerprint as it is on disk now (its stat and its WAL's), without
/// walking the tree; None when it is gone or no longer a regular file.
pub fn restat_db(root: &Path, prev: &Entry) -> Option<Entry> {
    let path = prev.path_in(root);
    let m = fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.file_type().is_file())?;
    let wal = fs::symlink_metadata(livedb::side_path(&path, "-wal"))
        .ok()
        .map(|w| wal_identity(StatId::of(&w)));
    Some(Entry {
        rel: prev.rel.clone(),
        kind: Kind::Sqlite,
        mode: m.mode() & 0o7777,
        stat: StatId::of(&m),
        target: Vec::new(),
        wal,
    })
}

/// A database file is a whole number of pages, and pages are powers of two from 512 bytes:
/// any other size is not worth opening the file for (most text files, at 511 in 512).
fn could_be_sqlite(size: u64) -> bool {
    size >= 512 && size % 512 == 0
}

/// What the last upload contained: stat-level entries and the logical hash of each database.
#[derive(Debug, Default)]
pub struct Fingerprint {
    pub scan_start_ns: i64,
    pub entries: Vec<Entry>,
    /// Database path (hex of `rel`) -> logical hash.
    pub sqlite: BTreeMap<String, String>,
    /// Racily-clean files (path hex -> SHA-256 of the archived content): their stat can't
    /// vouch for them, their content can.
    pub racy: BTreeMap<String, String>,
}

impl Fingerprint {
    /// Read the binary form (`codec`); None when it is not one this version reads.
    pub fn decode(bytes: &[u8]) -> Option<Fingerprint> {
        codec::decode(bytes)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn by_path(&self) -> HashMap<&[u8], &Entry> {
        self.entries.iter().map(|e| (e.rel.as_slice(), e)).collect()
    }

    /// True when `e` may have changed after it was read at `scan_start_ns` within the same
    /// timestamp tick (git's "racily clean"): its stat can't vouch for its content.
    pub fn racy(&self, e: &Entry) -> bool {
        is_racy(e, self.scan_start_ns)
    }

    /// True when `e` (stat-equal to its entry in this fingerprint) is unchanged: by stat, or
    /// for a racily-clean file by its content hash.
    pub fn vouches_for(&self, e: &Entry, root: &Path) -> bool {
        if !self.racy(e) {
            return true;
        }
        let recorded = self.racy.get(&hex::encode(&e.rel));
        recorded.is_some() && content_hash(&e.path_in(root)).ok().as_ref() == recorded
    }
}

/// Timestamps can be coarse (a kernel tick; 1-2 s on some filesystems): a file whose ctime or
/// mtime is this close to a scan may change again without its stat changing.
pub const RACY_NS: i64 = 2_000_000_000;

/// True for a regular file changed within `RACY_NS` of `scan_start_ns` (or after it).
pub fn is_racy(e: &Entry, scan_start_ns: i64) -> bool {
    e.kind == Kind::File && e.stat.ctime_ns.max(e.stat.mtime_ns) >= scan_start_ns - RACY_NS
}

/// SHA-256 (hex) of a file's content.
pub fn content_hash(path: &Path) -> std::io::Result<String> {
    let mut f = livedb::open_plain(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Create each file (and its parent dirs) under `r`.
    fn files(r: &Path, paths: &[&str]) {
        for p in paths {
            fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            fs::write(r.join(p), "x").unwrap();
        }
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.rel).into_owned())
            .collect()
    }

    #[test]
    fn walk_is_sorted_and_skips_volatile_and_sqlite_side_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        files(
            r,
            &[
                "b/x",
                "a/y",
                "cache/z",
                "tmp/l",
                "g.lock",
                "agents/k.lock.sqlite",
                "openclaw.json.rejected.1",
                "keep.md",
            ],
        );
        let c = Connection::open(r.join("db.sqlite")).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let skip = excludes(&["b/**".to_string()]).unwrap();
        let t = walk(r, &skip, None).unwrap();
        assert_eq!(
            names(&t.entries),
            ["", "a", "a/y", "agents", "b", "db.sqlite", "keep.md"]
        );
        let db = t.entries.iter().find(|e| e.rel == b"db.sqlite").unwrap();
        assert_eq!(db.kind, Kind::Sqlite);
        assert!(
            db.wal.is_some(),
            "the WAL's stat is part of the database's identity"
        );
        drop(c);
    }

    #[test]
    fn archive_order_puts_databases_config_and_sessions_last() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        files(
            r,
            &[
                "agents/main/agent/models.json",
                "agents/main/sessions/s1.jsonl",
                "media/a.bin",
                "openclaw.json",
                "openclaw.json.bak",
                "workspace/notes.md",
            ],
        );
        fs::create_dir_all(r.join("state")).unwrap();
        Connection::open(r.join("state/openclaw.sqlite"))
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let mut t = walk(r, &GlobSet::empty(), None).unwrap();
        let settled = archive_order(&mut t.entries);
        assert_eq!(
            names(&t.entries),
            [
                "",
                "agents",
                "agents/main",
                "agents/main/agent",
                "agents/main/agent/models.json",
                "media",
                "media/a.bin",
                "state",
                "workspace",
                "workspace/notes.md",
                // Changes all the time:
                "agents/main/sessions",
                "agents/main/sessions/s1.jsonl",
                "openclaw.json",
                "openclaw.json.bak",
                "state/openclaw.sqlite",
            ]
        );
        assert_eq!(settled, 10);
    }
}
