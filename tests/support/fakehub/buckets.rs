//! Storage Buckets in the fake Hub (facts/hf-storage-2026.md §2): flat, non-versioned,
//! xet-only file stores. This file holds their state and what tests look at; the HTTP
//! handlers are in `routes/buckets.rs`.
//!
//! A file is a path mapped to a xet file hash the CAS already holds (learned from the shards
//! under the CAS dir, like datasets' `lfsFile`s): an `addFile` naming an unknown hash fails,
//! per file, inside a 200 (`{"failed": [...]}`), as the Hub reports partial failures.
//! Overwriting or deleting frees the old content at once (no history), so `stored_bytes` is
//! the sum of the current files.

use std::collections::BTreeMap;

use super::{now_iso, xet, FakeHub, Inner};

/// One file in a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketFile {
    pub xet_hash: String,
    pub size: u64,
    /// What the client sent, in milliseconds (the Hub's unit); None when it sent none.
    pub mtime_ms: Option<u64>,
    pub uploaded_at: String,
}

pub(super) struct Bucket {
    pub(super) private: bool,
    pub(super) created_at: String,
    pub(super) files: BTreeMap<String, BucketFile>,
}

impl Inner {
    pub(super) fn create_bucket(&self, id: &str, private: bool) -> bool {
        let mut st = self.state();
        if st.buckets.contains_key(id) {
            return false;
        }
        st.buckets.insert(
            id.to_string(),
            Bucket {
                private,
                created_at: now_iso(),
                files: BTreeMap::new(),
            },
        );
        true
    }
}

impl FakeHub {
    /// Create a bucket directly (as if through the API). False if it already existed.
    pub fn create_bucket(&self, id: &str, private: bool) -> bool {
        self.inner.create_bucket(id, private)
    }

    pub fn bucket_is_private(&self, id: &str) -> Option<bool> {
        self.inner.state().buckets.get(id).map(|b| b.private)
    }

    /// The files of a bucket by path (empty if the bucket does not exist).
    pub fn bucket_files(&self, id: &str) -> BTreeMap<String, BucketFile> {
        self.inner
            .state()
            .buckets
            .get(id)
            .map(|b| b.files.clone())
            .unwrap_or_default()
    }

    /// A file's bytes, rebuilt from the CAS.
    pub fn bucket_file_bytes(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        let file = self.bucket_files(id).remove(path)?;
        xet::read_file(&self.inner.cas_dir, &file.xet_hash).ok()
    }

    /// Remove a file behind the clients' backs (e.g. an archive a pointer still names).
    pub fn remove_bucket_file(&self, id: &str, path: &str) -> bool {
        let mut st = self.inner.state();
        st.buckets
            .get_mut(id)
            .is_some_and(|b| b.files.remove(path).is_some())
    }

    /// Make `to` hold what `from` holds (a server-side copy), behind the clients' backs.
    pub fn copy_bucket_file(&self, id: &str, from: &str, to: &str) -> bool {
        let mut st = self.inner.state();
        let Some(b) = st.buckets.get_mut(id) else {
            return false;
        };
        let Some(f) = b.files.get(from).cloned() else {
            return false;
        };
        b.files.insert(to.to_string(), f);
        true
    }

    /// Bytes the bucket holds now: overwrite and delete free storage at once.
    pub fn bucket_stored_bytes(&self, id: &str) -> u64 {
        self.bucket_files(id).values().map(|f| f.size).sum()
    }
}
