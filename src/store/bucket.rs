//! `bucket` store: backups in a private Hugging Face Storage Bucket (`HF_BUCKET`), over the
//! hf-hub 1.0 crate's bucket API.
//!
//! Layout under `<prefix>/` (the bucket's root when `HF_BUCKET` names no folder):
//! - `versions/<UTC stamp>-<sha256>.tar.gz`: one immutable archive per backup, never
//!   overwritten; the name carries the digest the archive must hash to.
//! - `latest.sha256`: the pointer, in `sha256sum` format (`<hex>  versions/<name>`), so
//!   `sha256sum -c latest.sha256` works in a downloaded copy of the folder.
//!
//! Why this shape: the bucket API has no atomic multi-file publish and no conditional write
//! (facts/hf-storage-2026.md §2), but one path update is a swap to an uploaded xet hash, so a
//! reader sees the old or the new pointer. A `put` uploads the archive under its new name,
//! checks the Hub lists it, writes the pointer **last** and reads it back, and only then deletes
//! versions beyond the newest `ENTRYPOINT_BACKUP_KEEP`. A crash anywhere leaves the previous
//! pointer naming a whole archive.
//!
//! Reading: `head` is the pointer's target; when the pointer is missing, unreadable or names an
//! archive that is gone, it is the newest archive listed (with a warning). `list_versions` is
//! every archive, newest first, the pointer's target first. The digest of a version is the one
//! in its name; the restore checks the downloaded bytes against it.
//!
//! Like the dataset store (and through the same [`Conn`]): `open` does no I/O; the bucket is
//! created private on first upload; a public bucket is refused unless
//! `ENTRYPOINT_HF_ALLOW_PUBLIC=1`; every call has the `ENTRYPOINT_HF_TIMEOUT` deadline (an
//! upload one second more per MiB), 5xx and network errors are retried with backoff and a 429
//! waited out or paused on; another writer moving the pointer since this process last saw it is
//! reported as a conflict once, and the next backup publishes on top.
//!
//! hf-hub 1.0 quirks handled here (facts/hf-storage-2026.md §2): its batch call treats any 2xx
//! as success although the Hub reports per-file failures inside a 200 (`{"failed": [...]}`), and
//! `upload_files` sends `mtime` in seconds where the Hub uses milliseconds. So uploads go through
//! `upload_source_files` (which sends no mtime) and are verified afterwards (the archive through
//! paths-info, the pointer by reading it back); deletes go through our own batch call, which
//! reads `failed`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use hf_hub::buckets::{BucketInfo, BucketTreeEntry};
use hf_hub::repository::AddSource;
use hf_hub::HFBucket;
use tracing::{info, warn};

use super::hub::failure::{Failure, Kind};
use super::hub::{local_size, Conn, MIN_UPLOAD_BYTES_PER_SEC};
use super::{parse_sidecar, Fetched, Progress, Store, StoreError, Version};
use crate::settings::BucketSettings;

/// The pointer's file name, next to `versions/`.
pub const POINTER_NAME: &str = "latest.sha256";
/// The folder of the immutable archives.
pub const VERSIONS_DIR: &str = "versions";
const ARCHIVE_SUFFIX: &str = ".tar.gz";
/// A pointer is one line; anything much bigger is not one.
const MAX_POINTER_BYTES: usize = 4096;
/// Uploads (archive or pointer) that the Hub accepted but did not apply are tried this often.
const PUBLISH_TRIES: u32 = 2;

pub struct BucketStore {
    conn: Conn,
    bucket: HFBucket,
    /// Folder inside the bucket, no leading/trailing `/`; empty = the root.
    prefix: String,
    keep: usize,
    /// The pointer as this process last read or wrote it (`Some(None)`: there was none);
    /// None until then. A `put` that finds it changed reports a conflict.
    seen_pointer: Mutex<Option<Option<String>>>,
    /// Held for a whole `put`: uploads never overlap.
    writer: tokio::sync::Mutex<()>,
}

/// What the pointer says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pointer {
    sha256: String,
    /// The archive's file name inside `versions/`.
    name: String,
}

/// One archive under `versions/`, as listed.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    size: u64,
}

/// The pointer file as found.
enum Found {
    Missing,
    /// Present, but not a pointer (the reason); its text when it was readable.
    Bad(String, Option<String>),
    Good(Pointer, String),
}

impl BucketStore {
    /// Build the client. No network I/O here (see the module doc).
    pub async fn open(settings: &BucketSettings) -> anyhow::Result<Self> {
        let conn = Conn::new(Kind::Bucket, &settings.bucket, &settings.hub)?;
        Ok(BucketStore {
            prefix: settings.prefix.trim_matches('/').to_string(),
            keep: settings.keep.max(1),
            bucket: conn.client.bucket(&conn.owner, &conn.short_name),
            conn,
            seen_pointer: Mutex::new(None),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// A path inside our folder of the bucket.
    fn path(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn archive_path(&self, name: &str) -> String {
        self.path(&format!("{VERSIONS_DIR}/{name}"))
    }

    /// The bucket's info, or None when it does not exist.
    async fn bucket_info(&self, what: &str) -> Result<Option<BucketInfo>, StoreError> {
        match self
            .conn
            .call("reading the bucket info", || self.bucket.info().send())
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(Failure::RepoMissing) => {
                self.conn.check_token_after_404(what).await?;
                Ok(None)
            }
            Err(f) => Err(self.conn.fail(what, f)),
        }
    }

    /// The bucket, created private when missing; refused when public (see above).
    async fn ensure_bucket(&self, what: &str) -> Result<(), StoreError> {
        let info = match self.bucket_info(what).await? {
            Some(info) => info,
            None => {
                let (owner, name) = (self.bucket.owner(), self.bucket.name());
                self.conn
                    .call("creating the bucket", || {
                        self.conn
                            .client
                            .create_bucket()
                            .namespace(owner)
                            .name(name)
                            .private(true)
                            .exist_ok(true)
                            .send()
                    })
                    .await
                    .map_err(|f| self.conn.fail("creating the bucket", f))?;
                info!(bucket = %self.conn.name, "created private bucket {} for backups", self.conn.name);
                // Read it back: someone else may have created it (public) meanwhile.
                self.bucket_info(what)
                    .await?
                    .ok_or_else(|| self.conn.fail(what, Failure::RepoMissing))?
            }
        };
        self.conn.check_visibility(Some(info.private))
    }

    /// The whole content of a small file (the pointer), or None when it does not exist.
    async fn read_small(&self, path: &str, what: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self
            .conn
            .call("reading the pointer", || async {
                let (_, mut stream) = self
                    .bucket
                    .download_file_stream()
                    .remote_path(path)
                    .send()
                    .await?;
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.next().await {
                    bytes.extend_from_slice(&chunk?);
                    if bytes.len() > MAX_POINTER_BYTES {
                        break; // not a pointer; no need for the rest
                    }
                }
                Ok(bytes)
            })
            .await;
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Failure::EntryMissing) => Ok(None),
            Err(f) => Err(self.conn.fail(what, f)),
        }
    }

    /// Read and parse the pointer.
    async fn read_pointer(&self, what: &str) -> Result<Found, StoreError> {
        let Some(bytes) = self.read_small(&self.path(POINTER_NAME), what).await? else {
            return Ok(Found::Missing);
        };
        if bytes.len() > MAX_POINTER_BYTES {
            return Ok(Found::Bad(
                format!("it is over {MAX_POINTER_BYTES} bytes"),
                None,
            ));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(match parse_pointer(&text) {
            Ok(p) => Found::Good(p, text),
            Err(why) => Found::Bad(why, Some(text)),
        })
    }

    /// Every archive under `versions/` with a well-formed name, newest first.
    async fn list_archives(&self, what: &str) -> Result<Vec<Listed>, StoreError> {
        let dir = self.path(VERSIONS_DIR);
        let listed = self
            .conn
            .collect("listing the backup versions", || {
                let tree = self.bucket.list_tree();
                tree.prefix(dir.clone()).recursive(true).send()
            })
            .await;
        let entries = match listed {
            Ok(entries) => entries,
            // No `versions/` folder (yet).
            Err(Failure::RepoMissing | Failure::EntryMissing) => Vec::new(),
            Err(f) => return Err(self.conn.fail(what, f)),
        };
        let mut out: Vec<Listed> = entries
            .into_iter()
            .filter_map(|e| match e {
                BucketTreeEntry::File { path, size, .. } => {
                    let name = path.strip_prefix(&format!("{dir}/"))?.to_string();
                    parse_name(&name).map(|_| Listed { name, size })
                }
                BucketTreeEntry::Directory { .. } => None,
            })
            .collect();
        // Names start with a fixed-width UTC stamp: reverse name order is newest first.
        out.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(out)
    }

    /// The size of an archive, or None when the bucket does not list it.
    async fn archive_size(&self, name: &str, what: &str) -> Result<Option<u64>, StoreError> {
        let path = self.archive_path(name);
        let entries = self
            .conn
            .call("looking up the archive", || {
                self.bucket
                    .get_paths_info()
                    .paths(vec![path.clone()])
                    .send()
            })
            .await
            .map_err(|f| self.conn.fail(what, f))?;
        Ok(entries.into_iter().find_map(|e| match e {
            BucketTreeEntry::File { path: p, size, .. } if p == path => Some(size),
            _ => None,
        }))
    }

    /// A restore, `verify` or `--list` sets the baseline for conflict detection, unless one
    /// exists: an existing baseline is never advanced here, or another writer would go
    /// unnoticed.
    fn adopt_pointer(&self, text: Option<String>) {
        let mut seen = self.seen_pointer.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_none() {
            *seen = Some(text);
        }
    }

    fn set_seen_pointer(&self, text: Option<String>) {
        *self.seen_pointer.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    fn version(&self, listed: &Listed) -> Version {
        let (time, sha256) = parse_name(&listed.name).unzip();
        Version {
            id: listed.name.trim_end_matches(ARCHIVE_SUFFIX).to_string(),
            time,
            size: listed.size,
            sha256,
        }
    }

    /// The latest backup: the pointer's target, else (no usable pointer) the newest archive.
    async fn locate(&self, what: &str) -> Result<Option<Version>, StoreError> {
        let Some(info) = self.bucket_info(what).await? else {
            return Ok(None);
        };
        self.conn.check_visibility(Some(info.private))?;
        // Why the pointer cannot be used, and whether there is one at all.
        let (why, present) = match self.read_pointer(what).await? {
            Found::Good(p, text) => {
                self.adopt_pointer(Some(text));
                match self.archive_size(&p.name, what).await? {
                    Some(size) => {
                        let listed = Listed { name: p.name, size };
                        return Ok(Some(self.version(&listed)));
                    }
                    None => (
                        format!("names {VERSIONS_DIR}/{}, which is gone", p.name),
                        true,
                    ),
                }
            }
            Found::Bad(why, text) => {
                self.adopt_pointer(text);
                (why, true)
            }
            Found::Missing => {
                self.adopt_pointer(None);
                ("is missing".to_string(), false)
            }
        };
        let pointer = self.path(POINTER_NAME);
        match self.list_archives(what).await?.into_iter().next() {
            None if !present => Ok(None),
            None => Err(StoreError::Corrupt(format!(
                "{pointer} in bucket {} {why}, and no archive is left under {VERSIONS_DIR}/: remove the pointer to start fresh",
                self.conn.name
            ))),
            Some(newest) => {
                warn!(bucket = %self.conn.name, "{pointer} {why}: using the newest archive, {}", newest.name);
                Ok(Some(self.version(&newest)))
            }
        }
    }
}

/// The steps of an upload (`Store::put`).
impl BucketStore {
    /// Someone else moved the pointer since this process last read or wrote it?
    async fn check_conflict(&self, what: &str) -> Result<(), StoreError> {
        let seen = self
            .seen_pointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(seen) = seen else {
            return Ok(()); // never looked: nothing to compare with
        };
        let now = match self.read_pointer(what).await? {
            Found::Good(_, text) | Found::Bad(_, Some(text)) => Some(text),
            Found::Bad(_, None) | Found::Missing => None,
        };
        if now == seen {
            return Ok(());
        }
        // Report once; the next backup publishes on top (staying stuck would stop backups).
        self.set_seen_pointer(now);
        Err(StoreError::Conflict(format!(
            "{} in bucket {} changed since this container last read or wrote it: another writer (a second Space or container, or a manual upload) uses it; not overwriting now, the next backup publishes on top",
            self.path(POINTER_NAME),
            self.conn.name
        )))
    }

    /// Upload one file (archive or pointer) and check it arrived (`arrived`): hf-hub's batch
    /// call passes a per-file failure inside a 200 as success (see the module doc).
    async fn publish<F, Fut>(
        &self,
        what: &str,
        path: &str,
        source: AddSource,
        deadline: Duration,
        arrived: F,
    ) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool, StoreError>>,
    {
        for _ in 0..PUBLISH_TRIES {
            // An upload to the same path with the same bytes is safe to repeat, so (unlike a
            // dataset commit) hf-hub's call may be retried as a whole.
            let sent = self
                .conn
                .call_within(what, deadline, || {
                    self.bucket
                        .upload_source_files()
                        .files(vec![(path.to_string(), source.clone())])
                        .send()
                })
                .await;
            match sent {
                Ok(()) if arrived().await? => return Ok(()),
                Ok(()) => {
                    warn!(bucket = %self.conn.name, "{what}: the Hub accepted {path} but does not show it")
                }
                // 422: the batch's only operation failed (the Hub says why).
                Err(Failure::Other(m)) if m.starts_with("HTTP 422") => {
                    warn!(bucket = %self.conn.name, "{what}: the Hub refused {path}: {m}")
                }
                Err(f) => return Err(self.conn.fail(what, f)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{what} to bucket {}: the Hub did not store {path}, {PUBLISH_TRIES} times (a per-file failure in its batch answer); the previous backup stays the latest",
            self.conn.name
        )))
    }

    /// Delete archives beyond the newest `keep` (never `current`); problems are only logged:
    /// the backup itself is published.
    async fn prune(&self, current: &str) {
        let what = "removing old versions";
        let listed = match self.list_archives(what).await {
            Ok(l) => l,
            Err(e) => return warn!(bucket = %self.conn.name, "{e}"),
        };
        let old: Vec<String> = listed
            .iter()
            .filter(|l| l.name != current)
            .skip(self.keep - 1)
            .map(|l| self.archive_path(&l.name))
            .collect();
        if old.is_empty() {
            return;
        }
        match self.delete(&old).await {
            Ok(failed) if failed.is_empty() => {
                info!(bucket = %self.conn.name, "removed {} old version(s)", old.len())
            }
            Ok(failed) => {
                warn!(bucket = %self.conn.name, "{what}: the Hub refused to delete {}", failed.join(", "))
            }
            Err(f) => warn!("{}", self.conn.fail(what, f)),
        }
    }

    /// Delete `paths` in one NDJSON batch; returns the paths the Hub reports as failed. Our
    /// own call: hf-hub's `delete_files` drops the 200's `failed` list.
    async fn delete(&self, paths: &[String]) -> Result<Vec<String>, Failure> {
        let url = format!(
            "{}/api/buckets/{}/batch",
            self.conn.endpoint, self.conn.name
        );
        let body: String = paths
            .iter()
            .map(|p| serde_json::json!({"type": "deleteFile", "path": p}).to_string() + "\n")
            .collect();
        let answer = self
            .conn
            .raw("deleting old versions", || {
                self.conn
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(body.clone())
            })
            .await?;
        Ok(batch_failures(&answer))
    }
}

#[async_trait]
impl Store for BucketStore {
    fn describe(&self) -> String {
        let name = if self.prefix.is_empty() {
            self.conn.name.clone()
        } else {
            format!("{}/{}", self.conn.name, self.prefix)
        };
        self.conn.describe("bucket", &name)
    }

    async fn list_versions(&self) -> Result<Vec<Version>, StoreError> {
        let what = "listing the backup versions";
        let Some(info) = self.bucket_info(what).await? else {
            return Ok(Vec::new());
        };
        self.conn.check_visibility(Some(info.private))?;
        let pointer = match self.read_pointer(what).await? {
            Found::Good(p, text) => {
                self.adopt_pointer(Some(text));
                Some(p.name)
            }
            Found::Bad(_, text) => {
                self.adopt_pointer(text);
                None
            }
            Found::Missing => {
                self.adopt_pointer(None);
                None
            }
        };
        let mut listed = self.list_archives(what).await?;
        // The pointer's target first (`head`), then the rest newest first.
        if let Some(i) = listed
            .iter()
            .position(|l| Some(&l.name) == pointer.as_ref())
        {
            let head = listed.remove(i);
            listed.insert(0, head);
        }
        Ok(listed.iter().map(|l| self.version(l)).collect())
    }

    async fn fetch(
        &self,
        version: &Version,
        scratch: &Path,
        progress: &Progress,
    ) -> Result<Fetched, StoreError> {
        let name = format!("{}{ARCHIVE_SUFFIX}", version.id);
        let expected_sha256 = version
            .sha256
            .clone()
            .or_else(|| parse_name(&name).map(|(_, sha)| sha))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{} in bucket {} does not name its SHA-256 digest: it cannot be verified",
                    self.archive_path(&name),
                    self.conn.name
                ))
            })?;
        let path = self.archive_path(&name);
        let (archive, actual_sha256) = self
            .conn
            .download(&path, version.size, scratch, progress, || {
                self.bucket.download_file_stream().remote_path(&path).send()
            })
            .await?;
        info!(bucket = %self.conn.name, archive = %path, size = version.size, "downloaded the backup");
        Ok(Fetched {
            archive,
            expected_sha256,
            actual_sha256,
            size: version.size,
        })
    }

    async fn head(&self) -> Result<Option<Version>, StoreError> {
        self.locate("reading the latest backup").await
    }

    async fn put(&self, archive: &Path, sha256: &str) -> Result<Option<String>, StoreError> {
        let what = "upload";
        let _writer = self.writer.lock().await;
        let size = local_size(archive)?;
        self.ensure_bucket(what).await?;
        self.check_conflict(what).await?;
        let name = archive_name(std::time::SystemTime::now(), sha256);
        let path = self.archive_path(&name);
        let deadline = self.conn.timeout + Duration::from_secs(size / MIN_UPLOAD_BYTES_PER_SEC);
        self.publish(what, &path, AddSource::file(archive), deadline, || async {
            Ok(self.archive_size(&name, what).await? == Some(size))
        })
        .await?;
        // The pointer last: until it moves, readers see the previous backup.
        let text = format!("{sha256}  {VERSIONS_DIR}/{name}\n");
        let pointer_path = self.path(POINTER_NAME);
        self.publish(
            "updating the pointer",
            &pointer_path,
            AddSource::bytes(text.clone().into_bytes()),
            self.conn.timeout,
            || async {
                let back = self.read_small(&pointer_path, what).await?;
                Ok(back.as_deref() == Some(text.as_bytes()))
            },
        )
        .await?;
        self.set_seen_pointer(Some(text));
        info!(bucket = %self.conn.name, archive = %path, size, "uploaded the backup");
        self.prune(&name).await;
        Ok(Some(name.trim_end_matches(ARCHIVE_SUFFIX).to_string()))
    }
}

/// `<YYYYMMDDTHHMMSS.mmmZ>-<sha256>.tar.gz` for an archive published at `at`.
fn archive_name(at: std::time::SystemTime, sha256: &str) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (date, time) = crate::fsutil::civil(since.as_secs() as i64);
    format!(
        "{}T{}.{:03}Z-{sha256}{ARCHIVE_SUFFIX}",
        date.replace('-', ""),
        time.replace(':', ""),
        since.subsec_millis()
    )
}

/// An archive name's time (RFC 3339) and digest; None when it is not one of ours.
fn parse_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(ARCHIVE_SUFFIX)?;
    let (stamp, sha) = stem.split_once('-')?;
    let b = stamp.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let stamp_ok = b.len() == 20
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z';
    let sha_ok = sha.len() == 64
        && sha
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !(stamp_ok && sha_ok) {
        return None;
    }
    let s = |r: std::ops::Range<usize>| &stamp[r];
    let time = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        s(0..4),
        s(4..6),
        s(6..8),
        s(9..11),
        s(11..13),
        s(13..15),
        s(16..19)
    );
    Some((time, sha.to_string()))
}

/// Parse the pointer: `<hex>  versions/<name>`, the name carrying the same digest.
fn parse_pointer(text: &str) -> Result<Pointer, String> {
    let sha256 =
        parse_sidecar(text).map_err(|_| "does not start with a SHA-256 digest".to_string())?;
    let target = text.split_whitespace().nth(1).unwrap_or("");
    let name = target
        .strip_prefix(&format!("{VERSIONS_DIR}/"))
        .ok_or_else(|| format!("does not name an archive under {VERSIONS_DIR}/"))?;
    match parse_name(name) {
        Some((_, named)) if named == sha256 => Ok(Pointer {
            sha256,
            name: name.to_string(),
        }),
        Some(_) => Err(format!("names {target}, whose digest differs from its own")),
        None => Err(format!(
            "names {target}, which is not a backup archive name"
        )),
    }
}

/// The paths a batch answer reports as failed (`{"failed": [{"path", "error"}]}`), with the
/// Hub's reason; an answer that is not JSON or has no `failed` means none.
fn batch_failures(answer: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    v["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let path = f["path"].as_str().unwrap_or("?");
                    match f["error"].as_str() {
                        Some(e) => format!("{path} ({e})"),
                        None => path.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn archive_names_round_trip_and_sort_by_time() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let name = archive_name(t, SHA);
        assert_eq!(name, format!("20261130T005320.123Z-{SHA}.tar.gz"));
        let (time, sha) = parse_name(&name).expect("ours");
        assert_eq!(time, "2026-11-30T00:53:20.123Z");
        assert_eq!(sha, SHA);
        let later = archive_name(t + Duration::from_millis(1), SHA);
        assert!(later > name);
        for bad in [
            "x.tar.gz",
            &format!("20261130T005320.123Z-{}.tar.gz", &SHA[1..]),
            &format!("20261129T230320Z-{SHA}.tar.gz"),
            &format!("20261130T005320.123Z-{SHA}.tar"),
        ] {
            assert!(parse_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn pointers_must_name_an_archive_with_their_digest() {
        let name = format!("20261130T005320.123Z-{SHA}.tar.gz");
        let p = parse_pointer(&format!("{SHA}  versions/{name}\n")).expect("good");
        assert_eq!((p.sha256.as_str(), p.name.as_str()), (SHA, name.as_str()));
        let other = "f".repeat(64);
        assert!(parse_pointer(&format!("{other}  versions/{name}")).is_err());
        assert!(parse_pointer(&format!("{SHA}  {name}")).is_err());
        assert!(parse_pointer(SHA).is_err());
        assert!(parse_pointer("garbage").is_err());
    }

    #[test]
    fn batch_answers_report_their_failures() {
        assert!(batch_failures("").is_empty());
        assert!(batch_failures(r#"{"success":true}"#).is_empty());
        assert_eq!(
            batch_failures(r#"{"failed":[{"path":"a","error":"nope"},{"path":"b"}]}"#),
            vec!["a (nope)".to_string(), "b".to_string()]
        );
    }
}
