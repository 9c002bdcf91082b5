//! The ledger: what the meta dir remembers between runs about the state and the store.
//! - `state.sha256`: the backup the state on disk equals (the last upload or restore);
//! - `restore-failed`: the latch that pauses non-forced uploads after a failed restore (an
//!   empty or stale state must not replace good backups), holding why;
//! - `restore-skipped.json`: the versions the last fallback restore found bad;
//! - `fingerprint.bin`: the stat-level view and database hashes of the last upload;
//! - `last-backup.json`: the record `status` shows.

use std::fs;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Meta;
use crate::fsutil::{now_rfc3339, write_atomic, Durability};
use crate::snapshot::Fingerprint;

const STATE_SHA: &str = "state.sha256";
const LATCH: &str = "restore-failed";
const SKIPPED: &str = "restore-skipped.json";
const FINGERPRINT: &str = "fingerprint.bin";
/// Written by versions before the binary format; removed on the next upload.
const OLD_FINGERPRINT: &str = "fingerprint.json";
const RECORD: &str = "last-backup.json";

/// One upload, as `last-backup.json` records it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Upload {
    pub time: String,
    pub sha256: String,
    pub size: u64,
    pub files: u64,
    pub duration_ms: u64,
    pub members: u64,
    pub reused_members: u64,
}

impl Meta {
    /// The digest of the backup the state on disk equals, if known.
    pub fn state_sha(&self) -> Option<String> {
        let s = fs::read_to_string(self.file(STATE_SHA)).ok()?;
        Some(s.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub fn set_state_sha(&self, sha256: &str) -> Result<()> {
        write_atomic(&self.file(STATE_SHA), sha256.as_bytes(), Durability::Synced)
    }

    /// Why uploads are paused (the last restore failed), if they are.
    pub fn uploads_paused(&self) -> Option<String> {
        fs::read_to_string(self.file(LATCH))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Pause non-forced uploads until a restore succeeds or a backup is forced.
    pub fn pause_uploads(&self, why: &str) -> Result<()> {
        write_atomic(&self.file(LATCH), why.as_bytes(), Durability::Synced)
    }

    pub fn resume_uploads(&self) {
        let _ = fs::remove_file(self.file(LATCH));
    }

    /// What the last fallback restore left (its format is the restore's).
    pub fn skipped<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&fs::read(self.file(SKIPPED)).ok()?).ok()
    }

    /// Record what a fallback skipped, or forget it (`None`).
    pub fn set_skipped<T: Serialize>(&self, memo: Option<&T>) -> Result<()> {
        let path = self.file(SKIPPED);
        match memo {
            None => {
                let _ = fs::remove_file(&path);
                Ok(())
            }
            Some(m) => write_atomic(&path, &serde_json::to_vec(m)?, Durability::Synced),
        }
    }

    /// The fingerprint of the last upload or restore; None when there is none or it is
    /// unreadable (said once: the next backup uploads).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        let path = self.file(FINGERPRINT);
        let bytes = fs::read(&path).ok()?;
        let fp = Fingerprint::decode(&bytes);
        if fp.is_none() {
            tracing::warn!(
                "ignoring the unreadable fingerprint {}; the next backup uploads",
                path.display()
            );
        }
        fp
    }

    pub fn set_fingerprint(&self, fp: &Fingerprint) -> Result<()> {
        write_atomic(&self.file(FINGERPRINT), &fp.encode(), Durability::Synced)?;
        let _ = fs::remove_file(self.file(OLD_FINGERPRINT));
        Ok(())
    }

    pub fn forget_fingerprint(&self) {
        let _ = fs::remove_file(self.file(FINGERPRINT));
    }

    /// The last backup's record (`{"last_upload": {..}, "last_check": {..}}`) plus
    /// `uploads_paused` while the latch is set; None when there is neither.
    pub fn record(&self) -> Option<serde_json::Value> {
        let mut v: serde_json::Value = fs::read(self.file(RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(why) = self.uploads_paused() {
            v["uploads_paused"] = serde_json::Value::String(format!("last restore failed: {why}"));
        }
        (v.as_object().is_some_and(|o| !o.is_empty())).then_some(v)
    }

    /// Record a backup check that took `ms`: an upload, or a skip (`None`: nothing changed).
    pub fn set_record(&self, upload: Option<Upload>, ms: u64) -> Result<()> {
        let path = self.file(RECORD);
        let mut v: serde_json::Value = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let result = if upload.is_some() {
            "uploaded"
        } else {
            "skipped"
        };
        if let Some(u) = upload {
            v["last_upload"] = serde_json::to_value(u)?;
        }
        v["last_check"] =
            serde_json::json!({ "time": now_rfc3339(), "result": result, "duration_ms": ms });
        // Informational only: not worth an fsync on every periodic check.
        write_atomic(&path, &serde_json::to_vec(&v)?, Durability::Plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latch_shows_in_the_record_even_before_any_backup() {
        let d = tempfile::tempdir().unwrap();
        let meta = Meta::new(d.path().join("m"));
        meta.create().unwrap();
        assert!(meta.record().is_none());
        meta.pause_uploads("no backup verifies").unwrap();
        let r = meta.record().expect("a record with the latch");
        assert_eq!(
            r["uploads_paused"],
            "last restore failed: no backup verifies"
        );
        meta.resume_uploads();
        assert!(meta.record().is_none());
        meta.set_record(None, 5).unwrap();
        assert_eq!(meta.record().unwrap()["last_check"]["result"], "skipped");
    }
}
