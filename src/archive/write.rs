//! Write a snapshot as a deterministic multi-member tar.gz.
//!
//! Why members: a gzip stream is one long dependency chain, so one small change rewrites every
//! compressed byte after it (Xet then re-uploads ~99 %), and only one core can work on it.
//! Cutting the tar stream into independent gzip members (valid gzip: readers concatenate them)
//! at *stable* boundaries fixes all three: both cores compress, unchanged regions give the same
//! compressed bytes, and the next backup copies those bytes from the last archive instead of
//! compressing again.
//!
//! Boundaries: small entries (under `BIG`) are grouped and a group ends after an entry whose
//! path hash hits an anchor (once the group has `GROUP_MIN` bytes), so an edit changes one
//! group. A big file gets its own members, cut by a gear rolling hash (content-defined chunking)
//! so an insertion changes the chunks around it only. A database gets fixed `DB_CHUNK`s: its
//! pages never move, so fixed cuts isolate changed pages at no hashing cost.
//!
//! Reuse: each member is keyed by the BLAKE3 hash of its uncompressed bytes (`ukey`) and, when
//! the bytes come from files whose stat is unchanged and not "racily clean", by a key over their
//! headers and stat (`skey`), which lets an unchanged region be copied without even reading
//! the files. The index of the last archive's members lives in the meta dir beside a copy
//! (usually a hard link) of that archive.
//!
//! Shared start: while the new archive is the last one's first bytes (cached members at their
//! old offsets; entries that change often come last, see `snapshot::archive_order`), the
//! hasher resumes from the last archive's recorded SHA-256 state (`archive::sha`), and over
//! the file that archive was written from, the writer leaves those bytes in place.
//!
//! Threads: the producer (this module's caller) walks the entries and cuts members; two
//! workers hash each member and compress it unless the cache has it (`gz`); the writer puts
//! members back in order into the file and starts their writeback early (so the final fsync
//! is short); the hasher computes the archive's SHA-256 on its own core.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::archive::gz::Packer;
use crate::archive::sha;
use crate::archive::ROOT;
use crate::snapshot::{Entry, Kind};

/// Entries with at least this much data get their own members.
const BIG: u64 = 512 << 10;
/// A group of small entries is cut at an anchor once it holds this much...
const GROUP_MIN: usize = 128 << 10;
/// ... and always before it would exceed this.
const GROUP_MAX: usize = 1 << 20;
/// Anchor: the path hash is 0 modulo this (≈ 300 KiB groups of typical small files).
const ANCHOR: u64 = 32;
/// Content-defined chunks inside big entries: min / max; average ≈ MIN + 2^MASK_BITS.
const CDC_MIN: usize = 64 << 10;
const CDC_MAX: usize = 1 << 20;
const CDC_MASK: u64 = !(u64::MAX >> 18);
/// Fixed chunks of a database copy (a multiple of every SQLite page size).
const DB_CHUNK: usize = 256 << 10;
/// Member buffers in flight between the producer and the hasher (bounds memory: ≈ 2 × CDC_MAX
/// each). A member taken from the cache holds no buffer once a worker has looked it up, so it
/// gives its token back there and the cheap part of a small change streams with a deep queue.
const BUFFERS: usize = 4;
/// Messages queued between the threads (small; buffers are bounded by `BUFFERS`).
const IN_FLIGHT: usize = 16;
/// Compression workers (the Space has 2 vCPUs).
const WORKERS: usize = 2;
/// Free member buffers kept for reuse (see `Pool`).
const POOL_MAX: usize = 8;
/// The writer asks the kernel to start writing back every this many bytes, so the store's
/// final fsync waits for the tail only.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Member buffers (≈ 1 MiB each) passed back for reuse instead of freed. Freed, they stay in
/// glibc's per-thread arenas (RSS grows well past the live set); with a lower mmap threshold
/// they'd be returned, but every new one then costs page faults (+1.5 s system time on the
/// bench tree). Reuse keeps RSS at the live set with no faults.
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<u8>>>);

/// The capacity of every pooled buffer: the largest member, raw (`CDC_MAX`, `GROUP_MAX` plus
/// the end-of-archive blocks) or packed (stored blocks add 5 bytes per 64 KiB), fits. A
/// buffer then never grows, and the few that exist are reused whole: buffers that grew one at
/// a time left the allocator's arenas fragmented (~5 MB more peak RSS).
const BUF_CAP: usize = CDC_MAX + (64 << 10);

impl Pool {
    /// An empty buffer with at least `cap` bytes of capacity.
    fn get(&self, cap: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAP));
        v.clear();
        v.reserve(cap);
        v
    }

    fn put(&self, v: Vec<u8>) {
        if let Ok(mut p) = self.0.lock() {
            if p.len() < POOL_MAX && v.capacity() >= BUF_CAP {
                p.push(v);
            }
        }
    }
}

/// Identifies how members are made; a different value never reuses old members.
pub fn format_id() -> String {
    format!(
        "oc-members-v3 libdeflate-1 store-if-not-smaller blake3 big={BIG} cdc={CDC_MIN}/{CDC_MAX}/18 db={DB_CHUNK} anchor={ANCHOR}"
    )
}

/// One gzip member of an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRec {
    /// Stat key (see module doc); absent for members holding a database copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skey: Option<String>,
    /// BLAKE3 of the uncompressed bytes (empty when not computed, see `Producer::emit_raw`).
    pub ukey: String,
    pub ulen: u64,
    /// Offset and length of the compressed member in the archive.
    pub coff: u64,
    pub clen: u64,
    /// Last member of a big entry (a stat-keyed chain ends here).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
}

/// The member index of one archive.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Index {
    pub format: String,
    pub size: u64,
    pub members: Vec<MemberRec>,
    /// SHA-256 state after every `sha::EVERY` bytes of the archive (hex; see `archive::sha`).
    #[serde(default)]
    pub sha_states: Vec<String>,
    /// The archive file this index describes, as it was when the index was written: a cache
    /// file changed since then (same size or not) is not used.
    #[serde(default)]
    pub file: Option<FileId>,
    /// Another file holding this archive's first `same` bytes: the archive it was written
    /// from (the cache at the time), or a spare copy written beside it.
    #[serde(default)]
    pub prev: Option<Prev>,
    /// Older files sharing this archive's first `same` bytes: the cache's `prev` and `older`,
    /// each cut to what this archive shares with the cache. A store that keeps N versions
    /// offers the oldest to be written over, which is N-1 archives back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub older: Vec<Prev>,
}

/// How many older files an index remembers (a store keeps at most a few versions locally).
const OLDER: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prev {
    pub file: FileId,
    pub same: u64,
    /// Set when the file was never fsynced (a spare copy): its bytes are only trusted during
    /// the boot that wrote them, while the page cache holds them (see `this_boot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

/// An unsynced file is trusted only during the boot that wrote it.
fn trusted(p: &Prev) -> bool {
    p.boot.is_none() || p.boot == this_boot()
}

/// This kernel boot's id. Written but unsynced bytes survive any process crash (the page cache
/// has them) but not a machine crash, which always means a new boot.
pub fn this_boot() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

/// What identifies a file's content without reading it: inode, size, mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileId {
    pub fn of(path: &Path) -> io::Result<FileId> {
        Ok(FileId::from_meta(&fs::metadata(path)?))
    }

    fn from_meta(m: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        }
    }
}

/// The last archive and its index: where unchanged members are copied from.
pub struct Cache {
    file: File,
    members: Vec<MemberRec>,
    /// Recorded SHA-256 states of the cache archive (empty: hash from the start).
    sha_states: Vec<sha::State>,
    /// The cache archive's identity, and its own predecessor's (see `Index::prev`).
    id: Option<FileId>,
    prev: Option<Prev>,
    older: Vec<Prev>,
    by_skey: HashMap<String, usize>,
    by_ukey: HashMap<String, usize>,
}

impl Cache {
    /// Open the cache if it matches the current format and its archive has the indexed size;
    /// otherwise None (the backup then compresses everything, which is always correct).
    pub fn open(archive: &Path, index: &Path) -> Option<Cache> {
        let idx: Index = serde_json::from_slice(&fs::read(index).ok()?).ok()?;
        let file = File::open(archive).ok()?;
        // The open file's own stat: size, and identity when the index recorded one.
        let now = FileId::from_meta(&file.metadata().ok()?);
        let changed = idx.file.is_some_and(|f| f != now);
        if idx.format != format_id() || now.size != idx.size || changed {
            tracing::debug!(
                "member cache {} does not match; not reusing",
                archive.display()
            );
            return None;
        }
        // States are only trusted for a file known unchanged since they were recorded.
        let sha_states: Vec<sha::State> = match idx.file {
            Some(_) => idx
                .sha_states
                .iter()
                .map_while(|h| sha::state_from_hex(h))
                .take((idx.size / sha::EVERY) as usize)
                .collect(),
            None => Vec::new(),
        };
        let mut by_skey = HashMap::new();
        let mut by_ukey = HashMap::new();
        for (i, m) in idx.members.iter().enumerate() {
            if let Some(s) = &m.skey {
                by_skey.insert(s.clone(), i);
            }
            if !m.ukey.is_empty() {
                by_ukey.entry(m.ukey.clone()).or_insert(i);
            }
        }
        Some(Cache {
            file,
            members: idx.members,
            sha_states,
            id: idx.file,
            prev: idx.prev.filter(trusted),
            older: idx.older.into_iter().filter(trusted).collect(),
            by_skey,
            by_ukey,
        })
    }

    /// The cache archive's identity as its index recorded it (None: not known, e.g. an old
    /// index).
    pub fn id(&self) -> Option<FileId> {
        self.id
    }

    /// The file holding the cache archive's first bytes, besides the cache itself (see
    /// `Index::prev`): the one the next archive is best written over.
    pub fn prev_file(&self) -> Option<FileId> {
        self.prev.as_ref().map(|p| p.file)
    }

    /// Every file known to share the cache archive's first bytes, with how many.
    fn sharers(&self) -> impl Iterator<Item = &Prev> {
        self.prev.iter().chain(self.older.iter())
    }

    /// The cached member with these uncompressed bytes, if any.
    fn by_content(&self, ukey: &str, ulen: u64) -> Option<usize> {
        self.by_ukey
            .get(ukey)
            .copied()
            .filter(|&i| self.members[i].ulen == ulen)
    }
}

/// What to archive.
pub struct Source<'a> {
    /// The state dir (archived as `.openclaw/`).
    pub root: &'a Path,
    pub entries: &'a [Entry],
    /// `entries[..settled]` rarely change (see `snapshot::archive_order`): a member ends there,
    /// so the members before it never depend on the entries after.
    pub settled: usize,
    /// The consistent copy of a database, by entry path (may wait for it to be made).
    pub sqlite_copy: &'a (dyn Fn(&[u8]) -> Result<PathBuf> + Sync),
    /// Files changed at or after this time (ns) can't be trusted by stat (racily clean).
    pub racy_since_ns: i64,
    /// Files changed at or after this time (ns) are racily clean for the *next* backup: their
    /// archived content is hashed (`Written::racy`).
    pub hash_since_ns: i64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    pub members: u64,
    pub reused_members: u64,
    /// Members copied without reading their files at all.
    pub reused_by_stat: u64,
    /// Leading bytes of the archive not hashed again: they equal the last archive's, and the
    /// hash resumed from its state there (`archive::sha`).
    pub hash_resumed_at: u64,
    /// Leading bytes not written at all: the output file already held them (it was the
    /// archive the cache had been written from).
    pub left_in_place: u64,
}

pub struct Written {
    pub sha256: String,
    pub size: u64,
    pub files: u64,
    pub index: Index,
    pub stats: Stats,
    /// SHA-256 of the archived content of racily-clean files, by entry path.
    pub racy: HashMap<Vec<u8>, String>,
}

enum Work {
    /// Uncompressed bytes: hash, then take from the cache or compress. `false`: don't hash
    /// (see `emit_raw`).
    Raw(Vec<u8>, bool),
    /// Cached member `i`, found by its stat key.
    Cached(usize),
}

/// A finished member's bytes: in memory, or a range of the cache archive (copied by the
/// kernel into the new archive, never through a member buffer).
enum Member {
    Bytes(Vec<u8>),
    Cached { coff: u64, clen: u64 },
}

impl Member {
    fn len(&self) -> u64 {
        match self {
            Member::Bytes(b) => b.len() as u64,
            Member::Cached { clen, .. } => *clen,
        }
    }
}

/// What the producer knows of a member before the writer places it.
struct MemberInfo {
    skey: Option<String>,
    ulen: u64,
    last: bool,
}

/// A finished member on its way to the writer: sequence number, bytes, content key.
type Done = (u64, Member, String);

/// Write `src` to `out`. An existing file is overwritten in place and cut to size at the end
/// (rewriting pages costs the kernel less than allocating new ones). Memory stays bounded by
/// `BUFFERS` member buffers.
///
/// `spare`: also write the settled part (`Source::settled`) to this file, for the next archive
/// to be written over in place: that part is what it will most likely share (the index's
/// `prev` names the file, for this boot). Worth it only when nothing else will offer the next
/// backup such a file. Its writeback is left to the kernel: it is never fsynced, as the
/// archive written over it is.
pub fn write(
    src: &Source,
    cache: Option<&Cache>,
    out: &Path,
    spare: Option<&Path>,
) -> Result<Written> {
    let (file, in_place) = open_output(out, cache)?;
    // The producer sets the sequence number of the first unsettled member once it is known.
    let settled_seq = AtomicU64::new(u64::MAX);
    let settled_seq = &settled_seq;
    let copy = match spare {
        Some(p) => Some(SpareCopy {
            file: File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            until: settled_seq,
        }),
        None => None,
    };
    let (job_tx, job_rx) = sync_channel::<(u64, Work)>(2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(IN_FLIGHT);
    let (hash_tx, hash_rx) = sync_channel::<Member>(IN_FLIGHT);
    let (tok_tx, tok_rx) = sync_channel::<()>(BUFFERS);
    // A buffer token is given back by whoever frees the member's last buffer.
    let tokens = Mutex::new(tok_rx);
    let tokens = &tokens;
    let pool = Pool::default();
    let pool = &pool;
    let reused_by_content = AtomicU64::new(0);
    let reused_by_content = &reused_by_content;

    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
            s.spawn(move || work_members(&rx, &tx, cache, pool, tokens, reused_by_content));
        }
        drop(done_tx);
        let hasher = s.spawn(move || hash_members(hash_rx, tokens, pool, cache));
        let writer = s.spawn(move || write_members(file, copy, done_rx, hash_tx, cache, in_place));

        let mut p = Producer {
            src,
            cache,
            pool,
            settled_seq,
            job_tx,
            tok_tx,
            seq: 0,
            metas: Vec::new(),
            racy: HashMap::new(),
            stats: Stats::default(),
            started: Instant::now(),
            last_log: Instant::now(),
            total: 0,
        };
        let produced = p.run();
        let Producer {
            metas,
            mut stats,
            job_tx,
            tok_tx,
            racy,
            ..
        } = p;
        drop(job_tx);
        drop(tok_tx);
        let written = writer
            .join()
            .map_err(|_| anyhow!("the archive writer thread panicked"))?;
        let hashed = hasher
            .join()
            .map_err(|_| anyhow!("the archive hasher thread panicked"))?;
        let hashed = hashed.ok_or_else(|| anyhow!("cannot read the member cache"));
        // A writer error explains a producer error (closed channel), so report it first.
        let Placed {
            size,
            members: placed,
            left_in_place,
            copied,
        } = written.with_context(|| format!("cannot write {}", out.display()))?;
        stats.left_in_place = left_in_place;
        produced?;
        let hashed = hashed?;
        stats.hash_resumed_at = hashed.resumed_at;
        stats.reused_members += reused_by_content.load(Ordering::Relaxed);
        let members = records(metas, placed)?;
        Ok(Written {
            sha256: hex::encode(hashed.digest),
            size,
            files: src.entries.len() as u64,
            index: Index {
                format: format_id(),
                size,
                members,
                sha_states: hashed.states.iter().map(sha::state_hex).collect(),
                // Set once the file is in its final place (`commit`).
                file: None,
                prev: prev(spare, copied, cache, hashed.shared)?,
                older: older(cache, hashed.shared),
            },
            stats,
            racy,
        })
    })
}

/// Open `out` without truncating it, and say how many of its leading bytes are already this
/// archive's. Invariant: when `out` is a file the cache index says shares its first `same`
/// bytes with the cache archive (same inode, size and mtime: unchanged since), those bytes
/// equal the cache archive's, so a member found there at its old offset is left in place.
fn open_output(out: &Path, cache: Option<&Cache>) -> Result<(File, u64)> {
    let out_id = FileId::of(out).ok();
    let in_place = cache
        .and_then(|c| c.sharers().find(|p| Some(p.file) == out_id))
        .map_or(0, |p| p.same);
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    Ok((file, in_place))
}

/// The index records of the members: what the producer knew of each, where the writer put it.
fn records(metas: Vec<MemberInfo>, placed: Vec<(u64, u64, String)>) -> Result<Vec<MemberRec>> {
    if placed.len() != metas.len() {
        return Err(anyhow!(
            "archive writer lost members ({} of {})",
            placed.len(),
            metas.len()
        ));
    }
    Ok(metas
        .into_iter()
        .zip(placed)
        .map(|(m, (coff, clen, ukey))| MemberRec {
            skey: m.skey,
            ukey,
            ulen: m.ulen,
            coff,
            clen,
            last: m.last,
        })
        .collect())
}

/// The file holding this archive's first bytes besides itself (`Index::prev`): the spare copy
/// written beside it (`copied` bytes), else the cache archive it shares `shared` bytes with.
fn prev(
    spare: Option<&Path>,
    copied: u64,
    cache: Option<&Cache>,
    shared: u64,
) -> Result<Option<Prev>> {
    let Some(p) = spare else {
        return Ok(cache.and_then(|c| c.id).map(|file| Prev {
            file,
            same: shared,
            boot: None,
        }));
    };
    // An unsynced copy is never trusted without a boot to tie it to.
    let Some(boot) = this_boot() else {
        return Ok(None);
    };
    Ok(Some(Prev {
        file: FileId::of(p).with_context(|| format!("cannot stat {}", p.display()))?,
        same: copied,
        boot: Some(boot),
    }))
}

/// The older files that still share leading bytes with this archive (`Index::older`).
fn older(cache: Option<&Cache>, shared: u64) -> Vec<Prev> {
    cache.map_or_else(Vec::new, |c| {
        c.sharers()
            .map(|p| Prev {
                same: p.same.min(shared),
                ..p.clone()
            })
            .filter(|p| p.same > 0)
            .take(OLDER)
            .collect()
    })
}

/// A worker thread: takes the producer's jobs until the channel closes.
fn work_members(
    rx: &Mutex<Receiver<(u64, Work)>>,
    tx: &SyncSender<Done>,
    cache: Option<&Cache>,
    pool: &Pool,
    tokens: &Mutex<Receiver<()>>,
    reused_by_content: &AtomicU64,
) {
    let mut packer = Packer::default();
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok((seq, work)) = job else { return };
        let raw = matches!(work, Work::Raw(..));
        // Only `Cached` work without a cache fails: the writer reports the gap.
        let Some((member, ukey)) = finish(work, cache, &mut packer, pool, reused_by_content) else {
            return;
        };
        if raw && matches!(member, Member::Cached { .. }) {
            give_back(tokens); // found in the cache: its buffer is freed
        }
        if tx.send((seq, member, ukey)).is_err() {
            return;
        }
    }
}

/// A worker's job: a member's bytes and content key, from the cache (by stat key, or by
/// content when the hash matches) or freshly compressed.
fn finish(
    work: Work,
    cache: Option<&Cache>,
    packer: &mut Packer,
    pool: &Pool,
    reused_by_content: &AtomicU64,
) -> Option<(Member, String)> {
    let cached = |m: &MemberRec| Member::Cached {
        coff: m.coff,
        clen: m.clen,
    };
    match work {
        Work::Cached(i) => {
            let m = &cache?.members[i];
            Some((cached(m), m.ukey.clone()))
        }
        Work::Raw(b, keyed) => {
            let ukey = if keyed {
                blake3::hash(&b).to_hex().to_string()
            } else {
                String::new()
            };
            let hit = cache.and_then(|c| Some(&c.members[c.by_content(&ukey, b.len() as u64)?]));
            let member = match hit {
                Some(m) => {
                    reused_by_content.fetch_add(1, Ordering::Relaxed);
                    cached(m)
                }
                None => Member::Bytes(packer.member(&b, pool.get(b.len() / 2 + 64))),
            };
            pool.put(b);
            Some((member, ukey))
        }
    }
}

/// What the writer reports.
struct Placed {
    size: u64,
    /// Each member's offset, length and content key.
    members: Vec<(u64, u64, String)>,
    /// Leading bytes left as they were.
    left_in_place: u64,
    /// Leading bytes also written to the spare copy.
    copied: u64,
}

/// The spare copy (see `write`): members before sequence number `until` go in.
struct SpareCopy<'a> {
    file: File,
    until: &'a AtomicU64,
}

/// The writer thread: members back in order, into the file (the settled ones also into
/// `copy`), then on to the hasher. The first `in_place` bytes of `file` are the cache
/// archive's: while the archive so far is too, cached members there are left as they are.
fn write_members(
    file: File,
    copy: Option<SpareCopy>,
    done: Receiver<Done>,
    hasher: SyncSender<Member>,
    cache: Option<&Cache>,
    in_place: u64,
) -> io::Result<Placed> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut pos = 0u64;
    let mut synced = 0u64;
    let mut placed = Vec::new();
    let (mut same, mut left, mut copied) = (true, 0, 0);
    for (seq, member, ukey) in done {
        pending.insert(seq, (member, ukey));
        while let Some((m, ukey)) = pending.remove(&next) {
            same &=
                matches!(m, Member::Cached { coff, clen } if coff == pos && pos + clen <= in_place);
            if same {
                left = pos + m.len();
            }
            // The producer sets `until` before it sends the member at that number.
            let to_copy = copy
                .as_ref()
                .filter(|c| next < c.until.load(Ordering::Acquire))
                .map(|c| &c.file);
            if to_copy.is_some() {
                copied = pos + m.len();
            }
            for f in (!same).then_some(&file).into_iter().chain(to_copy) {
                match &m {
                    Member::Bytes(b) => f.write_all_at(b, pos)?,
                    Member::Cached { coff, clen } => {
                        let from = &cache
                            .ok_or_else(|| io::Error::other("cached member without a cache"))?
                            .file;
                        copy_range(from, *coff, f, pos, *clen)?;
                    }
                }
            }
            let len = m.len();
            placed.push((pos, len, ukey));
            pos += len;
            next += 1;
            if pos - synced >= WRITEBACK_EVERY {
                start_writeback(&file, synced, pos - synced);
                synced = pos;
            }
            if hasher.send(m).is_err() {
                return Err(io::Error::other("the archive hasher stopped"));
            }
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other(
            "archive members missing (a worker stopped)",
        ));
    }
    // An overwritten file may have been longer.
    file.set_len(pos)?;
    Ok(Placed {
        size: pos,
        members: placed,
        left_in_place: left,
        copied,
    })
}

/// `len` bytes from `from` at `src` to `to` at `dst`: in the kernel (`copy_file_range`, no
/// copy through user space; a reflink on filesystems that can), else read + write.
fn copy_range(from: &File, mut src: u64, to: &File, mut dst: u64, len: u64) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let (mut s, mut d) = (src as libc::loff_t, dst as libc::loff_t);
        // SAFETY: plain syscall on open fds; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut s,
                to.as_raw_fd(),
                &mut d,
                left as usize,
                0,
            )
        };
        if n <= 0 {
            break; // Unsupported here (or a short file): fall back below.
        }
        src += n as u64;
        dst += n as u64;
        left -= n as u64;
    }
    if left > 0 {
        let mut buf = vec![0u8; left as usize];
        from.read_exact_at(&mut buf, src)?;
        to.write_all_at(&buf, dst)?;
    }
    Ok(())
}

/// Ask the kernel to start writing a range back now (asynchronously): by the time the store
/// fsyncs the archive, most of it is on disk. Only a hint: errors are ignored (fsync reports
/// real ones).
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: plain syscall on an open fd; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The hasher thread: SHA-256 of the archive in order, then each buffer back to the pool and
/// the member's buffer token back to the producer (which bounds the buffers in flight).
///
/// While the archive so far is the cache archive's first bytes (every member a cached one, at
/// its old offset), nothing is hashed: at the first member that differs, hashing resumes from
/// the cache's last recorded state before that point (`archive::sha`), reading the few bytes
/// in between from the cache. Returns None when the cache could not be read (the writer
/// reports that error too).
fn hash_members(
    members: Receiver<Member>,
    tokens: &Mutex<Receiver<()>>,
    pool: &Pool,
    cache: Option<&Cache>,
) -> Option<Hashed> {
    let mut sha = sha::Sha256::default();
    let mut buf = Vec::new();
    let mut ok = true;
    // The archive's first `shared` bytes are the cache archive's; `parted` once one differs.
    let (mut shared, mut parted, mut skipped) = (0u64, false, 0);
    let (started, mut busy) = (Instant::now(), Duration::ZERO);
    for m in members {
        let t = Instant::now();
        if !parted {
            if let Member::Cached { coff, clen } = m {
                if coff == shared {
                    shared += clen;
                    continue;
                }
            }
            let resumed;
            (sha, skipped, resumed) = resume(cache, shared, &mut buf);
            ok &= resumed;
            parted = true;
        }
        match m {
            Member::Bytes(b) => {
                sha.update(&b);
                pool.put(b);
                give_back(tokens);
            }
            Member::Cached { coff, clen } => {
                ok &= hash_cached(cache, coff, coff + clen, &mut sha, &mut buf);
            }
        }
        busy += t.elapsed();
    }
    if !parted {
        let resumed;
        (sha, skipped, resumed) = resume(cache, shared, &mut buf);
        ok &= resumed;
    }
    tracing::debug!(
        "backup: the archive hasher was busy {} of {} ms",
        busy.as_millis(),
        started.elapsed().as_millis(),
    );
    ok.then(|| {
        let (digest, states) = sha.finish();
        Hashed {
            digest,
            states,
            resumed_at: skipped,
            shared,
        }
    })
}

/// What the hasher found: the archive's SHA-256, its states every `sha::EVERY` bytes, where
/// hashing resumed, and how many leading bytes the archive shares with the cache archive.
struct Hashed {
    digest: [u8; 32],
    states: Vec<sha::State>,
    resumed_at: u64,
    shared: u64,
}

/// A hasher for an archive whose first `at` bytes are the cache archive's: from the cache's
/// last recorded state at or before `at` (returned: where it is), then the cache's bytes up
/// to `at`. False when the cache could not be read.
fn resume(cache: Option<&Cache>, at: u64, buf: &mut Vec<u8>) -> (sha::Sha256, u64, bool) {
    let states = cache.map_or(&[][..], |c| &c.sha_states);
    let k = ((at / sha::EVERY) as usize).min(states.len());
    let mut sha = sha::Sha256::resume(&states[..k]);
    let from = sha.position();
    let ok = hash_cached(cache, from, at, &mut sha, buf);
    (sha, from, ok)
}

/// Hash the cache archive's bytes `from..to` (read through `buf`).
fn hash_cached(
    cache: Option<&Cache>,
    mut from: u64,
    to: u64,
    sha: &mut sha::Sha256,
    buf: &mut Vec<u8>,
) -> bool {
    let Some(c) = cache else { return from == to };
    while from < to {
        let n = (to - from).min(CDC_MAX as u64) as usize;
        if buf.len() < n {
            buf.resize(n, 0);
        }
        if c.file.read_exact_at(&mut buf[..n], from).is_err() {
            return false;
        }
        sha.update(&buf[..n]);
        from += n as u64;
    }
    true
}

/// Give one buffer token back to the producer.
fn give_back(tokens: &Mutex<Receiver<()>>) {
    if let Ok(t) = tokens.lock() {
        let _ = t.recv();
    }
}

struct Producer<'a, 'b> {
    src: &'b Source<'a>,
    cache: Option<&'b Cache>,
    pool: &'b Pool,
    job_tx: SyncSender<(u64, Work)>,
    tok_tx: SyncSender<()>,
    /// Set to `seq` when the walk reaches `Source::settled`.
    settled_seq: &'b AtomicU64,
    seq: u64,
    metas: Vec<MemberInfo>,
    racy: HashMap<Vec<u8>, String>,
    stats: Stats,
    started: Instant,
    last_log: Instant,
    total: u64,
}

/// A run of small entries that will become one member.
#[derive(Default)]
struct Group {
    items: Vec<(usize, Vec<u8>, u64)>,
    ulen: usize,
    reusable: bool,
    skey: Sha256,
}

impl Producer<'_, '_> {
    fn run(&mut self) -> Result<()> {
        let entries = self.src.entries;
        // For progress only: approximate (headers of long names are bigger).
        self.total = entries
            .iter()
            .map(|e| 512 + pad512(e.stat.size))
            .sum::<u64>()
            + 1024;
        let mut g = Group {
            reusable: true,
            ..Group::default()
        };
        for (i, e) in entries.iter().enumerate() {
            if i == self.src.settled {
                self.flush_group(std::mem::take(&mut g), false)?;
                g.reusable = true;
                self.settled_seq.store(self.seq, Ordering::Release);
            }
            // Headers are built one at a time: memory must not grow with the number of files.
            let (hdr, len) = self.header(e)?;
            if len >= BIG {
                self.flush_group(std::mem::take(&mut g), false)?;
                g.reusable = true;
                self.big_entry(i, e, hdr, len)?;
                continue;
            }
            let size = hdr.len() + pad512(len) as usize;
            if g.ulen > 0 && g.ulen + size > GROUP_MAX {
                self.flush_group(std::mem::take(&mut g), false)?;
                g.reusable = true;
            }
            g.reusable &= self.stat_trusted(e);
            stat_key(&mut g.skey, e, &hdr);
            g.ulen += size;
            g.items.push((i, hdr, len));
            if g.ulen >= GROUP_MIN && path_hash(&e.rel) % ANCHOR == 0 {
                self.flush_group(std::mem::take(&mut g), false)?;
                g.reusable = true;
            }
        }
        self.flush_group(g, true)
    }

    /// Whether the entry's bytes are vouched for by its stat (so a stat key may be reused).
    fn stat_trusted(&self, e: &Entry) -> bool {
        match e.kind {
            Kind::Sqlite => false,
            Kind::Dir => true,
            _ => e.stat.ctime_ns.max(e.stat.mtime_ns) < self.src.racy_since_ns,
        }
    }

    /// The tar header block(s) of an entry (GNU long-name blocks first when needed) and the
    /// length of its data. Stable metadata only: uid/gid 0, no user/group names, no atime or
    /// ctime; directories without mtime (they change with volatile files we don't archive).
    fn header(&self, e: &Entry) -> Result<(Vec<u8>, u64)> {
        let mut name = format!("{ROOT}/").into_bytes();
        name.extend_from_slice(&e.rel);
        let (ty, len, mtime) = match e.kind {
            Kind::Dir => {
                if !e.rel.is_empty() {
                    name.push(b'/');
                }
                (EntryType::Directory, 0, 0)
            }
            Kind::Symlink => (EntryType::Symlink, 0, e.stat.mtime_ns),
            Kind::File => (EntryType::Regular, e.stat.size, e.stat.mtime_ns),
            Kind::Sqlite => {
                let copy = (self.src.sqlite_copy)(&e.rel)?;
                let size = fs::metadata(&copy)
                    .with_context(|| format!("cannot stat {}", copy.display()))?
                    .len();
                (EntryType::Regular, size, e.stat.mtime_ns)
            }
        };
        let mut out = Vec::with_capacity(512);
        let mut h = Header::new_gnu();
        if name.len() > 100 {
            long_name_block(&mut out, EntryType::GNULongName, &name);
        }
        if e.target.len() > 100 {
            long_name_block(&mut out, EntryType::GNULongLink, &e.target);
        }
        {
            let gnu = h
                .as_gnu_mut()
                .ok_or_else(|| anyhow!("internal: not a GNU header"))?;
            let n = name.len().min(100);
            gnu.name[..n].copy_from_slice(&name[..n]);
            let t = e.target.len().min(100);
            gnu.linkname[..t].copy_from_slice(&e.target[..t]);
        }
        h.set_entry_type(ty);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime((mtime.max(0) / 1_000_000_000) as u64);
        h.set_size(len);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        Ok((out, len))
    }

    fn flush_group(&mut self, g: Group, trailer: bool) -> Result<()> {
        if g.items.is_empty() && !trailer {
            return Ok(());
        }
        let mut skey = g.skey;
        skey.update(if trailer { b"T" } else { b"-" });
        let skey = hex::encode(skey.finalize());
        if g.reusable {
            if let Some(&i) = self.cache.and_then(|c| c.by_skey.get(&skey)) {
                self.stats.reused_by_stat += 1;
                return self.emit_cached(i);
            }
        }
        let mut buf = self.pool.get(g.ulen + if trailer { 1024 } else { 0 });
        for (i, hdr, len) in &g.items {
            buf.extend_from_slice(hdr);
            let e = &self.src.entries[*i];
            if *len > 0 {
                let at = buf.len();
                let mut r = self.data_reader(e, *len)?;
                r.read_to_end(&mut buf)?;
                if self.hash_racy(e) {
                    self.racy
                        .insert(e.rel.clone(), hex::encode(Sha256::digest(&buf[at..])));
                }
            }
            buf.resize(buf.len() + (pad512(*len) - len) as usize, 0);
        }
        if trailer {
            buf.resize(buf.len() + 1024, 0);
        }
        let has_db = g
            .items
            .iter()
            .any(|(i, _, _)| self.src.entries[*i].kind == Kind::Sqlite);
        let racy = g
            .items
            .iter()
            .any(|(i, _, _)| self.hash_racy(&self.src.entries[*i]));
        self.emit_raw((!has_db).then_some(skey), racy, false, buf)
    }

    /// A big entry: its members (chained stat keys) from the cache, or content-defined chunks.
    fn big_entry(&mut self, _i: usize, e: &Entry, hdr: Vec<u8>, len: u64) -> Result<()> {
        let mut base = Sha256::new();
        stat_key(&mut base, e, &hdr);
        let base = base.finalize();
        let part_key = |n: u64| {
            let mut h = Sha256::new();
            h.update(base);
            h.update(n.to_le_bytes());
            hex::encode(h.finalize())
        };
        let keyed = e.kind != Kind::Sqlite;
        if keyed && self.stat_trusted(e) {
            if let Some(c) = self.cache {
                let mut chain = Vec::new();
                for n in 0.. {
                    match c.by_skey.get(&part_key(n)) {
                        Some(&i) => {
                            chain.push(i);
                            if c.members[i].last {
                                break;
                            }
                        }
                        None => {
                            chain.clear();
                            break;
                        }
                    }
                }
                if !chain.is_empty() {
                    self.stats.reused_by_stat += chain.len() as u64;
                    for i in chain {
                        self.emit_cached(i)?;
                    }
                    return Ok(());
                }
            }
        }
        let pad = pad512(len) - len;
        let racy = self.hash_racy(e);
        // Content hash only for racily-clean files (see `Written::racy`).
        let mut data = HashRead {
            inner: self.data_reader(e, len)?,
            h: racy.then(Sha256::new),
        };
        let mut r = io::Cursor::new(hdr)
            .chain(&mut data)
            .chain(io::repeat(0).take(pad));
        // Read in steps and look for a cut in what is new, so the bytes after a cut (copied
        // into the next chunk's buffer) stay under one step.
        let (most, step) = if keyed {
            (CDC_MAX, CDC_MIN)
        } else {
            (DB_CHUNK, DB_CHUNK)
        };
        let mut buf = self.pool.get(most);
        let mut n = 0u64;
        let mut eof = false;
        loop {
            let mut scanned = 0;
            let cut = loop {
                if !eof && buf.len() < most {
                    let want = step.min(most - buf.len());
                    let got = (&mut r).take(want as u64).read_to_end(&mut buf)?;
                    eof = got < want;
                }
                if !keyed {
                    break buf.len();
                }
                if let Some(c) = cdc_cut(&buf, scanned) {
                    break c;
                }
                if eof || buf.len() >= most {
                    break buf.len();
                }
                scanned = buf.len();
            };
            if buf.is_empty() {
                break;
            }
            let mut rest = self.pool.get(most);
            rest.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
            let last = eof && rest.is_empty();
            let chunk = std::mem::replace(&mut buf, rest);
            self.emit_raw(keyed.then(|| part_key(n)), racy, last, chunk)?;
            n += 1;
            if last {
                break;
            }
        }
        self.pool.put(buf);
        drop(r);
        if let Some(h) = data.h {
            self.racy.insert(e.rel.clone(), hex::encode(h.finalize()));
        }
        Ok(())
    }

    fn hash_racy(&self, e: &Entry) -> bool {
        crate::snapshot::is_racy(e, self.src.hash_since_ns + crate::snapshot::RACY_NS)
    }

    /// Exactly `len` bytes of the entry's data: the file may have shrunk or grown since the
    /// walk; the header is already fixed, so cut or pad with zeros (the next backup sees the
    /// new stat and reads it again).
    fn data_reader(&self, e: &Entry, len: u64) -> Result<impl Read> {
        // A database's copy is ours; any other file of the state dir is opened through
        // `livedb`, which never lets a descriptor drop a live copy's locks.
        let (path, opened) = match e.kind {
            Kind::Sqlite => {
                let p = (self.src.sqlite_copy)(&e.rel)?;
                let f = File::open(&p).map(|f| Box::new(f) as Box<dyn Read + Send>);
                (p, f)
            }
            _ => {
                let p = e.path_in(self.src.root);
                let f = crate::livedb::open_plain(&p).map(|f| Box::new(f) as Box<dyn Read + Send>);
                (p, f)
            }
        };
        let f: Box<dyn Read + Send> = match opened {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::debug!("backup: {} vanished while archiving", path.display());
                Box::new(io::empty())
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(f.take(len).chain(io::repeat(0)).take(len))
    }

    fn emit_cached(&mut self, i: usize) -> Result<()> {
        let c = self.cache.ok_or_else(|| anyhow!("internal: no cache"))?;
        let m = &c.members[i];
        self.stats.reused_members += 1;
        self.send(
            MemberInfo {
                skey: m.skey.clone(),
                ulen: m.ulen,
                last: m.last,
            },
            Work::Cached(i),
        )
    }

    /// Uncompressed member bytes: a worker hashes them and reuses or compresses.
    /// Content keys let a later backup reuse a member whose files were rewritten unchanged,
    /// and databases' chunks (which have no stat key) at all. Without any cache (a first
    /// backup) a stat-keyed member goes without, unless it holds racily-clean bytes (`racy`):
    /// the next backup reuses it by stat, and can't by stat only what it can by content.
    fn emit_raw(
        &mut self,
        skey: Option<String>,
        racy: bool,
        last: bool,
        buf: Vec<u8>,
    ) -> Result<()> {
        let ulen = buf.len() as u64;
        let keyed = self.cache.is_some() || skey.is_none() || racy;
        self.send(MemberInfo { skey, ulen, last }, Work::Raw(buf, keyed))
    }

    fn send(&mut self, meta: MemberInfo, work: Work) -> Result<()> {
        self.stats.tar_bytes += meta.ulen;
        self.stats.members += 1;
        self.metas.push(meta);
        // A buffer: blocks while `BUFFERS` are in flight (bounded memory).
        if matches!(work, Work::Raw(..)) {
            self.tok_tx
                .send(())
                .map_err(|_| anyhow!("archive writer stopped"))?;
        }
        self.job_tx
            .send((self.seq, work))
            .map_err(|_| anyhow!("archive workers stopped"))?;
        self.seq += 1;
        if self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            tracing::info!(
                "backup: {} of {} MB archived ({} members, {} reused), {:.0} MB/s",
                self.stats.tar_bytes >> 20,
                self.total >> 20,
                self.stats.members,
                self.stats.reused_members,
                self.stats.tar_bytes as f64 / 1e6 / secs
            );
        }
        Ok(())
    }
}

/// A reader that hashes what passes through (when it has a hasher).
struct HashRead<R> {
    inner: R,
    h: Option<Sha256>,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.h {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Feed an entry's identity into a stat key: its header (path, mode, size, mtime, link target)
/// plus inode and ctime, which change on every write.
fn stat_key(h: &mut Sha256, e: &Entry, hdr: &[u8]) {
    h.update((hdr.len() as u64).to_le_bytes());
    h.update(hdr);
    if e.kind != Kind::Dir {
        h.update(e.stat.ino.to_le_bytes());
        h.update(e.stat.ctime_ns.to_le_bytes());
    }
}

fn long_name_block(out: &mut Vec<u8>, ty: EntryType, name: &[u8]) {
    let mut h = Header::new_gnu();
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.name[..13].copy_from_slice(b"././@LongLink");
    }
    h.set_entry_type(ty);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(name.len() as u64 + 1);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(name);
    let data = name.len() as u64 + 1;
    out.resize(out.len() + 1 + (pad512(data) - data) as usize, 0);
}

fn pad512(n: u64) -> u64 {
    n.div_ceil(512) * 512
}

/// FNV-1a of the path: decides group anchors.
fn path_hash(p: &[u8]) -> u64 {
    p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The gear table: 256 fixed pseudo-random words (splitmix64 from a constant seed).
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut x: u64 = 0x6f70_656e_636c_6177; // "openclaw"
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// First content-defined cut in `buf` (chunk starts at 0) at or after `from`, if any before
/// `CDC_MAX`. The hash depends on the last 64 bytes only, so a scan resumed at `from` finds
/// exactly the cut a scan from the start would.
fn cdc_cut(buf: &[u8], from: usize) -> Option<usize> {
    let end = buf.len().min(CDC_MAX);
    let first = from.max(CDC_MIN);
    if end <= first {
        return None;
    }
    let roll = |h: u64, b: u8| (h << 1).wrapping_add(GEAR[b as usize]);
    // Two plain loops (warm-up, then scan) run ~2.5x faster than one with a position check.
    let mut h = buf[first - 64..first].iter().fold(0, |h, &b| roll(h, b));
    buf[first..end]
        .iter()
        .position(|&b| {
            h = roll(h, b);
            h & CDC_MASK == 0
        })
        .map(|at| first + at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot;

    /// Write the archive of `root` to `out` (with `cache`), keep it as a cache, return it.
    fn archive(root: &Path, out: &Path, cache: Option<&Cache>) -> (Written, Cache) {
        archive_with_spare(root, out, cache, None)
    }

    fn archive_with_spare(
        root: &Path,
        out: &Path,
        cache: Option<&Cache>,
        spare: Option<&Path>,
    ) -> (Written, Cache) {
        let no_db = |_: &[u8]| -> Result<PathBuf> { Err(anyhow!("no databases here")) };
        let mut tree = snapshot::walk(root, &globset::GlobSet::empty(), None).unwrap();
        let settled = snapshot::archive_order(&mut tree.entries);
        let src = Source {
            root,
            entries: &tree.entries,
            settled,
            sqlite_copy: &no_db,
            // Every file re-read and matched by content (none is trusted by its stat).
            racy_since_ns: i64::MAX,
            hash_since_ns: 0,
        };
        let mut w = write(&src, cache, out, spare).unwrap();
        let on_disk = hex::encode(Sha256::digest(fs::read(out).unwrap()));
        assert_eq!(
            w.sha256, on_disk,
            "the archive's SHA-256 is what was written"
        );
        w.index.file = Some(FileId::of(out).unwrap());
        let idx = out.with_extension("json");
        fs::write(&idx, serde_json::to_vec(&w.index).unwrap()).unwrap();
        let c = Cache::open(out, &idx).unwrap();
        (w, c)
    }

    /// A state dir with 10 MiB of incompressible `media/big.bin` (settled) and a small
    /// `openclaw.json` (archived last); returns the dir, the state root and the media bytes.
    fn media_and_config(seed: u64) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join(".openclaw");
        fs::create_dir_all(root.join("media")).unwrap();
        let mut x = seed;
        let noise: Vec<u8> = (0..10 << 20)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        fs::write(root.join("media/big.bin"), &noise).unwrap();
        fs::write(root.join("openclaw.json"), b"{\"a\": 1}").unwrap();
        (d, root, noise)
    }

    #[test]
    fn the_hash_resumes_after_the_unchanged_start_of_the_last_archive() {
        let (d, root, noise) = media_and_config(3);
        let (w1, c1) = archive(&root, &d.path().join("1.tar.gz"), None);
        assert_eq!(w1.stats.hash_resumed_at, 0);
        assert_eq!(w1.index.sha_states.len() as u64, w1.size / sha::EVERY);
        assert!(w1.size / sha::EVERY >= 2);

        // openclaw.json goes last: the 10 MB before it are hashed no more.
        fs::write(root.join("openclaw.json"), b"{\"a\": 2}").unwrap();
        let (w2, c2) = archive(&root, &d.path().join("2.tar.gz"), Some(&c1));
        assert_eq!(w2.stats.hash_resumed_at, 2 * sha::EVERY);
        assert_eq!(w2.index.sha_states.len() as u64, w2.size / sha::EVERY);

        // Nothing changed at all: resumed at the last state.
        let (w3, c3) = archive(&root, &d.path().join("3.tar.gz"), Some(&c2));
        assert_eq!(w3.sha256, w2.sha256);
        assert_eq!(w3.stats.hash_resumed_at, 2 * sha::EVERY);

        // Written over the archive the cache was made from (as over the store's retiring file):
        // the shared start is left in place, and the result is still right.
        fs::write(root.join("openclaw.json"), b"{\"a\": 3}").unwrap();
        let (w5, _) = archive(&root, &d.path().join("2.tar.gz"), Some(&c3));
        assert!(w5.stats.left_in_place > 2 * sha::EVERY, "{:?}", w5.stats);
        assert_eq!(w5.stats.hash_resumed_at, 2 * sha::EVERY);
        // Over any other file: everything written.
        fs::copy(d.path().join("1.tar.gz"), d.path().join("5.tar.gz")).unwrap();
        let (w6, _) = archive(&root, &d.path().join("5.tar.gz"), Some(&c3));
        assert_eq!(w6.stats.left_in_place, 0);
        assert_eq!(w6.sha256, w5.sha256);

        // A change at the start: hashed from the beginning.
        let mut changed = noise.clone();
        changed[100] ^= 1;
        fs::write(root.join("media/big.bin"), &changed).unwrap();
        let (w4, _) = archive(&root, &d.path().join("4.tar.gz"), Some(&c3));
        assert_eq!(w4.stats.hash_resumed_at, 0);

        // A cache file changed after its index was written is not used at all.
        fs::write(d.path().join("3.tar.gz"), b"not the archive").unwrap();
        assert!(Cache::open(&d.path().join("3.tar.gz"), &d.path().join("3.json")).is_none());
    }

    #[test]
    fn a_spare_copy_of_the_settled_part_is_written_over_next_time() {
        let (d, root, _) = media_and_config(5);
        let (out, spare) = (d.path().join("1.tar.gz"), d.path().join("spare.tar.gz"));
        let (w1, c1) = archive_with_spare(&root, &out, None, Some(&spare));
        // The spare holds the settled part (media), not openclaw.json, which goes last.
        let prev = w1.index.prev.clone().unwrap();
        let copy = fs::read(&spare).unwrap();
        assert_eq!(copy.len() as u64, prev.same);
        assert!(prev.same > 10 << 20 && prev.same < w1.size, "{prev:?}");
        assert_eq!(copy[..], fs::read(&out).unwrap()[..copy.len()]);
        assert_eq!(prev.file, FileId::of(&spare).unwrap());
        assert!(prev.boot.is_some() && prev.boot == this_boot());
        assert_eq!(c1.prev_file(), Some(prev.file));

        // The next archive, written over the spare, leaves the settled part where it is.
        fs::write(root.join("openclaw.json"), b"{\"a\": 2}").unwrap();
        let (w2, _) = archive(&root, &spare, Some(&c1));
        assert!(w2.stats.left_in_place >= 10 << 20, "{:?}", w2.stats);

        // Never synced, so not trusted after a reboot (another boot id).
        let idx = out.with_extension("json");
        let mut index: Index = serde_json::from_slice(&fs::read(&idx).unwrap()).unwrap();
        index.prev.as_mut().unwrap().boot = Some("another-boot".into());
        fs::write(&idx, serde_json::to_vec(&index).unwrap()).unwrap();
        let c = Cache::open(&out, &idx).unwrap();
        assert_eq!(c.prev_file(), None);
    }

    #[test]
    fn cdc_cuts_are_content_defined() {
        let mut data = vec![0u8; 6 << 20];
        let mut x = 1u64;
        for b in data.iter_mut() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
        let cuts = |d: &[u8]| {
            let mut out = Vec::new();
            let mut at = 0;
            while at < d.len() {
                let n = cdc_cut(&d[at..(at + CDC_MAX).min(d.len())], 0)
                    .unwrap_or((d.len() - at).min(CDC_MAX));
                at += n;
                out.push(at);
            }
            out
        };
        // A scan resumed where an earlier one stopped finds the same cut.
        let full = cdc_cut(&data, 0).unwrap();
        assert_eq!(cdc_cut(&data[..full - 1], 0), None);
        assert_eq!(cdc_cut(&data[..full + 10], full - 1000), Some(full));
        let a = cuts(&data);
        // Insert 100 bytes near the start: later cuts shift by exactly 100.
        let mut shifted = data[..1000].to_vec();
        shifted.extend_from_slice(&[7u8; 100]);
        shifted.extend_from_slice(&data[1000..]);
        let b = cuts(&shifted);
        let common = a.iter().filter(|c| b.contains(&(**c + 100))).count();
        assert!(common + 2 >= a.len(), "cuts {a:?} vs {b:?}");
    }
}
