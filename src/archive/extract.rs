//! Extract a tar.gz into an empty staging dir, refusing anything that could write outside it.
//!
//! The archive comes from a remote store, so it is hostile until proven otherwise (F5/F6 in
//! `facts/backup.md`). Rules, each failing with the entry's name:
//! - paths must be relative, without `..`, and under `.openclaw/`;
//! - no entry may go through a symlink extracted before it (the two-step escape), and files are
//!   created with `O_EXCL | O_NOFOLLOW`, so nothing is ever written through a link;
//! - symlinks must stay inside `.openclaw/` (lexically, and by `realpath` at the end);
//! - hard links only to a regular file extracted before, inside `.openclaw/`;
//! - device nodes, FIFOs and other special entries are refused; setuid/setgid bits dropped.
//!
//! `verify` runs the same checks and reads every byte without writing anything.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tar::EntryType;

use crate::archive::decode::{self, Chunks};
use crate::archive::ROOT;
use crate::openclaw::state;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Entries left out on purpose (caches, `-shm`).
    pub skipped: u64,
    /// The archive's gzip members: (offset, compressed length, uncompressed length, BLAKE3
    /// of the uncompressed bytes), when every member is one of ours (else empty). Lets a
    /// restore seed the backup's member cache.
    #[serde(skip)]
    pub members: Vec<(u64, u64, u64, String)>,
}

/// Extract `archive` into `staging` (must exist and be empty); the state lands in
/// `staging/.openclaw`.
pub fn extract(archive: &Path, staging: &Path) -> Result<Stats> {
    if fs::read_dir(staging)
        .with_context(|| format!("cannot open {}", staging.display()))?
        .next()
        .is_some()
    {
        bail!("internal: staging dir {} is not empty", staging.display());
    }
    run(archive, Some(staging))
}

/// Check `archive` end to end (gzip CRCs, tar structure, every rule above) without writing.
pub fn verify(archive: &Path) -> Result<Stats> {
    run(archive, None)
}

fn run(archive: &Path, staging: Option<&Path>) -> Result<Stats> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (tx, rx) = sync_channel(4);
    let (back_tx, back_rx) = sync_channel(6);
    std::thread::scope(|s| {
        let decoder = s.spawn(move || decode::decode(file, tx, back_rx));
        let writers = Writers::start(s, if staging.is_some() { WRITERS } else { 0 });
        let mut x = Extractor {
            staging,
            stats: Stats::default(),
            symlinks: HashSet::new(),
            dirs: Vec::new(),
            links_to_check: Vec::new(),
            writers,
        };
        let parsed = x.parse(Chunks::new(rx, back_tx), total);
        let written = x.writers.finish();
        let members = decoder
            .join()
            .map_err(|_| anyhow!("the archive decoder panicked"))?;
        parsed?;
        written?;
        x.finish()?;
        x.stats.members = members.unwrap_or_default();
        Ok(x.stats)
    })
}

/// Regular files up to this size are written by the writer threads; bigger ones (streamed)
/// by the parser itself.
const HANDOFF_MAX: u64 = 1 << 20;
/// Writer threads: creating files is mostly system time, which two cores share.
const WRITERS: usize = 2;

/// A file for a writer thread to create. Creating a file takes its directory's lock, and on
/// ext4 soon after many deletions the inode search under that lock can be slow: writers
/// creating files in one directory side by side spent more CPU spinning on each other's lock
/// than writing. So each directory's files go to one writer (see `Writers::write`).
struct FileJob {
    dest: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: u64,
}

/// Threads that create files handed to them. The first error is kept and reported by `check`
/// or `finish`; `barrier` waits until every handed-over file exists (before a hard link).
struct Writers {
    /// One queue per writer thread; empty when files are written on the calling thread.
    txs: Vec<SyncSender<FileJob>>,
    state: Arc<(Mutex<WriterState>, Condvar)>,
}

#[derive(Default)]
struct WriterState {
    pending: usize,
    error: Option<String>,
}

impl Writers {
    fn start<'scope>(s: &'scope std::thread::Scope<'scope, '_>, n: usize) -> Writers {
        let state = Arc::new((Mutex::new(WriterState::default()), Condvar::new()));
        let mut txs = Vec::new();
        for _ in 0..n {
            let (tx, rx) = sync_channel::<FileJob>(4);
            txs.push(tx);
            let state = Arc::clone(&state);
            s.spawn(move || {
                for job in rx {
                    let r = write_file(&job.dest, &mut &job.data[..], job.mode, job.mtime);
                    let (lock, cv) = &*state;
                    if let Ok(mut st) = lock.lock() {
                        st.pending -= 1;
                        if let Err(e) = r {
                            st.error.get_or_insert(format!("{e:#}"));
                        }
                        cv.notify_all();
                    }
                }
            });
        }
        Writers { txs, state }
    }

    /// Hand a file over, or write it here when there are no writer threads.
    fn write(&self, job: FileJob) -> Result<()> {
        self.check()?;
        if self.txs.is_empty() {
            return write_file(&job.dest, &mut &job.data[..], job.mode, job.mtime).map(drop);
        }
        // Files of one directory always go to the same writer.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        job.dest.parent().hash(&mut h);
        let tx = &self.txs[(h.finish() % self.txs.len() as u64) as usize];
        if let Ok(mut st) = self.state.0.lock() {
            st.pending += 1;
        }
        tx.send(job)
            .map_err(|_| anyhow!("the file writer threads stopped"))
    }

    fn check(&self) -> Result<()> {
        match self.state.0.lock() {
            Ok(st) => match &st.error {
                Some(e) => bail!("{e}"),
                None => Ok(()),
            },
            Err(_) => bail!("a file writer thread panicked"),
        }
    }

    /// Wait until every handed-over file is written.
    fn barrier(&self) -> Result<()> {
        let (lock, cv) = &*self.state;
        let mut st = lock
            .lock()
            .map_err(|_| anyhow!("a file writer thread panicked"))?;
        while st.pending > 0 {
            st = cv
                .wait(st)
                .map_err(|_| anyhow!("a file writer thread panicked"))?;
        }
        drop(st);
        self.check()
    }

    /// Stop the threads (they finish what they were handed) and report their first error.
    fn finish(&mut self) -> Result<()> {
        let r = self.barrier();
        self.txs.clear();
        r
    }
}

/// Create `dest` (never through a symlink, never over an existing file) with `data`, `mode`
/// and `mtime`; returns the bytes written.
fn write_file(dest: &Path, data: &mut dyn Read, mode: u32, mtime: u64) -> Result<u64> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .with_context(|| format!("cannot create {} (duplicate entry?)", dest.display()))?;
    let n = io::copy(data, &mut f).context("cannot extract the data")?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))?;
    Ok(n)
}

/// Split an archive path into components, refusing absolute paths, `..` and anything outside
/// `.openclaw/`. `./` prefixes (GNU tar run as `tar czf x ./.openclaw`) are fine.
fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        bail!("absolute path refused");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => bail!("'..' in the path refused"),
            c => out.push(c.to_vec()),
        }
    }
    if out.first().map(Vec::as_slice) != Some(ROOT.as_bytes()) {
        bail!("outside {ROOT}/ refused");
    }
    Ok(out)
}

struct Extractor<'a> {
    staging: Option<&'a Path>,
    stats: Stats,
    /// Symlinks created so far (relative components joined with '/').
    symlinks: HashSet<Vec<u8>>,
    /// Directory modes and mtimes, applied at the end (children change a dir's mtime, and a
    /// read-only dir would refuse its children).
    dirs: Vec<(PathBuf, u32, u64)>,
    /// Symlinks whose target has `..`: checked with realpath once everything exists.
    links_to_check: Vec<PathBuf>,
    writers: Writers,
}

impl Extractor<'_> {
    /// Every entry of the tar stream `r`, checked and (with a staging dir) extracted.
    fn parse(&mut self, r: Chunks, total: u64) -> Result<()> {
        let mut tar = tar::Archive::new(r);
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut seen_root = false;
        for entry in tar.entries().context("the archive is not a tar.gz")? {
            let mut entry = entry.context("the archive is corrupt or truncated")?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let comps = components(&raw).with_context(|| format!("archive entry '{name}'"))?;
            seen_root = true;
            self.entry(&mut entry, &comps)
                .with_context(|| format!("archive entry '{name}'"))?;
            if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                tracing::info!(
                    "restore: {} files, {} MB extracted, {:.0} MB/s (archive {} MB)",
                    self.stats.files,
                    self.stats.bytes >> 20,
                    self.stats.bytes as f64 / 1e6 / started.elapsed().as_secs_f64(),
                    total >> 20
                );
            }
        }
        // Anything after the tar end blocks must still be valid gzip: read it all (CRCs checked).
        io::copy(&mut tar.into_inner(), &mut io::sink())
            .context("the archive is corrupt or truncated after the tar end")?;
        if !seen_root {
            bail!("the archive holds no {ROOT}/ entries");
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, comps: &[Vec<u8>]) -> Result<()> {
        let ty = entry.header().entry_type();
        if skipped_on_restore(comps, ty) {
            self.stats.skipped += 1;
            return Ok(());
        }
        // No entry may be at, or go through, a symlink we created.
        if let Some(link) = self.symlink_on_the_way(comps) {
            bail!(
                "refused: it goes through the symlink '{}'",
                String::from_utf8_lossy(&link)
            );
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        let mtime = entry.header().mtime().unwrap_or(0);
        let dest = self.staging.map(|s| join(s, comps));
        match ty {
            EntryType::Directory => {
                if let Some(d) = &dest {
                    fs::create_dir_all(d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    self.dirs.push((d.clone(), mode, mtime));
                }
                self.stats.dirs += 1;
            }
            t if t.is_file() => {
                let n = self.file(entry, dest, mode, mtime)?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            EntryType::Symlink => {
                self.symlink(entry, comps, dest, mtime)?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => {
                self.hard_link(entry, dest)?;
                self.stats.files += 1;
            }
            EntryType::Char | EntryType::Block => bail!("refused: device node"),
            EntryType::Fifo => bail!("refused: FIFO"),
            other => bail!("refused: unsupported entry type {other:?}"),
        }
        Ok(())
    }

    /// The first symlink created so far that `comps` is at or goes through.
    fn symlink_on_the_way(&self, comps: &[Vec<u8>]) -> Option<Vec<u8>> {
        let mut prefix = Vec::new();
        for c in comps {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c);
            if self.symlinks.contains(&prefix) {
                return Some(prefix);
            }
        }
        None
    }

    /// A regular file: small ones go to a writer thread, big ones are written here (or only
    /// read, when checking). Returns its size.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dest: Option<PathBuf>,
        mode: u32,
        mtime: u64,
    ) -> Result<u64> {
        Ok(match dest {
            Some(dest) if entry.size() <= HANDOFF_MAX => {
                make_parent(&dest)?;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut data)
                    .context("cannot read the data")?;
                let n = data.len() as u64;
                self.writers.write(FileJob {
                    dest,
                    data,
                    mode,
                    mtime,
                })?;
                n
            }
            Some(dest) => {
                make_parent(&dest)?;
                write_file(&dest, entry, mode, mtime)?
            }
            None => io::copy(entry, &mut io::sink()).context("cannot read the data")?,
        })
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        comps: &[Vec<u8>],
        dest: Option<PathBuf>,
        mtime: u64,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| anyhow!("symlink without a target"))?
            .into_owned();
        check_link_target(comps, &target)?;
        if let Some(d) = &dest {
            make_parent(d)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), d)
                .with_context(|| format!("cannot create the symlink {}", d.display()))?;
            let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
            let _ = nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                d.as_path(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
            if target.split(|&b| b == b'/').any(|c| c == b"..") {
                self.links_to_check.push(d.clone());
            }
        }
        self.symlinks.insert(comps.join(&b'/'));
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dest: Option<PathBuf>,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| anyhow!("hard link without a target"))?
            .into_owned();
        let tcomps = components(&target).context("hard link target")?;
        let tjoined = tcomps.join(&b'/');
        if self.symlink_on_the_way(&tcomps).is_some() {
            bail!("refused: hard link target goes through a symlink");
        }
        let (Some(d), Some(s)) = (&dest, self.staging) else {
            return Ok(());
        };
        // The target may still be with a writer thread.
        self.writers.barrier()?;
        let src = join(s, &tcomps);
        let meta = fs::symlink_metadata(&src).with_context(|| {
            format!(
                "hard link to '{}', which is not in the archive before it",
                String::from_utf8_lossy(&tjoined)
            )
        })?;
        if !meta.is_file() {
            bail!("refused: hard link to something that is not a regular file");
        }
        make_parent(d)?;
        fs::hard_link(&src, d)
            .with_context(|| format!("cannot create the hard link {}", d.display()))
    }

    fn finish(&mut self) -> Result<()> {
        let Some(staging) = self.staging else {
            return Ok(());
        };
        let root = staging.join(ROOT);
        if !root.is_dir() {
            bail!("the archive holds no {ROOT}/ directory");
        }
        let canon_root = fs::canonicalize(&root)?;
        for l in &self.links_to_check {
            if let Ok(real) = fs::canonicalize(l) {
                if !real.starts_with(&canon_root) {
                    bail!(
                        "archive entry '{}': refused: the symlink resolves outside {ROOT}/",
                        l.display()
                    );
                }
            }
        }
        for (d, mode, mtime) in self.dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(*mode))
                .with_context(|| format!("cannot set the mode of {}", d.display()))?;
            let t = nix::sys::time::TimeSpec::new(*mtime as i64, 0);
            let _ = nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                d.as_path(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
        Ok(())
    }
}

fn join(base: &Path, comps: &[Vec<u8>]) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// Parents missing from the archive (tar files need no dir entries) are created 0755.
fn make_parent(d: &Path) -> Result<()> {
    if let Some(parent) = d.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

/// A symlink must point inside `.openclaw/`: relative, and never climbing above it.
fn check_link_target(comps: &[Vec<u8>], target: &[u8]) -> Result<()> {
    if target.is_empty() {
        bail!("refused: symlink with an empty target");
    }
    if target.first() == Some(&b'/') {
        bail!(
            "refused: symlink to the absolute path '{}'",
            String::from_utf8_lossy(target)
        );
    }
    // Resolve lexically from the link's directory.
    let mut at: Vec<&[u8]> = comps[..comps.len() - 1].iter().map(Vec::as_slice).collect();
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if at.len() <= 1 {
                    bail!(
                        "refused: symlink to '{}' points outside {ROOT}/",
                        String::from_utf8_lossy(target)
                    );
                }
                at.pop();
            }
            c => at.push(c),
        }
    }
    Ok(())
}

/// Regenerable dirs of seed archives, and shared-memory index files (rebuilt by SQLite).
fn skipped_on_restore(comps: &[Vec<u8>], ty: EntryType) -> bool {
    let regenerable = comps.len() >= 2
        && state::SKIP_ON_RESTORE
            .iter()
            .any(|s| s.as_bytes() == comps[1]);
    regenerable || (comps.last().is_some_and(|c| c.ends_with(b"-shm")) && ty.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b".openclaw/../x").is_err());
        assert!(components(b"other/x").is_err());
        assert_eq!(
            components(b"./.openclaw/a/").unwrap(),
            vec![b".openclaw".to_vec(), b"a".to_vec()]
        );
        let link = vec![b".openclaw".to_vec(), b"a".to_vec(), b"l".to_vec()];
        assert!(check_link_target(&link, b"../b").is_ok());
        assert!(check_link_target(&link, b"../../x").is_err());
        assert!(check_link_target(&link, b"/etc").is_err());
    }
}
