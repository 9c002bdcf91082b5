//! Which file the new archive is written over ("in place", see the glossary in `backup`),
//! and whether to keep a spare copy of its settled part for the next one.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::archive::write::{self as awrite, Cache};
use crate::meta::{Meta, Scratch};
use crate::store::Store;

/// What the store lends this backup (`store::LocalVersions`), read before the upload.
pub(super) struct Lent {
    /// The retiring file: the archive the store deletes at the next `put`.
    retiring: Option<PathBuf>,
    /// The store keeps more than one version on this machine, so later backups are lent
    /// retiring files (see `place_output` for when a spare copy is still worth writing).
    keeps_versions: bool,
}

impl Lent {
    pub(super) fn by(store: &dyn Store) -> Lent {
        let local = store.local_versions();
        Lent {
            retiring: local.and_then(|l| l.retiring()),
            // With one version kept, the one the next put deletes is the latest: never lent.
            keeps_versions: local.is_some_and(|l| l.keep() > 1),
        }
    }

    #[cfg(test)]
    pub(super) fn nothing() -> Lent {
        Lent::retiring_for_test(None, false)
    }

    #[cfg(test)]
    pub(super) fn retiring_for_test(retiring: Option<PathBuf>, keeps_versions: bool) -> Lent {
        Lent {
            retiring,
            keeps_versions,
        }
    }
}

/// Choose the file the archive is written over (our spare copy when the cache's index names
/// it, else the store's retiring file), and whether to write a spare copy of this archive's
/// settled part; returns where that copy goes.
pub(super) fn place_output(
    meta: &Meta,
    cache: Option<&Cache>,
    out: &Path,
    lent: &Lent,
    scratch: &Scratch,
) -> Option<PathBuf> {
    let own = meta.spare_for(cache);
    if own.as_deref().is_some_and(|s| take_over(s, out))
        || lent.retiring.as_deref().is_some_and(|r| take_over(r, out))
    {
        tracing::debug!("backup: writing the archive in place over an old one");
    }
    // With no cache file to follow this archive (none, or one of unknown identity), the
    // store's next retiring file won't hold its bytes: write a spare copy that will.
    (lent.keeps_versions && cache.and_then(Cache::id).is_none() && awrite::this_boot().is_some())
        .then(|| scratch.spare())
}

/// Move `old` (an archive file nobody needs any more) to `out`, for the new archive to
/// overwrite in place: a new 300 MB file costs the kernel ~3x more than rewriting the pages of
/// an old one (page allocation, delayed-allocation bookkeeping, and freeing the old one).
/// Invariant: only when nobody can see the change. After the rename no one can open it by
/// name, and a write lease is granted only while no other process has it open; it must have
/// no other link. Otherwise it goes back and the archive is a new file.
pub(super) fn take_over(old: &Path, out: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    if fs::rename(old, out).is_err() {
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
        let _ = fs::rename(out, old);
    }
    alone
}
