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
//! newest `keep` versions are kept (`ENTRYPOINT_BACKUP_KEEP`, default 3): a restore falls back
//! to them when a newer one fails verification, and a reader that resolved `current` just
//! before a swap still finds its files. Older ones are deleted after the swap.
//!
//! A seed folder (plain `latest_backup.tar.gz` + `latest_backup.sha256`, no `current`) is read
//! as-is, as the one version `seed`; the first put keeps that pair as the oldest version under
//! `.versions/` and turns the two names into the links above.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    parse_sidecar, Fetched, LocalVersions, Progress, Store, StoreError, Version, ARCHIVE_NAME,
    SIDECAR_NAME,
};
use crate::fsutil::sync_dir;

const VERSIONS: &str = ".versions";
const CURRENT: &str = "current";
/// The id of a seed folder's pair (plain files at the root, no `current`).
pub const SEED: &str = "seed";

#[derive(Clone)]
pub struct DirStore {
    root: PathBuf,
    /// Versions kept by `put` (at least 1).
    keep: usize,
}

impl DirStore {
    /// A store in `root` keeping the newest `keep` versions (at least 1).
    pub fn new(root: PathBuf, keep: usize) -> Self {
        DirStore {
            root,
            keep: keep.max(1),
        }
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
            // No pointer, but versions: a mount that keeps symlinks in memory only (hf-mount)
            // lost it, or a put stopped before it. The newest version is the latest (a
            // restore verifies it and falls back to the older ones).
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.has_versions() => {
                let newest = version_names(&self.root.join(VERSIONS)).pop();
                Ok(newest.map(|n| self.root.join(VERSIONS).join(n)))
            }
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

    /// Whether `.versions/` holds a published version (a folder not starting with a dot).
    fn has_versions(&self) -> bool {
        !version_names(&self.root.join(VERSIONS)).is_empty()
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

    /// What `dir`'s sidecar claims, None when it is missing or holds no digest.
    fn claimed_sha(dir: &Path) -> Result<Option<String>, StoreError> {
        match Self::read_sidecar(dir) {
            Ok(sha) => Ok(Some(sha)),
            Err(StoreError::Corrupt(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The folder holding version `id`, as named in `list_versions`.
    fn version_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let seed_layout = fs::symlink_metadata(self.root.join(CURRENT)).is_err();
        if id == SEED && seed_layout {
            return Ok(self.root.clone());
        }
        // Ids are plain names under `.versions/` (never a path, a temp dir or `..`).
        if id.is_empty() || id.starts_with('.') || id.contains('/') {
            return Err(StoreError::Missing(format!(
                "{} holds no version '{id}'; `entrypoint restore --list` shows the versions it holds",
                self.root.display()
            )));
        }
        Ok(self.root.join(VERSIONS).join(id))
    }

    /// Version `name` under `.versions/`, or None when its archive is gone (taken over by a
    /// backup, see `LocalVersions::retiring`, or being pruned).
    fn version(&self, name: &str) -> Result<Option<Version>, StoreError> {
        let dir = self.root.join(VERSIONS).join(name);
        let size = match fs::metadata(dir.join(ARCHIVE_NAME)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&dir, e)),
        };
        Ok(Some(Version {
            id: name.to_string(),
            time: time_of_name(name),
            size,
            sha256: Self::claimed_sha(&dir)?,
        }))
    }

    /// A seed folder's pair as a version (its time is the archive's mtime).
    fn seed_version(&self) -> Result<Option<Version>, StoreError> {
        let archive = self.root.join(ARCHIVE_NAME);
        let meta = match fs::metadata(&archive) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&archive, e)),
        };
        Ok(Some(Version {
            id: SEED.to_string(),
            time: meta.modified().ok().map(|t| rfc3339(&stamp(t))),
            size: meta.len(),
            sha256: Self::claimed_sha(&self.root)?,
        }))
    }

    fn list_sync(&self) -> Result<Vec<Version>, StoreError> {
        match fs::read_dir(&self.root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root, e)),
        }
        if fs::symlink_metadata(self.root.join(CURRENT)).is_err() && !self.has_versions() {
            return Ok(self.seed_version()?.into_iter().collect());
        }
        let mut out = Vec::new();
        for name in version_names(&self.root.join(VERSIONS)).iter().rev() {
            out.extend(self.version(name)?);
        }
        Ok(out)
    }

    fn head_sync(&self) -> Result<Option<Version>, StoreError> {
        let Some(dir) = self.latest_dir()? else {
            return Ok(None);
        };
        let sha256 = Self::read_sidecar(&dir)?;
        let archive = dir.join(ARCHIVE_NAME);
        let size = fs::metadata(&archive)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    StoreError::Corrupt(format!("{} is missing", archive.display()))
                }
                _ => io_err(&archive, e),
            })?
            .len();
        let (id, time) = if dir == self.root {
            let time = fs::metadata(&archive)
                .and_then(|m| m.modified())
                .ok()
                .map(|t| rfc3339(&stamp(t)));
            (SEED.to_string(), time)
        } else {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let time = time_of_name(&name);
            (name, time)
        };
        Ok(Some(Version {
            id,
            time,
            size,
            sha256: Some(sha256),
        }))
    }

    fn fetch_sync(
        &self,
        version: &Version,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<Fetched, StoreError> {
        let dir = self.version_dir(&version.id)?;
        let src = dir.join(ARCHIVE_NAME);
        if !src.exists() {
            return Err(StoreError::Missing(format!(
                "version {} is no longer in {} (pruned or taken over by a newer backup); `entrypoint restore --list` shows the versions it holds",
                version.id,
                self.root.display()
            )));
        }
        let expected = Self::read_sidecar(&dir)?;
        let dst = scratch.join(format!(
            "fetched-{}-{}.tar.gz",
            std::process::id(),
            rand::random::<u32>()
        ));
        // Hard link when possible (the stored archive is immutable), else copy; hash either way.
        if let Err(e) = fs::hard_link(&src, &dst).or_else(|_| fs::copy(&src, &dst).map(|_| ())) {
            let _ = fs::remove_file(&dst);
            return Err(match e.kind() {
                io::ErrorKind::NotFound => StoreError::Missing(format!(
                    "version {} vanished from {} while being read (pruned meanwhile)",
                    version.id,
                    self.root.display()
                )),
                _ => io_err(&src, e),
            });
        }
        let (actual, size) = sha256_file(&dst, progress).map_err(|e| {
            let _ = fs::remove_file(&dst);
            io_err(&dst, e)
        })?;
        Ok(Fetched {
            archive: dst,
            expected_sha256: expected,
            actual_sha256: actual,
            size,
        })
    }

    /// A seed pair (plain files at the root) becomes a version of its own before the first put
    /// replaces the root names with links, so it stays one to fall back to. Linked (or copied)
    /// into a temp dir and renamed into place: the pair at the root stays until then.
    fn adopt_seed(&self, versions: &Path) -> io::Result<()> {
        let archive = self.root.join(ARCHIVE_NAME);
        let seed = fs::symlink_metadata(&archive).is_ok_and(|m| m.file_type().is_file())
            && fs::symlink_metadata(self.root.join(CURRENT)).is_err();
        if !seed {
            return Ok(());
        }
        let sha = Self::claimed_sha(&self.root)
            .ok()
            .flatten()
            .map_or_else(|| "unverified".to_string(), |s| s[..12].to_string());
        let mtime = fs::metadata(&archive)?.modified()?;
        let id = format!("{}-{sha}", stamp(mtime));
        let tmp = versions.join(format!(".tmp-seed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp)?;
        for name in [ARCHIVE_NAME, SIDECAR_NAME] {
            let src = self.root.join(name);
            if src.exists() && fs::hard_link(&src, tmp.join(name)).is_err() {
                fs::copy(&src, tmp.join(name))?;
                File::open(tmp.join(name))?.sync_all()?;
            }
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, versions.join(&id))?;
        sync_dir(versions)
    }

    fn put_sync(&self, archive: &Path, sha256: &str) -> io::Result<String> {
        let versions = self.root.join(VERSIONS);
        fs::create_dir_all(&versions)?;
        self.adopt_seed(&versions)?;
        let id = format!("{}-{}", stamp(std::time::SystemTime::now()), &sha256[..12]);
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

    /// Delete versions beyond the newest `keep` (names sort by time). `retiring` offers
    /// exactly what this deletes next: keep the two in step.
    fn prune(&self, versions: &Path, current: &str) {
        let done = version_names(versions);
        let cut = done.len().saturating_sub(self.keep);
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

    async fn list_versions(&self) -> Result<Vec<Version>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.list_sync())
            .await
            .map_err(|e| StoreError::Other(format!("list task failed: {e}")))?
    }

    async fn fetch(
        &self,
        version: &Version,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<Fetched, StoreError> {
        let (this, version, scratch) = (self.clone(), version.clone(), scratch.to_path_buf());
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || this.fetch_sync(&version, &scratch, &progress))
            .await
            .map_err(|e| StoreError::Other(format!("fetch task failed: {e}")))?
    }

    async fn head(&self) -> Result<Option<Version>, StoreError> {
        self.head_sync()
    }

    async fn put(&self, archive: &Path, sha256: &str) -> Result<Option<String>, StoreError> {
        let this = self.clone();
        let (archive, sha) = (archive.to_path_buf(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            this.put_sync(&archive, &sha)
                .map(Some)
                .map_err(|e| io_err(&this.root, e))
        })
        .await
        .map_err(|e| StoreError::Other(format!("put task failed: {e}")))?
    }

    fn local_versions(&self) -> Option<&dyn LocalVersions> {
        Some(self)
    }
}

impl LocalVersions for DirStore {
    fn keep(&self) -> usize {
        self.keep
    }

    fn retiring(&self) -> Option<PathBuf> {
        // The next put adds one version, then `prune` deletes the oldest beyond `keep`: offer
        // the oldest exactly when it is one of those, and never the current one.
        let current = fs::read_link(self.root.join(CURRENT)).ok()?;
        let current = current.file_name()?.to_str()?;
        let names = version_names(&self.root.join(VERSIONS));
        if names.len() < self.keep {
            return None;
        }
        let oldest = names.first().filter(|n| n.as_str() != current)?;
        Some(self.root.join(VERSIONS).join(oldest).join(ARCHIVE_NAME))
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

/// SHA-256 (hex) and length of a file.
fn sha256_file(path: &Path, progress: &Progress) -> io::Result<(String, u64)> {
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
        progress.set(n);
    }
    Ok((hex::encode(h.finalize()), n))
}

/// `YYYYMMDDTHHMMSS.mmmZ`: a sortable UTC stamp without a date library (version names start
/// with it).
fn stamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (date, time) = crate::fsutil::civil(d.as_secs() as i64);
    format!("{date}T{time}.{:03}Z", d.subsec_millis()).replace([':', '-'], "")
}

/// `YYYYMMDDTHHMMSS.mmmZ` -> `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339).
fn rfc3339(stamp: &str) -> String {
    time_of_name(stamp).unwrap_or_else(|| stamp.to_string())
}

/// The RFC 3339 time a version name starts with, if it does.
fn time_of_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shaped = digits(0..8)
        && b.get(8) == Some(&b'T')
        && digits(9..15)
        && b.get(15) == Some(&b'.')
        && digits(16..19)
        && b.get(19) == Some(&b'Z');
    shaped.then(|| {
        format!(
            "{}-{}-{}T{}:{}:{}.{}Z",
            &name[0..4],
            &name[4..6],
            &name[6..8],
            &name[9..11],
            &name[11..13],
            &name[13..15],
            &name[16..19]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &DirStore, archive: &Path, content: &str) -> String {
        // Version names sort by their millisecond stamp: one put per millisecond at most.
        std::thread::sleep(std::time::Duration::from_millis(2));
        // A new file each time: put hard-links it into the store (archives are immutable).
        let _ = fs::remove_file(archive);
        fs::write(archive, content).unwrap();
        let sha = hex::encode(Sha256::digest(content));
        store.put_sync(archive, &sha).unwrap()
    }

    #[tokio::test]
    async fn missing_folder_is_no_backup_and_put_creates_it() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path().join("backups"), 2);
        assert!(store.fetch_latest(d.path()).await.unwrap().is_none());
        assert!(store.head().await.unwrap().is_none());
        assert!(store.list_versions().await.unwrap().is_empty());
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
        // Three more puts: only `keep` versions stay.
        for i in 0..3 {
            put(&store, &a, &format!("v{i}"));
        }
        let n = fs::read_dir(d.path().join("backups").join(VERSIONS))
            .unwrap()
            .count();
        assert_eq!(n, 2);
        let head = store.head().await.unwrap().unwrap();
        assert_eq!(head.sha256, Some(hex::encode(Sha256::digest("v2"))));
        let listed = store.list_versions().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0], head, "newest first, and head is the newest");
        assert_eq!(listed[1].sha256, Some(hex::encode(Sha256::digest("v1"))));
        // Any listed version can be fetched; its bytes are counted as they are read.
        let progress = Progress::default();
        let older = store.fetch(&listed[1], d.path(), &progress).await.unwrap();
        assert_eq!(fs::read(&older.archive).unwrap(), b"v1");
        assert_eq!(progress.bytes(), 2);
        assert_eq!(older.actual_sha256, older.expected_sha256);
    }

    /// The `LocalVersions` contract: `retiring` offers exactly the version the next put
    /// deletes: the oldest, once `keep` versions are kept, and never the current one (so with
    /// keep = 1, nothing).
    #[test]
    fn the_retiring_file_is_exactly_what_the_next_put_deletes() {
        for keep in 1..=4 {
            let d = tempfile::tempdir().unwrap();
            let store = DirStore::new(d.path().join("b"), keep);
            let a = d.path().join("a.tar.gz");
            let versions = d.path().join("b").join(VERSIONS);
            assert_eq!(store.keep(), keep);
            for i in 0..keep + 3 {
                let before = version_names(&versions);
                let retiring = store.retiring();
                let id = put(&store, &a, &format!("keep {keep} put {i}"));
                let after = version_names(&versions);
                let deleted: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
                let offered = retiring.map(|p| {
                    assert_eq!(p.file_name().unwrap(), ARCHIVE_NAME);
                    let dir = p.parent().unwrap();
                    assert_eq!(dir.parent().unwrap(), versions);
                    dir.file_name().unwrap().to_string_lossy().into_owned()
                });
                match offered {
                    Some(name) => assert_eq!(deleted, vec![&name], "keep {keep}, put {i}"),
                    // With keep = 1 the put deletes the current version, never offered.
                    None if keep == 1 => {
                        assert_eq!(deleted, before.last().into_iter().collect::<Vec<_>>())
                    }
                    None => assert!(deleted.is_empty(), "keep {keep}, put {i}: {deleted:?}"),
                }
                assert_eq!(after.len(), (i + 1).min(keep), "keep {keep}, put {i}");
                assert_eq!(after.last(), Some(&id));
            }
        }
    }

    /// The `LocalVersions` contract: a retiring file renamed away is a version no more: not
    /// listed, not fetched; the next put removes the rest of it, and the others stay intact.
    #[tokio::test]
    async fn a_retiring_file_taken_away_is_no_longer_a_version() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path().join("b"), 3);
        let a = d.path().join("a.tar.gz");
        for i in 0..3 {
            put(&store, &a, &format!("v{i}"));
        }
        let listed = store.list_versions().await.unwrap();
        assert_eq!(listed.len(), 3);
        let retiring = store.retiring().expect("the oldest is offered");
        fs::rename(&retiring, d.path().join("taken.tar.gz")).unwrap();
        let now = store.list_versions().await.unwrap();
        assert_eq!(now, listed[..2].to_vec());
        let e = store
            .fetch(&listed[2], d.path(), &Progress::default())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Missing(_)), "{e:?}");
        put(&store, &a, "v3");
        let now = store.list_versions().await.unwrap();
        assert_eq!(now.len(), 3);
        assert_eq!(now[1..], listed[..2]);
        assert_eq!(version_names(&d.path().join("b").join(VERSIONS)).len(), 3);
    }

    #[tokio::test]
    async fn a_seed_pair_is_a_version_and_stays_one_after_the_first_put() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("b");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join(ARCHIVE_NAME), "seed bytes").unwrap();
        let seed_sha = hex::encode(Sha256::digest("seed bytes"));
        fs::write(
            root.join(SIDECAR_NAME),
            format!("{seed_sha}  {ARCHIVE_NAME}\n"),
        )
        .unwrap();
        let store = DirStore::new(root.clone(), 3);
        let listed = store.list_versions().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, SEED);
        assert_eq!(listed[0].sha256.as_deref(), Some(seed_sha.as_str()));
        assert!(listed[0].time.as_deref().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(store.head().await.unwrap().unwrap(), listed[0]);

        put(&store, &d.path().join("a.tar.gz"), "new");
        let listed = store.list_versions().await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[1].sha256.as_deref(), Some(seed_sha.as_str()));
        let f = store
            .fetch(&listed[1], d.path(), &Progress::default())
            .await
            .unwrap();
        assert_eq!(fs::read(&f.archive).unwrap(), b"seed bytes");
        assert!(fs::symlink_metadata(root.join(ARCHIVE_NAME))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// A mount that keeps symlinks in memory only (hf-mount) loses `current` and the seed-name
    /// links on a restart: the versions are still there, the newest is the latest, and the
    /// next put publishes on top of them.
    #[tokio::test]
    async fn a_lost_pointer_falls_back_to_the_newest_version() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("b");
        let store = DirStore::new(root.clone(), 3);
        let a = d.path().join("a.tar.gz");
        let ids: Vec<String> = (0..2).map(|i| put(&store, &a, &format!("v{i}"))).collect();
        for name in [CURRENT, ARCHIVE_NAME, SIDECAR_NAME] {
            fs::remove_file(root.join(name)).unwrap();
        }
        let head = store.head().await.unwrap().expect("versions are backups");
        assert_eq!(head.id, ids[1]);
        assert_eq!(head.sha256, Some(hex::encode(Sha256::digest("v1"))));
        let listed = store.list_versions().await.unwrap();
        assert_eq!(
            listed.iter().map(|v| &v.id).collect::<Vec<_>>(),
            vec![&ids[1], &ids[0]]
        );
        let got = store.fetch_latest(d.path()).await.unwrap().unwrap();
        assert_eq!(fs::read(&got.archive).unwrap(), b"v1");
        let id = put(&store, &a, "v2");
        assert_eq!(store.head().await.unwrap().unwrap().id, id);
        assert_eq!(store.list_versions().await.unwrap().len(), 3);
    }

    #[test]
    fn version_names_carry_their_time() {
        assert_eq!(
            time_of_name("20261205T104500.123Z-0123456789ab").as_deref(),
            Some("2026-12-05T10:45:00.123Z")
        );
        assert_eq!(time_of_name("seed"), None);
        assert_eq!(time_of_name("20261205X104500.123Z"), None);
        let now = stamp(std::time::SystemTime::now());
        assert!(time_of_name(&now).is_some(), "{now}");
    }

    #[test]
    fn ids_never_leave_the_versions_folder() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path().to_path_buf(), 3);
        fs::create_dir_all(d.path().join(VERSIONS)).unwrap();
        std::os::unix::fs::symlink(".versions/x", d.path().join(CURRENT)).unwrap();
        for id in ["", "../x", ".tmp-1", "a/b", "seed"] {
            let e = store.version_dir(id);
            if id == "seed" {
                // Not a seed folder (it has `current`): a plain (absent) name.
                assert!(e.unwrap().ends_with(".versions/seed"));
            } else {
                assert!(matches!(e, Err(StoreError::Missing(_))), "{id:?}");
            }
        }
    }

    #[tokio::test]
    async fn unreadable_folder_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let store = DirStore::new(file, 3);
        assert!(store.fetch_latest(d.path()).await.is_err());
        assert!(store.list_versions().await.is_err());
    }
}
