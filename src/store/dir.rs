//! `dir` store: backups in a local folder (the embedded default; also a mounted bucket volume).
//!
//! TODO(backup-engine): temp + rename + fsync so a reader never sees a torn or mismatched pair.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Fetched, RemoteInfo, Store, StoreError};

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: PathBuf) -> Self {
        DirStore { root }
    }
}

#[async_trait]
impl Store for DirStore {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
    async fn fetch_latest(&self, _scratch: &Path) -> Result<Option<Fetched>, StoreError> {
        Err(StoreError::Other("dir store: not implemented yet".into()))
    }
    async fn put(&self, _archive: &Path, _sha256: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Other("dir store: not implemented yet".into()))
    }
    async fn head(&self) -> Result<Option<RemoteInfo>, StoreError> {
        Err(StoreError::Other("dir store: not implemented yet".into()))
    }
}
