//! Snapshot: a consistent, deterministic view of the state dir, and its change fingerprint.
//!
//! - `walk` lists the tree in sorted (byte) order with stable metadata, leaving out OpenClaw's
//!   volatile paths, the user's globs and the `-wal`/`-shm`/`-journal` of SQLite databases.
//! - SQLite databases (recognised by their 16-byte header, not by name) are never archived raw:
//!   `copy_sqlite` keeps a consistent copy of each, refreshed page by page in one transaction.
//! - `Fingerprint` is what the last upload contained, at stat level (path, size, mtime, ctime,
//!   inode, mode), plus a logical hash of each database that ignores the gateway's lease rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::openclaw::state;

mod codec;

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A SQLite database: archived as a consistent copy (`copy_sqlite`), never byte-for-byte.
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
    classify(root, &mut tree, prev);
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
pub fn classify(root: &Path, tree: &mut Tree, prev: Option<&HashMap<&[u8], &Entry>>) {
    for e in tree.entries.iter_mut().filter(|e| e.kind == Kind::File) {
        let known = prev
            .and_then(|p| p.get(e.rel.as_slice()))
            .filter(|p| p.stat == e.stat && matches!(p.kind, Kind::File | Kind::Sqlite))
            .map(|p| p.kind);
        e.kind = match known {
            Some(k) => k,
            None if could_be_sqlite(e.stat.size) && is_sqlite(&e.path_in(root)) => Kind::Sqlite,
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
        return;
    }
    let mut wal_stats: HashMap<Vec<u8>, StatId> = HashMap::new();
    entries.retain(|e| {
        for suffix in state::SQLITE_SIDE_SUFFIXES {
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
    let wal = fs::symlink_metadata(wal_path(&path))
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

/// True when the file starts with the SQLite 3 header.
pub fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == SQLITE_MAGIC
}

/// Bring `dst` up to a consistent single-file copy of the live database `src`, without the
/// gateway's lease rows, in journal mode DELETE, with normalised write counters.
///
/// `dst` is kept between backups (the meta dir's copies), so this is incremental: all pages
/// are read in one statement over `sqlite_dbpage` (one read transaction: consistent; a WAL
/// reader never blocks the gateway's writers) and only the pages that differ from `dst` are
/// written. A 100 MB database with a few changed rows costs a read of its pages instead of a
/// fresh 100 MB file. Without the `sqlite_dbpage` table (an SQLite built without it) the copy
/// is made whole through the online backup API.
pub fn copy_sqlite(src: &Path, dst: &Path) -> Result<()> {
    let ctx = || format!("cannot copy the SQLite database {}", src.display());
    // Read-only: closing a read-write connection last could checkpoint and delete the WAL,
    // i.e. change the state dir we are only meant to read.
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(ctx)?;
    from.busy_timeout(Duration::from_secs(10))
        .with_context(ctx)?;
    // Pages only pass through: a small cache keeps the backup's memory flat.
    from.execute_batch("PRAGMA cache_size = -256")
        .with_context(ctx)?;
    // Side files of the copy are leftovers of an interrupted run; the page refresh below
    // rewrites whatever they would have restored.
    for suffix in state::SQLITE_SIDE_SUFFIXES {
        let _ = fs::remove_file(side_path(dst, suffix));
    }
    match refresh_pages(&from, dst) {
        Ok(written) => tracing::debug!(
            "backup: {written} changed pages of {} copied",
            src.display()
        ),
        Err(e) if e.to_string().contains("no such table") => {
            tracing::debug!("backup: no sqlite_dbpage ({e}); copying through the backup API");
            backup_api_copy(&from, dst).with_context(ctx)?;
        }
        Err(e) => return Err(e).with_context(ctx),
    }
    drop(from);
    let to = Connection::open(dst).with_context(ctx)?;
    // A scratch copy: the archive made from it is what gets synced, not the copy (an
    // interrupted write is repaired by the next refresh).
    to.execute_batch(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -256; PRAGMA journal_mode = MEMORY",
    )
    .with_context(ctx)?;
    state::clear_owner_leases(&to).with_context(ctx)?;
    to.close().map_err(|(_, e)| e).with_context(ctx)?;
    normalise_counters(dst).with_context(ctx)?;
    Ok(())
}

/// Make `dst` page-for-page equal to what `from` holds (one statement: one snapshot), with
/// page 1 in journal mode DELETE and normalised counters. Returns the pages written.
fn refresh_pages(from: &Connection, dst: &Path) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let out = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dst)
        .with_context(|| format!("cannot write {}", dst.display()))?;
    let old_len = out.metadata()?.len();
    let mut st = from.prepare("SELECT pgno, data FROM sqlite_dbpage")?;
    let mut rows = st.query([])?;
    // The old copy is read in runs of pages to compare against.
    const RUN: u64 = 256;
    const SPAN_MAX: usize = 1 << 20;
    let mut old = Vec::new();
    let mut old_first = 0u64; // first page number held in `old` (0: none)
    let mut page_size = 0u64;
    let (mut pages, mut written) = (0u64, 0u64);
    let mut first = Vec::new();
    // Changed pages in a row are written with one call (a first copy is all changed).
    let mut span: Vec<u8> = Vec::new();
    let mut span_at = 0u64;
    let flush = |span: &mut Vec<u8>, at: u64| -> std::io::Result<()> {
        if !span.is_empty() {
            out.write_all_at(span, at)?;
            span.clear();
        }
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let pgno = row.get::<_, i64>(0)? as u64;
        let data = row.get_ref(1)?.as_blob()?;
        if page_size == 0 {
            page_size = data.len() as u64;
            old = vec![0u8; (RUN * page_size) as usize];
        }
        if pgno != pages + 1 || data.len() as u64 != page_size {
            bail!(
                "sqlite_dbpage returned page {pgno} of {} bytes after page {pages}",
                data.len()
            );
        }
        pages = pgno;
        if pgno == 1 {
            // Patched and compared at the end, once the page count is known.
            first = data.to_vec();
            continue;
        }
        let at = (pgno - 1) * page_size;
        if old_first == 0 || pgno >= old_first + RUN {
            old_first = pgno;
            let have = old_len.saturating_sub(at).min(RUN * page_size) as usize;
            out.read_exact_at(&mut old[..have], at)?;
            old[have..].fill(0);
        }
        let i = ((pgno - old_first) * page_size) as usize;
        if at >= old_len || old[i..i + page_size as usize] != *data {
            if span_at + span.len() as u64 != at || span.len() >= SPAN_MAX {
                flush(&mut span, span_at)?;
                span_at = at;
            }
            span.extend_from_slice(data);
            written += 1;
        }
    }
    flush(&mut span, span_at)?;
    drop(rows);
    if pages == 0 {
        bail!("sqlite_dbpage returned no pages");
    }
    set_header(&mut first, pages);
    let mut was = vec![0u8; page_size as usize];
    if old_len < page_size || {
        out.read_exact_at(&mut was, 0)?;
        was != first
    } {
        out.write_all_at(&first, 0)?;
        written += 1;
    }
    if old_len != pages * page_size {
        out.set_len(pages * page_size)?;
    }
    Ok(written)
}

/// The whole-file fallback: the online backup API into a fresh `dst` (-1 = all pages in one
/// step, i.e. one read transaction), retried while the source is locked.
fn backup_api_copy(from: &Connection, dst: &Path) -> Result<()> {
    use rusqlite::backup::StepResult;
    let _ = fs::remove_file(dst);
    let mut to = Connection::open(dst)?;
    to.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -256")?;
    {
        let backup = rusqlite::backup::Backup::new(from, &mut to)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                r @ (StepResult::More | StepResult::Busy | StepResult::Locked)
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::debug!("backup: the database is busy ({r:?}); retrying");
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => bail!("the database stayed busy ({other:?})"),
            }
        }
    }
    let _: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    Ok(())
}

/// Page 1 of a copy: journal mode DELETE (bytes 18-19 = 1), the file change counter (24) and
/// version-valid-for (92) both 1, so equal content copied along different histories (live DB
/// vs restored one) gives equal bytes and the header stays valid; the in-header database size
/// (28) set to `pages`.
fn set_header(page1: &mut [u8], pages: u64) {
    page1[18] = 1;
    page1[19] = 1;
    page1[24..28].copy_from_slice(&1u32.to_be_bytes());
    page1[92..96].copy_from_slice(&1u32.to_be_bytes());
    page1[28..32].copy_from_slice(&(pages as u32).to_be_bytes());
}

/// Normalise the write counters of a copy after our own writes to it (see `set_header`).
fn normalise_counters(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(db)?;
    f.write_all_at(&1u32.to_be_bytes(), 24)?;
    f.write_all_at(&1u32.to_be_bytes(), 92)?;
    Ok(())
}

/// A hash (BLAKE3) of what a database holds, blind to the per-process lease rows, so it is
/// equal for copies where only the gateway's heartbeat moved.
///
/// Page level, as it must be cheap (it runs on every check while the gateway heartbeats): every
/// page of the file except free pages and the pages of the tables holding process rows (and
/// their indexes), page 1's write counters and journal-mode bytes masked; those tables then
/// count by their remaining rows. A database with committed frames still in its WAL is hashed
/// row by row instead (slower, same purpose).
pub fn logical_hash(db: &Path) -> Result<String> {
    let ctx = || format!("cannot read the SQLite database {}", db.display());
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(ctx)?;
    conn.busy_timeout(Duration::from_secs(10))
        .with_context(ctx)?;
    // One read transaction for a consistent view.
    conn.execute_batch("BEGIN").with_context(ctx)?;
    let schema: Vec<(String, String, String, String)> = {
        let mut st = conn
            .prepare(
                "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name",
            )
            .with_context(ctx)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .with_context(ctx)?;
        rows.collect::<rusqlite::Result<_>>().with_context(ctx)?
    };
    let mut h = blake3::Hasher::new();
    let wal_has_frames = fs::metadata(wal_path(db)).is_ok_and(|m| m.len() > 0);
    if wal_has_frames {
        h.update(b"rows\0");
        for (ty, name, _, sql) in &schema {
            h.update(format!("{ty}\0{name}\0{sql}\0").as_bytes());
        }
        for (ty, name, _, _) in &schema {
            if ty == "table" {
                hash_rows(&conn, name, &mut h).with_context(ctx)?;
            }
        }
        return Ok(h.finalize().to_hex().to_string());
    }
    // Pages of the tables with process rows, and of their indexes: left out of the page hash.
    let mut skip = HashSet::new();
    let special: Vec<&str> = schema
        .iter()
        .filter(|(ty, _, tbl, _)| ty == "table" && state::has_process_rows(tbl))
        .map(|(_, name, _, _)| name.as_str())
        .collect();
    for (_, name, tbl, _) in &schema {
        if special.contains(&tbl.as_str()) {
            let mut st = conn
                .prepare("SELECT pageno FROM dbstat WHERE name = ?1")
                .with_context(ctx)?;
            let pages = st
                .query_map([name], |r| r.get::<_, i64>(0))
                .with_context(ctx)?;
            for p in pages {
                skip.insert(p.with_context(ctx)? as u64);
            }
        }
    }
    let mut file = fs::File::open(db).with_context(ctx)?;
    let mut head = [0u8; 100];
    file.read_exact(&mut head).with_context(ctx)?;
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => n as usize,
    };
    if page_size < 512 || !page_size.is_power_of_two() {
        anyhow::bail!("{}: bad page size {page_size}", ctx());
    }
    let pages = fs::metadata(db).with_context(ctx)?.len() / page_size as u64;
    free_pages(&file, &head, page_size, pages, &mut skip).with_context(ctx)?;
    h.update(b"pages\0");
    h.update(&(page_size as u64).to_le_bytes());
    h.update(&pages.to_le_bytes());
    // Read in runs of pages; hash each kept page with its number.
    use std::os::unix::fs::FileExt;
    const RUN: usize = 256;
    let mut buf = vec![0u8; RUN * page_size];
    let mut p = 1u64;
    while p <= pages {
        let n = (RUN as u64).min(pages - p + 1) as usize;
        let bytes = &mut buf[..n * page_size];
        file.read_exact_at(bytes, (p - 1) * page_size as u64)
            .with_context(ctx)?;
        if p == 1 {
            // Journal mode (18-19), change counter (24-27), version-valid-for (92-95).
            for i in [18, 19, 24, 25, 26, 27, 92, 93, 94, 95] {
                bytes[i] = 0;
            }
        }
        let mut run_start: Option<usize> = None;
        for i in 0..=n {
            let keep = i < n && !skip.contains(&(p + i as u64));
            match (keep, run_start) {
                (true, None) => run_start = Some(i),
                (false, Some(s)) => {
                    h.update(&(p + s as u64).to_le_bytes());
                    h.update(&bytes[s * page_size..i * page_size]);
                    run_start = None;
                }
                _ => {}
            }
        }
        p += n as u64;
    }
    for (ty, name, _, sql) in &schema {
        h.update(format!("{ty}\0{name}\0{sql}\0").as_bytes());
    }
    for name in special {
        hash_rows(&conn, name, &mut h).with_context(ctx)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

/// `<db>-wal`.
fn wal_path(db: &Path) -> PathBuf {
    side_path(db, "-wal")
}

/// `<db><suffix>`: one of SQLite's side files.
fn side_path(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Add the free pages (trunk and leaf pages of the freelist, header offset 32) to `out`: their
/// bytes are leftovers, not content.
fn free_pages(
    file: &fs::File,
    head: &[u8; 100],
    page_size: usize,
    pages: u64,
    out: &mut HashSet<u64>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let be = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut trunk = be(head, 32) as u64;
    let mut page = vec![0u8; page_size];
    // Bounded: a corrupt list must not loop.
    for _ in 0..pages {
        if trunk == 0 || trunk > pages || !out.insert(trunk) {
            break;
        }
        file.read_exact_at(&mut page, (trunk - 1) * page_size as u64)?;
        let n = (be(&page, 4) as usize).min(page_size / 4 - 2);
        for i in 0..n {
            out.insert(be(&page, 8 + 4 * i) as u64);
        }
        trunk = be(&page, 0) as u64;
    }
    Ok(())
}

/// Hash the rows of `table` that are not process rows, in rowid/key order.
fn hash_rows(conn: &Connection, table: &str, h: &mut blake3::Hasher) -> rusqlite::Result<()> {
    let filter = state::stable_rows_filter(table)
        .map(|c| format!(" WHERE {c}"))
        .unwrap_or_default();
    let quoted = table.replace('"', "\"\"");
    let mut st = conn.prepare(&format!("SELECT * FROM \"{quoted}\"{filter}"))?;
    let cols = st.column_count();
    let mut rows = st.query([])?;
    h.update(format!("T{table}\0").as_bytes());
    while let Some(row) = rows.next()? {
        h.update(b"R");
        for i in 0..cols {
            use rusqlite::types::ValueRef;
            match row.get_ref(i)? {
                ValueRef::Null => {
                    h.update(b"n");
                }
                ValueRef::Integer(v) => {
                    h.update(b"i");
                    h.update(&v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update(b"r");
                    h.update(&v.to_le_bytes());
                }
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    h.update(b"b");
                    h.update(&(t.len() as u64).to_le_bytes());
                    h.update(t);
                }
            }
        }
    }
    Ok(())
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
    /// The fingerprint saved at `path`; None when there is none or it can't be used (see
    /// `codec`: the next backup then uploads).
    pub fn load(path: &Path) -> Option<Fingerprint> {
        let bytes = fs::read(path).ok()?;
        let fp = codec::decode(&bytes);
        if fp.is_none() {
            tracing::warn!(
                "ignoring the unreadable fingerprint {}; the next backup uploads",
                path.display()
            );
        }
        fp
    }

    /// Save atomically (temp, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::backup::write_atomic(path, &codec::encode(self))
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
    let mut f = fs::File::open(path)?;
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

    /// A WAL database shaped like OpenClaw's state: the gateway's owner lease and 3000 rows.
    fn lease_db(db: &Path) -> Connection {
        let c = Connection::open(db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT,
               heartbeat_at INTEGER, PRIMARY KEY (scope, lease_key));
             INSERT INTO state_leases VALUES ('gateway-owner','global','host-a',1);
             CREATE TABLE memory (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
               INSERT INTO memory (body) SELECT printf('%0500d', i) FROM n;",
        )
        .unwrap();
        c
    }

    #[test]
    fn logical_hash_ignores_the_owner_lease_only() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("state.sqlite");
        let c = lease_db(&db);
        c.execute_batch(
            "INSERT INTO state_leases VALUES ('other','k','y',1);
             DELETE FROM memory WHERE id % 3 = 0;",
        )
        .unwrap();
        let hash = |c: &Connection| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            logical_hash(&db).unwrap()
        };
        let base = hash(&c);
        assert_eq!(base, hash(&c), "stable");
        c.execute(
            "UPDATE state_leases SET heartbeat_at = 99, owner = 'host-b' WHERE scope = 'gateway-owner'",
            [],
        )
        .unwrap();
        assert_eq!(base, hash(&c), "a heartbeat is not a change");
        c.execute(
            "UPDATE state_leases SET heartbeat_at = 2 WHERE scope = 'other'",
            [],
        )
        .unwrap();
        let other = hash(&c);
        assert_ne!(base, other, "other lease rows count");
        c.execute("UPDATE memory SET body = 'x' WHERE id = 1000", [])
            .unwrap();
        assert_ne!(other, hash(&c), "a row change counts");
        // Uncheckpointed WAL frames: hashed row by row, still seen.
        c.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
        let before = logical_hash(&db).unwrap();
        c.execute("UPDATE memory SET body = 'y' WHERE id = 1000", [])
            .unwrap();
        assert_ne!(before, logical_hash(&db).unwrap());
    }

    #[test]
    fn the_bundled_sqlite_has_sqlite_dbpage() {
        // .cargo/config.toml builds it in; without it every copy is a whole backup-API copy.
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        let pages: i64 = c
            .query_row("SELECT count(*) FROM sqlite_dbpage", [], |r| r.get(0))
            .unwrap();
        assert!(pages >= 1);
    }

    #[test]
    fn incremental_copy_equals_a_fresh_one_and_repairs_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("live.sqlite");
        let c = lease_db(&db);
        c.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
        let kept = d.path().join("kept.sqlite");
        let fresh = |name: &str| {
            let p = d.path().join(name);
            copy_sqlite(&db, &p).unwrap();
            fs::read(&p).unwrap()
        };
        copy_sqlite(&db, &kept).unwrap();
        assert_eq!(fs::read(&kept).unwrap(), fresh("a.sqlite"));
        // Changes still in the WAL (never checkpointed), a shrink, and leftovers of an
        // interrupted run: the kept copy catches up to exactly what a fresh copy holds.
        c.execute_batch(
            "UPDATE memory SET body = 'changed' WHERE id % 97 = 0;
             DELETE FROM memory WHERE id > 2500; VACUUM;
             UPDATE state_leases SET heartbeat_at = 2;",
        )
        .unwrap();
        fs::write(side_path(&kept, "-journal"), b"not a journal").unwrap();
        {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new().write(true).open(&kept).unwrap();
            f.write_all_at(&[0xAB; 4096], 8192).unwrap();
        }
        copy_sqlite(&db, &kept).unwrap();
        let bytes = fs::read(&kept).unwrap();
        assert_eq!(bytes, fresh("b.sqlite"));
        assert!(!side_path(&kept, "-journal").exists());
        let k = Connection::open(&kept).unwrap();
        let check: String = k
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let (rows, changed, leases): (i64, i64, i64) = k
            .query_row(
                "SELECT (SELECT count(*) FROM memory), \
                        (SELECT count(*) FROM memory WHERE body = 'changed'), \
                        (SELECT count(*) FROM state_leases)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((rows, changed, leases), (2500, 25, 0));
        let mode: String = k
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        drop(k);
        // The header says how many pages there are, and the file has exactly those.
        let pages = u32::from_be_bytes(bytes[28..32].try_into().unwrap()) as usize;
        assert_eq!(pages * 4096, bytes.len());
        drop(c);
    }

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
