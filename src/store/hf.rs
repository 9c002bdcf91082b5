//! `hf` store: backups in a private Hugging Face dataset, over the hf-hub 1.0 crate.
//!
//! TODO(hf-store): see issue 4.

use std::path::Path;

use async_trait::async_trait;

use super::{Fetched, RemoteInfo, Store, StoreError};
use crate::settings::HfSettings;

pub struct HfStore {
    dataset: String,
}

impl HfStore {
    pub async fn open(settings: &HfSettings) -> anyhow::Result<Self> {
        Ok(HfStore {
            dataset: settings.dataset.clone(),
        })
    }
}

#[async_trait]
impl Store for HfStore {
    fn describe(&self) -> String {
        format!("hf:{}", self.dataset)
    }
    async fn fetch_latest(&self, _scratch: &Path) -> Result<Option<Fetched>, StoreError> {
        Err(StoreError::Other("hf store: not implemented yet".into()))
    }
    async fn put(&self, _archive: &Path, _sha256: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Other("hf store: not implemented yet".into()))
    }
    async fn head(&self) -> Result<Option<RemoteInfo>, StoreError> {
        Err(StoreError::Other("hf store: not implemented yet".into()))
    }
}
