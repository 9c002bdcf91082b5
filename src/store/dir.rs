//! `dir` store: backups in a local folder (the embedded default; also a mounted bucket volume).
//!
//! Layout (a pair is published by renaming one pointer, so a reader never sees a torn or
//! mismatched archive/sidecar pair):
//! ```text
//! <root>/.versions/<time>-<sha12>/latest_backup.tar.gz   immutable once published
//! <root>/.versions/<time>-<sha12>/latest_backup.sha256
//! <root>/current -> .versions/<time>-<sha12>             the pointer, replaced by rename
//! <root>/latest_backup.tar.gz -> current/latest_backup.tar.gz   seed names, for people
//! <root>/latest_backup.sha256 -> current/latest_backup.sha256
//! ```
//! A version is written into a temp dir, fsynced, renamed into `.versions/`, and only then
//! `current` is swapped (symlink to a temp name, rename over `current`, fsync `<root>`). The
//! previous version is kept (a reader that resolved `current` just before the swap still
//! finds its files); older ones are deleted.
//!
//! A seed folder (plain `latest_backup.tar.gz` + `latest_backup.sha256`, no `current`) is read
//! as-is; the first put turns the two names into the links above.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{parse_sidecar, Fetched, RemoteInfo, Store, StoreError, ARCHIVE_NAME, SIDECAR_NAME};

const VERSIONS: &str = ".versions";
const CURRENT: &str = "current";
/// Versions kept: the current one and the one before it.
const KEEP: usize = 2;

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: PathBuf) -> Self {
        DirStore { root }
    }

    /// The folder holding the latest pair, or None when the store positively holds no backup.
    fn latest_dir(&self) -> Result<Option<PathBuf>, StoreError> {
        match fs::read_dir(&self.root) {
            Ok(_) => {}
            // A folder that does not exist yet holds no backup; put creates it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.root, e)),
        }
        match fs::read_link(self.root.join(CURRENT)) {
            // Resolve the pointer once: both files are then read from the same version.
            Ok(target) => Ok(Some(self.root.join(target))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let archive = self.root.join(ARCHIVE_NAME);
                let sidecar = self.root.join(SIDECAR_NAME);
                match (archive.exists(), sidecar.exists()) {
                    (false, false) => Ok(None),
                    (true, true) => Ok(Some(self.root.clone())),
                    (true, false) => Err(StoreError::Corrupt(format!(
                        "{} has {ARCHIVE_NAME} but no {SIDECAR_NAME}; add the sidecar (sha256sum {ARCHIVE_NAME} > {SIDECAR_NAME}) or remove the archive",
                        self.root.display()
                    ))),
                    (false, true) => Err(StoreError::Corrupt(format!(
                        "{} has {SIDECAR_NAME} but no {ARCHIVE_NAME}",
                        self.root.display()
                    ))),
                }
            }
            Err(e) => Err(io_err(&self.root.join(CURRENT), e)),
        }
    }

    fn read_sidecar(dir: &Path) -> Result<String, StoreError> {
        let path = dir.join(SIDECAR_NAME);
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                StoreError::Corrupt(format!("{} is missing", path.display()))
            }
            _ => io_err(&path, e),
        })?;
        parse_sidecar(&text)
    }

    fn put_sync(&self, archive: &Path, sha256: &str) -> io::Result<String> {
        let versions = self.root.join(VERSIONS);
        fs::create_dir_all(&versions)?;
        let id = format!("{}-{}", timestamp(), &sha256[..12]);
        let tmp = versions.join(format!(".tmp-{id}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp)?;
        let dst = tmp.join(ARCHIVE_NAME);
        // Same filesystem: a hard link costs nothing (the archive is never modified in place);
        // otherwise copy.
        if fs::hard_link(archive, &dst).is_err() {
            fs::copy(archive, &dst)?;
        }
        let t = std::time::Instant::now();
        File::open(&dst)?.sync_all()?;
        tracing::debug!(
            "dir store: archive synced in {} ms",
            t.elapsed().as_millis()
        );
        let mut f = File::create(tmp.join(SIDECAR_NAME))?;
        writeln!(f, "{sha256}  {ARCHIVE_NAME}")?;
        f.sync_all()?;
        sync_dir(&tmp)?;
        let final_dir = versions.join(&id);
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&tmp, &final_dir)?;
        sync_dir(&versions)?;

        // Publish: one rename of the pointer.
        let link_tmp = self
            .root
            .join(format!(".{CURRENT}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(Path::new(VERSIONS).join(&id), &link_tmp)?;
        fs::rename(&link_tmp, self.root.join(CURRENT))?;
        // Seed names as links through the pointer (created once; replaced if plain files).
        for name in [ARCHIVE_NAME, SIDECAR_NAME] {
            let p = self.root.join(name);
            let want = Path::new(CURRENT).join(name);
            if fs::read_link(&p).ok().as_deref() != Some(want.as_path()) {
                let t = self
                    .root
                    .join(format!(".{name}.tmp-{}", std::process::id()));
                let _ = fs::remove_file(&t);
                std::os::unix::fs::symlink(&want, &t)?;
                fs::rename(&t, &p)?;
            }
        }
        sync_dir(&self.root)?;
        let t = std::time::Instant::now();
        self.prune(&versions, &id);
        tracing::debug!("dir store: pruned in {} ms", t.elapsed().as_millis());
        Ok(id)
    }

    /// Delete versions beyond the newest `KEEP` (names sort by time) and stale temp dirs.
    fn prune(&self, versions: &Path, current: &str) {
        let done = version_names(versions);
        let cut = done.len().saturating_sub(KEEP);
        for n in &done[..cut] {
            if n.as_str() != current {
                let _ = fs::remove_dir_all(versions.join(n));
            }
        }
    }
}

/// The published versions in `versions`, oldest first (names start with their time; temp dirs
/// with a dot).
fn version_names(versions: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(versions)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[async_trait]
impl Store for DirStore {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    async fn fetch_latest(&self, scratch: &Path) -> Result<Option<Fetched>, StoreError> {
        let this = DirStore {
            root: self.root.clone(),
        };
        let scratch = scratch.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let Some(dir) = this.latest_dir()? else {
                return Ok(None);
            };
            let expected = Self::read_sidecar(&dir)?;
            let src = dir.join(ARCHIVE_NAME);
            let dst = scratch.join(format!("fetched-{}.tar.gz", std::process::id()));
            let _ = fs::remove_file(&dst);
            // Hard link when possible (the stored archive is immutable), else copy; hash either way.
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(|e| io_err(&src, e))?;
            }
            let (actual, size) = sha256_file(&dst).map_err(|e| io_err(&dst, e))?;
            Ok(Some(Fetched {
                archive: dst,
                expected_sha256: expected,
                actual_sha256: actual,
                size,
            }))
        })
        .await
        .map_err(|e| StoreError::Other(format!("fetch task failed: {e}")))?
    }

    async fn put(&self, archive: &Path, sha256: &str) -> Result<Option<String>, StoreError> {
        let this = DirStore {
            root: self.root.clone(),
        };
        let (archive, sha) = (archive.to_path_buf(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            this.put_sync(&archive, &sha)
                .map(Some)
                .map_err(|e| io_err(&this.root, e))
        })
        .await
        .map_err(|e| StoreError::Other(format!("put task failed: {e}")))?
    }

    fn offers_spares(&self) -> bool {
        true
    }

    fn spare_archive(&self) -> Option<PathBuf> {
        // `prune` keeps the newest `KEEP` versions: once a new one is put, every version but
        // today's newest goes. Offer the newest of those (most likely still in the page cache).
        let current = fs::read_link(self.root.join(CURRENT)).ok()?;
        let current = current.file_name()?.to_str()?;
        let mut names = version_names(&self.root.join(VERSIONS));
        names.pop()?;
        let spare = names.pop().filter(|n| n != current)?;
        Some(self.root.join(VERSIONS).join(spare).join(ARCHIVE_NAME))
    }

    async fn head(&self) -> Result<Option<RemoteInfo>, StoreError> {
        let Some(dir) = self.latest_dir()? else {
            return Ok(None);
        };
        let sha256 = Self::read_sidecar(&dir)?;
        let size = fs::metadata(dir.join(ARCHIVE_NAME)).ok().map(|m| m.len());
        let version = (dir != self.root)
            .then(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten();
        Ok(Some(RemoteInfo {
            sha256,
            size,
            version,
        }))
    }
}

fn io_err(path: &Path, e: io::Error) -> StoreError {
    let msg = format!("backup folder {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            StoreError::Forbidden(format!("{msg}; make it readable and writable by this user"))
        }
        _ => StoreError::Unavailable(msg),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// SHA-256 (hex) and length of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// `YYYYMMDDTHHMMSS.nnnZ`-ish sortable UTC stamp without a date library.
fn timestamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (date, time) = crate::backup::civil(d.as_secs() as i64);
    format!("{date}T{time}.{:03}Z", d.subsec_millis()).replace([':', '-'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_folder_is_no_backup_and_put_creates_it() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path().join("backups"));
        assert!(store.fetch_latest(d.path()).await.unwrap().is_none());
        assert!(store.head().await.unwrap().is_none());
        let a = d.path().join("a.tar.gz");
        fs::write(&a, b"hello").unwrap();
        let sha = hex::encode(Sha256::digest(b"hello"));
        store.put(&a, &sha).await.unwrap();
        let got = store.fetch_latest(d.path()).await.unwrap().unwrap();
        assert_eq!(got.expected_sha256, sha);
        assert_eq!(got.actual_sha256, sha);
        // Seed names resolve to the same pair.
        assert_eq!(
            fs::read(d.path().join("backups").join(ARCHIVE_NAME)).unwrap(),
            b"hello"
        );
        // Three more puts: only KEEP versions stay.
        for i in 0..3 {
            fs::write(&a, format!("v{i}")).unwrap();
            store
                .put(&a, &hex::encode(Sha256::digest(format!("v{i}"))))
                .await
                .unwrap();
        }
        let n = fs::read_dir(d.path().join("backups").join(VERSIONS))
            .unwrap()
            .count();
        assert_eq!(n, KEEP);
        assert_eq!(
            store.head().await.unwrap().unwrap().sha256,
            hex::encode(Sha256::digest("v2"))
        );
    }

    #[tokio::test]
    async fn unreadable_folder_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let store = DirStore::new(file);
        assert!(store.fetch_latest(d.path()).await.is_err());
    }
}
