//! The member cache and the spare copy (see the glossary in `backup`):
//! - `members.tar.gz` + `members.json`: the previous archive and its member index, which the
//!   next backup copies unchanged members from. The archive is fsynced before the index is
//!   written, and the index names the file it was written for (`FileId`), so a crash leaves
//!   either no cache or one that matches; a lost index only costs speed;
//! - `spare.tar.gz`: a copy of a first backup's settled part, for the next archive to be
//!   written over in place. Never synced; its index entry trusts it for this boot only.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::Meta;
use crate::archive::write::{Cache, FileId, Index};
use crate::fsutil::{write_atomic, Durability};

const ARCHIVE: &str = "members.tar.gz";
const INDEX: &str = "members.json";
const SPARE: &str = "spare.tar.gz";

/// How an archive becomes the member cache.
pub enum Install {
    /// Rename it (a backup's own archive, which nobody else needs).
    Move,
    /// Hard-link it, or copy it when that fails (a fetched archive, which the store may own).
    Link,
}

impl Meta {
    /// The member cache, when it matches its index (else None: compress everything).
    pub fn member_cache(&self) -> Option<Cache> {
        Cache::open(&self.file(ARCHIVE), &self.file(INDEX))
    }

    /// Make `archive` the member cache, with `index` (whose `file` is set here).
    pub fn keep_as_cache(&self, archive: &Path, install: Install, mut index: Index) -> Result<()> {
        let cache = self.file(ARCHIVE);
        // The old index goes first: a crash before the new one is in place leaves no cache,
        // never an index describing another file.
        let _ = fs::remove_file(self.file(INDEX));
        match install {
            Install::Move => fs::rename(archive, &cache)?,
            Install::Link => fs::hard_link(archive, &cache)
                .or_else(|_| fs::remove_file(&cache).and_then(|()| fs::hard_link(archive, &cache)))
                .or_else(|_| fs::copy(archive, &cache).map(|_| ()))?,
        }
        // Reused bytes must survive a power cut as written before the index points into them
        // (cheap when they were synced already).
        File::open(&cache)?.sync_all()?;
        index.file = Some(FileId::of(&cache)?);
        write_atomic(
            &self.file(INDEX),
            &serde_json::to_vec(&index)?,
            Durability::Plain,
        )
    }

    /// The spare copy, when the member cache's index names it as the file holding the previous
    /// archive's first bytes; otherwise it is deleted (only worth its disk space while named).
    pub fn spare_for(&self, cache: Option<&Cache>) -> Option<PathBuf> {
        let own = self.file(SPARE);
        let named = cache
            .and_then(Cache::prev_file)
            .is_some_and(|f| FileId::of(&own).ok() == Some(f));
        if named {
            Some(own)
        } else {
            let _ = fs::remove_file(&own);
            None
        }
    }

    /// Keep `copy` (written by this backup) as the spare copy.
    pub fn keep_spare(&self, copy: &Path) -> Result<()> {
        Ok(fs::rename(copy, self.file(SPARE))?)
    }
}
