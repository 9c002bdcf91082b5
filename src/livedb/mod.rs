//! Live databases: the one owner of every access to the SQLite files of the state dir.
//!
//! # The rule
//! POSIX byte-range locks belong to the process, and closing **any** descriptor of a file
//! drops **all** of the process's locks on it (SQLite's "How To Corrupt An SQLite Database
//! File", §2.2; `shared/facts/backup.md` §6). A copy is consistent only while SQLite's read
//! lock holds: in WAL mode a read mark (a byte lock in `<db>-shm`), in rollback-journal mode a
//! SHARED lock on `<db>`. Lose it, and a writer checkpoints or commits under the reader: the
//! copy mixes pages of different transactions (a torn b-tree). Hence:
//!
//! > While any SQLite connection of this process may have a live database open, nothing else
//! > in the process opens that database or its `-wal`/`-shm`/`-journal`, and no descriptor of
//! > the database's inode is closed. A file named like a side file is never sniffed.
//!
//! Enforced here, in one place:
//! - [`Live::open`] is the only way to connect to a database of the state dir. It registers
//!   the database (path and inode) before connecting and unregisters once the connection is
//!   closed.
//! - [`open_plain`] is the only way the rest of the code opens a file of the state dir. It
//!   refuses a registered database and the files named like its side files, and the
//!   [`Plain`] it returns is closed under the registry's lock: if its inode is live by then
//!   (the file was renamed or linked over a database after the walk), the descriptor is
//!   parked, i.e. kept open until no connection is left.
//! - [`sniff`] (is this a database?) never opens a file named like a side file. The backup
//!   sniffs every file before its first copy starts (`backup`), so it never meets a live one.
//!
//! The rest of the module is what is done with a live database: a verified copy (`copy`), its
//! logical hash (`hash`), and the thread that makes copies beside the archive (`copier`).

mod copier;
mod copy;
mod hash;

pub use copier::{Copied, Copier};
pub use copy::{copy, quick_check};
pub use hash::logical_hash;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

/// Suffixes of SQLite's side files (WAL, shared memory, rollback journal). Those of a
/// database we copy are never archived: the copy holds their committed content.
pub const SIDE_SUFFIXES: &[&str] = &["-wal", "-shm", "-journal"];

/// The first 16 bytes of every SQLite 3 database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The databases this process has a connection to, and the plain descriptors kept open
/// because they point at one of them.
struct Registry {
    live: Vec<LiveDb>,
    parked: Vec<File>,
}

struct LiveDb {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    parked: Vec::new(),
});

/// The registry, even if a thread panicked while holding it (its data stays meaningful).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// True when `path` is a live database or is named like one of its side files.
    fn covers_name(&self, path: &Path) -> bool {
        let p = path.as_os_str().as_bytes();
        self.live.iter().any(|db| {
            let d = db.path.as_os_str().as_bytes();
            p == d
                || SIDE_SUFFIXES
                    .iter()
                    .any(|s| p.strip_suffix(s.as_bytes()) == Some(d))
        })
    }

    fn covers_inode(&self, dev: u64, ino: u64) -> bool {
        self.live.iter().any(|db| db.dev == dev && db.ino == ino)
    }
}

/// A read-only connection to a live database, registered for as long as it is open.
pub struct Live {
    // Declared first: dropped (closed) before the registration goes.
    conn: Connection,
    _registered: Registration,
}

struct Registration {
    dev: u64,
    ino: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r
            .live
            .iter()
            .position(|db| db.dev == self.dev && db.ino == self.ino)
        {
            r.live.swap_remove(i);
        }
        if r.live.is_empty() {
            // No lock of ours is left to lose: parked descriptors may close now.
            r.parked.clear();
        }
    }
}

impl Live {
    /// Connect to the live database `src`, read-only (closing a read-write connection last
    /// could checkpoint and delete the WAL, i.e. change the state we only read).
    pub fn open(src: &Path) -> Result<Live> {
        let ctx = || format!("cannot open the SQLite database {}", src.display());
        let before = fs::metadata(src).with_context(ctx)?;
        let registered = {
            let mut r = registry();
            r.live.push(LiveDb {
                path: src.to_path_buf(),
                dev: before.dev(),
                ino: before.ino(),
            });
            Registration {
                dev: before.dev(),
                ino: before.ino(),
            }
        };
        let conn = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(ctx)?;
        // The registered inode must be the one SQLite opened: the same before and after.
        let after = fs::metadata(src).with_context(ctx)?;
        if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
            bail!(
                "{} was replaced while being opened; the next backup copies it again",
                src.display()
            );
        }
        conn.busy_timeout(Duration::from_secs(10))
            .with_context(ctx)?;
        // Pages only pass through: a small cache keeps the backup's memory flat.
        conn.execute_batch("PRAGMA cache_size = -256")
            .with_context(ctx)?;
        Ok(Live {
            conn,
            _registered: registered,
        })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// True while this process has a connection to a database of the state dir.
pub fn any_live() -> bool {
    !registry().live.is_empty()
}

/// A plain descriptor of a state-dir file (see the rule above): closed under the registry's
/// lock, or parked while its inode is a live database's.
pub struct Plain {
    file: Option<File>,
    dev: u64,
    ino: u64,
}

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let Some(f) = self.file.take() else { return };
        let mut r = registry();
        if r.covers_inode(self.dev, self.ino) {
            tracing::warn!("a file that became a live database was read; its descriptor stays open until the copy ends");
            r.parked.push(f);
        } else {
            drop(f);
        }
    }
}

/// Open a file of the state dir for reading: the only way to (see the rule above). Refuses a
/// live database and the files named like its side files.
pub fn open_plain(path: &Path) -> io::Result<Plain> {
    let r = registry();
    if r.covers_name(path) {
        return Err(io::Error::other(format!(
            "internal: refused to open {} while this process reads its database (see livedb)",
            path.display()
        )));
    }
    let file = File::open(path)?;
    let m = file.metadata();
    let (dev, ino) = m.as_ref().map_or((0, 0), |m| (m.dev(), m.ino()));
    let plain = Plain {
        file: Some(file),
        dev,
        ino,
    };
    if r.covers_inode(dev, ino) {
        drop(r);
        drop(plain); // parked
        return Err(io::Error::other(format!(
            "internal: {} is a live database under another name",
            path.display()
        )));
    }
    m.map(|_| plain)
}

/// True when the file at `path` starts with the SQLite 3 header. A file named like a side
/// file is never opened: false.
pub fn sniff(path: &Path) -> io::Result<bool> {
    if is_side_name(path) {
        return Ok(false);
    }
    let mut head = [0u8; 16];
    let mut f = open_plain(path)?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// True for a name ending like one of SQLite's side files.
pub fn is_side_name(path: &Path) -> bool {
    let p = path.as_os_str().as_bytes();
    SIDE_SUFFIXES.iter().any(|s| p.ends_with(s.as_bytes()))
}

/// `<db><suffix>`: one of SQLite's side files.
pub fn side_path(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

#[cfg(test)]
mod tests;
