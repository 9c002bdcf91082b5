//! Restore: pick a version -> fetch -> verify -> swap.
//!
//! Two halves, kept apart so the fallback stays short:
//! - **verify one fetched version** (`check`): the SHA-256 against the sidecar, a full read of
//!   the archive while extracting it into an empty staging dir next to the state dir, and
//!   `quick_check` of every database in it. A failure there is the version's (its bytes are
//!   bad): another version may do. A failure on this side (disk full, permissions) or of the
//!   store (unreachable, 401) stops the restore: an older version would not fix it, and taking
//!   one would replace the state with a worse one for no reason.
//! - **swap** (`install`): rename the staged state into place (below).
//!
//! Which version: the newest that verifies (`restore_latest`), walking the store's versions
//! newest first (`Store::list_versions`; the latest alone, `Store::head`, while it verifies),
//! and saying in one line which one was taken and why newer ones were skipped. Or exactly
//! one (`Pick::Exactly`, `entrypoint restore --version`), with no fallback.
//!
//! The swap (names next to the state dir, same filesystem):
//! 1. extract into `.openclaw.staging-<id>/.openclaw` (fresh, empty), check its databases
//!    (`quick_check`) and clear the dead gateway's owner lease;
//! 2. rename `.openclaw` -> `.openclaw.old-<id>`, then `staging/.openclaw` -> `.openclaw`,
//!    fsync the parent;
//! 3. rename `.openclaw.old-<id>` -> `.openclaw.pre-restore` (kept until the next successful
//!    backup, see below).
//!
//! A kill at any moment leaves the old or the new state in place: `recover` (run before every
//! restore) puts `.openclaw.old-*` back when `.openclaw` is missing, and tidies leftovers.
//!
//! When is the state on disk replaced? Only when it is not already the version about to be
//! taken (`state.sha256` in the meta dir records the backup it equals, written by every upload
//! and restore). Versions are tried newest first and the walk stops at the one the state on
//! disk equals, so a persistent /data is never replaced by the same or an older copy of
//! itself, even when newer versions fail verification. After a fallback, `restore-skipped.json`
//! records which newer versions failed and why; while the state on disk still equals the
//! version taken then, the next start skips them without downloading them again (a hash
//! mismatch, which a bad transfer can cause, is always tried again). Local state with no
//! record, or a different one, may hold work the store lacks (backups failed, or the meta dir
//! was lost): the store still wins, since it is what the operator configured as the source of
//! truth, but the replaced state is kept as `.openclaw.pre-restore` until the next successful
//! backup, so nothing is lost without a chance to look.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use tracing::{info, warn};

use crate::archive::{extract, write as awrite, ROOT};
use crate::fsutil::sync_dir;
use crate::meta::cache::Install;
use crate::meta::{self, Job};
use crate::openclaw::state;
use crate::snapshot::{self, Fingerprint, Kind};
use crate::store::{Fetched, Progress, Store, StoreError, Version};

/// A skip reason is cut to this many characters (a database's whole quick_check report would
/// be dozens of lines).
const MAX_WHY: usize = 240;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Restored {
        version: String,
        time: Option<String>,
        sha256: String,
        size: u64,
        /// Newer versions that failed verification, newest first.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<Skipped>,
    },
    /// The store positively holds no backup: fresh start.
    NoBackup,
    /// The state on disk already is the newest version that verifies: nothing to do.
    UpToDate {
        version: String,
        sha256: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<Skipped>,
    },
    /// `verify`: the version is intact, extractable, and its databases pass `quick_check`.
    Verified {
        version: String,
        sha256: String,
        size: u64,
        files: u64,
    },
}

/// A version not taken, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub version: String,
    /// The digest its sidecar claims, when it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub why: String,
}

/// Which version to restore or verify.
#[derive(Debug, Clone)]
pub enum Pick {
    /// The newest that verifies (`restore`), or the latest (`verify`).
    Newest,
    /// Exactly this one (an id as `--list` shows it, or a unique prefix of one).
    Exactly(String),
}

impl Outcome {
    /// The newer versions skipped on the way to this one.
    pub fn skipped(&self) -> &[Skipped] {
        match self {
            Outcome::Restored { skipped, .. } | Outcome::UpToDate { skipped, .. } => skipped,
            _ => &[],
        }
    }
}

impl fmt::Display for Outcome {
    /// One line, for logs and the CLI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Restored {
                version,
                time,
                sha256,
                skipped,
                ..
            } => {
                write!(f, "restored version {}", short_id(version))?;
                if let Some(t) = time {
                    write!(f, " of {t}")?;
                }
                write!(f, " (sha256 {})", &sha256[..12.min(sha256.len())])?;
                write_skipped(f, skipped)
            }
            Outcome::NoBackup => write!(f, "no backup: fresh start"),
            Outcome::UpToDate {
                version, skipped, ..
            } => {
                write!(
                    f,
                    "the state on disk already is version {}, nothing to restore",
                    short_id(version)
                )?;
                write_skipped(f, skipped)
            }
            Outcome::Verified {
                version,
                sha256,
                files,
                ..
            } => write!(
                f,
                "version {} (sha256 {}) verifies: {files} files, databases intact",
                short_id(version),
                &sha256[..12.min(sha256.len())]
            ),
        }
    }
}

fn write_skipped(f: &mut fmt::Formatter<'_>, skipped: &[Skipped]) -> fmt::Result {
    if skipped.is_empty() {
        return Ok(());
    }
    write!(f, "; newer versions skipped: {}", describe_skipped(skipped))
}

fn describe_skipped(skipped: &[Skipped]) -> String {
    skipped
        .iter()
        .map(|s| format!("{} ({})", short_id(&s.version), s.why))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A 40-hex commit id shows as its first 12 characters (a prefix `--version` accepts).
fn short_id(id: &str) -> &str {
    if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// A reason as one line of bounded length: the first two lines of a multi-line text (a
/// quick_check report), joined.
pub fn one_line_why(text: &str) -> String {
    let mut out = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ");
    if text.lines().filter(|l| !l.trim().is_empty()).count() > 2 {
        out.push_str(" / ...");
    }
    if out.chars().count() > MAX_WHY {
        out = out.chars().take(MAX_WHY - 3).collect::<String>() + "...";
    }
    out
}

/// What a restore is doing right now, for whoever shows it (the front door's status page):
/// the version it fetches or checks, and the bytes so far. Clones share it; the restore is the
/// only writer.
#[derive(Debug, Clone, Default)]
pub struct Watch(Arc<Mutex<Option<Now>>>);

/// One moment of a restore, as `Watch::now` reads it.
#[derive(Debug, Clone)]
pub struct Now {
    /// The version's id (a commit id cut to 12 characters).
    pub version: String,
    pub time: Option<String>,
    /// The archive's size, as the store listed it.
    pub size: u64,
    /// Downloaded; now checking hash, archive and databases (and swapping it in).
    pub checking: bool,
    /// The store's count of the bytes fetched so far.
    progress: Progress,
}

impl Now {
    /// Bytes of the archive fetched so far.
    pub fn fetched(&self) -> u64 {
        self.progress.bytes()
    }

    /// A moment as pages show it, for their tests.
    #[cfg(test)]
    pub(crate) fn example(size: u64, fetched: u64, checking: bool) -> Now {
        let progress = Progress::default();
        progress.set(fetched);
        Now {
            version: "d739cc1041ba".into(),
            time: Some("2026-12-05T17:00:00Z".into()),
            size,
            checking,
            progress,
        }
    }
}

impl Watch {
    /// What the restore is doing now; None before it fetches anything.
    pub fn now(&self) -> Option<Now> {
        self.slot().clone()
    }

    /// Fetching `v` starts: the returned counter is the store's to fill.
    fn fetching(&self, v: &Version) -> Progress {
        let progress = Progress::default();
        *self.slot() = Some(Now {
            version: short_id(&v.id).to_string(),
            time: v.time.clone(),
            size: v.size,
            checking: false,
            progress: progress.clone(),
        });
        progress
    }

    fn checking(&self) {
        if let Some(now) = self.slot().as_mut() {
            now.checking = true;
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Now>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Restore the newest backup that verifies over the state dir. When none does (or the store
/// cannot be read), the state on disk is untouched and uploads stay blocked (a marker in the
/// meta dir) until a restore succeeds or a backup is forced.
pub async fn restore_latest(
    job: &Job,
    store: &dyn Store,
    watch: &Watch,
) -> anyhow::Result<Outcome> {
    restore(job, store, &Pick::Newest, watch).await
}

/// Restore `pick`. `Pick::Exactly` never falls back; its failure leaves the state on disk and
/// the upload latch as they were (nothing changed).
pub async fn restore(
    job: &Job,
    store: &dyn Store,
    pick: &Pick,
    watch: &Watch,
) -> anyhow::Result<Outcome> {
    let _lock = job.meta.lock("restore").await?;
    recover(&job.state_dir)?;
    let result = match pick {
        Pick::Newest => Walk::new(job, store, watch).run().await,
        Pick::Exactly(id) => restore_exactly(job, store, id, watch).await,
    };
    match (&result, pick) {
        (Ok(_), _) => {
            job.meta.resume_uploads();
        }
        (Err(e), Pick::Newest) => {
            if let Err(latch) = job.meta.pause_uploads(&format!("{e:#}")) {
                warn!("cannot pause uploads after the failed restore: {latch:#}");
            }
        }
        (Err(_), Pick::Exactly(_)) => {}
    }
    // A fallback is said here, once, whoever asked for the restore.
    if let Ok(o) = &result {
        if !o.skipped().is_empty() {
            warn!("{}: {o}", store.describe());
        }
    }
    result
}

/// The digest `state.sha256` records for the state on disk, if the state is there.
fn local_sha(job: &Job) -> Option<String> {
    if !job.state_dir.is_dir() {
        return None;
    }
    job.meta.state_sha()
}

/// The newest-first walk over the store's versions (see the module doc).
struct Walk<'a> {
    job: &'a Job,
    store: &'a dyn Store,
    watch: &'a Watch,
    local: Option<String>,
    /// Skips recorded by the last fallback, valid while the state still equals `taken`.
    known: Memo,
    skipped: Vec<Skipped>,
    tried: HashSet<String>,
    /// Why `head` could not describe the latest version (its pair is unreadable).
    head_failed: Option<String>,
}

/// What a fallback left in `restore-skipped.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Memo {
    /// The digest of the version taken (what `state.sha256` then said).
    taken: String,
    /// Versions that failed after their bytes matched the sidecar (archive or database): the
    /// same bytes fail the same way.
    bad: Vec<Skipped>,
}

impl Memo {
    fn load(meta: &meta::Meta, local: Option<&str>) -> Memo {
        let memo: Memo = meta.skipped().unwrap_or_default();
        if local.is_some_and(|l| l == memo.taken) {
            memo
        } else {
            Memo::default()
        }
    }

    fn known_bad(&self, v: &Version) -> Option<&Skipped> {
        let sha = v.sha256.as_ref()?;
        self.bad.iter().find(|s| s.sha256.as_ref() == Some(sha))
    }
}

/// What became of one version.
enum Verdict<T = extract::Stats> {
    /// Verified (and swapped in, when asked).
    Good(T),
    /// Its content fails verification. `stable`: its bytes matched the sidecar, so the same
    /// bytes always fail (worth remembering); a hash mismatch may be a bad transfer.
    Bad { why: String, stable: bool },
}

impl<'a> Walk<'a> {
    fn new(job: &'a Job, store: &'a dyn Store, watch: &'a Watch) -> Walk<'a> {
        let local = local_sha(job);
        Walk {
            job,
            store,
            watch,
            known: Memo::load(&job.meta, local.as_deref()),
            local,
            skipped: Vec::new(),
            tried: HashSet::new(),
            head_failed: None,
        }
    }

    async fn run(mut self) -> Result<Outcome> {
        // The latest alone first: the common case costs no listing.
        match self.store.head().await {
            Ok(None) => return Ok(Outcome::NoBackup),
            Ok(Some(v)) => {
                if let Some(done) = self.consider(&v).await? {
                    return self.finish(done);
                }
            }
            Err(StoreError::Corrupt(why)) => self.head_failed = Some(one_line_why(&why)),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot read the latest backup in {}",
                    self.store.describe()
                )))
            }
        }
        let versions = self.store.list_versions().await.with_context(|| {
            format!(
                "the latest backup in {} failed verification ({}) and the older versions cannot be listed",
                self.store.describe(),
                describe_skipped(&self.skipped)
            )
        })?;
        if versions.first().is_some_and(|v| v.sha256.is_some()) {
            // The broken latest is not among the versions (e.g. a sidecar without archive).
            if let Some(why) = self.head_failed.take() {
                self.skip("latest", None, why);
            }
        }
        for v in &versions {
            let seen = self.tried.contains(&v.id)
                || v.sha256.as_ref().is_some_and(|s| self.tried.contains(s));
            if !seen {
                if let Some(done) = self.consider(v).await? {
                    return self.finish(done);
                }
            }
        }
        if let Some(why) = self.head_failed.take() {
            self.skip("latest", None, why);
        }
        bail!(
            "no backup in {} verifies: {}; the state on disk is kept and uploads are paused: replace the bad backups or restore one by hand (`entrypoint restore --list`, `entrypoint restore --version <id>`), or run `entrypoint backup --force` to upload the state on disk",
            self.store.describe(),
            describe_skipped(&self.skipped)
        )
    }

    fn skip(&mut self, version: &str, sha256: Option<String>, why: String) {
        self.skipped.push(Skipped {
            version: version.to_string(),
            sha256,
            why,
        });
    }

    /// Take `v` if it is the state on disk or verifies; None to go on with older versions.
    async fn consider(&mut self, v: &Version) -> Result<Option<Outcome>> {
        self.tried.insert(v.id.clone());
        let Some(sha) = v.sha256.clone() else {
            let why = self
                .head_failed
                .take()
                .unwrap_or_else(|| "its sidecar is missing or holds no SHA-256 digest".to_string());
            self.skip(&v.id, None, why);
            return Ok(None);
        };
        self.tried.insert(sha.clone());
        if self.local.as_deref() == Some(sha.as_str()) {
            return Ok(Some(Outcome::UpToDate {
                version: v.id.clone(),
                sha256: sha,
                skipped: std::mem::take(&mut self.skipped),
            }));
        }
        if let Some(known) = self.known.known_bad(v) {
            let why = format!("known bad: {}", known.why);
            self.skip(&v.id, Some(sha), why);
            return Ok(None);
        }
        match fetch_and_check(self.job, self.store, v, true, self.watch).await? {
            Verdict::Good(_) => Ok(Some(Outcome::Restored {
                version: v.id.clone(),
                time: v.time.clone(),
                sha256: sha,
                size: v.size,
                skipped: std::mem::take(&mut self.skipped),
            })),
            Verdict::Bad { why, stable } => {
                if stable {
                    self.known.bad.push(Skipped {
                        version: v.id.clone(),
                        sha256: Some(sha.clone()),
                        why: why.clone(),
                    });
                }
                self.skip(&v.id, Some(sha), why);
                Ok(None)
            }
        }
    }

    /// Remember the stable failures of this fallback for as long as the state equals the
    /// version taken (or forget the last one's: nothing was skipped).
    fn finish(self, done: Outcome) -> Result<Outcome> {
        let taken = match &done {
            Outcome::Restored { sha256, .. } | Outcome::UpToDate { sha256, .. } => sha256,
            _ => return Ok(done),
        };
        let shas: HashSet<&String> = self.tried.iter().collect();
        let bad: Vec<Skipped> = self
            .known
            .bad
            .into_iter()
            .filter(|s| s.sha256.as_ref().is_some_and(|x| shas.contains(x)))
            .collect();
        let memo = (!bad.is_empty()).then(|| Memo {
            taken: taken.clone(),
            bad,
        });
        if let Err(e) = self.job.meta.set_skipped(memo.as_ref()) {
            warn!("cannot record the skipped versions: {e:#}");
        }
        Ok(done)
    }
}

/// `--version <id>`: the version with that id, or the one whose id starts with it.
async fn find_version(store: &dyn Store, id: &str) -> Result<Version> {
    let versions = store
        .list_versions()
        .await
        .with_context(|| format!("cannot list the versions in {}", store.describe()))?;
    if let Some(v) = versions.iter().find(|v| v.id == id) {
        return Ok(v.clone());
    }
    let matches: Vec<&Version> = versions.iter().filter(|v| v.id.starts_with(id)).collect();
    match matches.as_slice() {
        [v] if !id.is_empty() => Ok((*v).clone()),
        [] | [_] => bail!(
            "{} holds no version '{id}'; `entrypoint restore --list` shows the versions it holds",
            store.describe()
        ),
        _ => bail!(
            "'{id}' names {} versions in {}; give more of the id (`entrypoint restore --list`)",
            matches.len(),
            store.describe()
        ),
    }
}

async fn restore_exactly(job: &Job, store: &dyn Store, id: &str, watch: &Watch) -> Result<Outcome> {
    let v = find_version(store, id).await?;
    let Some(sha) = v.sha256.clone() else {
        bail!(
            "version {} in {} cannot be restored: its sidecar is missing or holds no SHA-256 digest; the state on disk is kept",
            short_id(&v.id),
            store.describe()
        );
    };
    if local_sha(job).as_deref() == Some(sha.as_str()) {
        return Ok(Outcome::UpToDate {
            version: v.id,
            sha256: sha,
            skipped: Vec::new(),
        });
    }
    match fetch_and_check(job, store, &v, true, watch).await? {
        Verdict::Good(_) => Ok(Outcome::Restored {
            version: v.id,
            time: v.time,
            sha256: sha,
            size: v.size,
            skipped: Vec::new(),
        }),
        Verdict::Bad { why, .. } => bail!(
            "version {} in {} fails verification ({why}); the state on disk is kept; `entrypoint restore --list` shows the other versions",
            short_id(&v.id),
            store.describe()
        ),
    }
}

/// Fetch and fully check a version (the latest, or `pick`) without changing the state.
pub async fn verify(job: &Job, store: &dyn Store, pick: &Pick) -> anyhow::Result<Outcome> {
    // One at a time with backups and restores: the download folder is shared.
    let _lock = job.meta.lock("verify").await?;
    let v = match pick {
        Pick::Exactly(id) => find_version(store, id).await?,
        Pick::Newest => match store.head().await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(Outcome::NoBackup),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot read the latest backup in {}",
                    store.describe()
                )))
            }
        },
    };
    let Some(sha) = v.sha256.clone() else {
        bail!(
            "version {} in {} fails verification: its sidecar is missing or holds no SHA-256 digest",
            short_id(&v.id),
            store.describe()
        );
    };
    match fetch_and_check(job, store, &v, false, &Watch::default()).await? {
        Verdict::Good(stats) => Ok(Outcome::Verified {
            version: v.id,
            sha256: sha,
            size: v.size,
            files: stats.files,
        }),
        Verdict::Bad { why, .. } => bail!(
            "version {} in {} fails verification: {why}",
            short_id(&v.id),
            store.describe()
        ),
    }
}

/// Download `v` into the meta dir and check it; with `install`, swap it in. Errors are this
/// side's or the store's (stop); a bad version is a `Verdict`.
async fn fetch_and_check(
    job: &Job,
    store: &dyn Store,
    v: &Version,
    install: bool,
    watch: &Watch,
) -> Result<Verdict> {
    let progress = watch.fetching(v);
    let f = match store.fetch(v, &job.meta.downloads()?, &progress).await {
        Ok(f) => f,
        // The stored pair is unreadable, or the version went away since it was listed.
        Err(StoreError::Corrupt(why) | StoreError::Missing(why)) => {
            return Ok(Verdict::Bad {
                why: one_line_why(&why),
                stable: false,
            })
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot download version {} from {}",
                short_id(&v.id),
                store.describe()
            )))
        }
    };
    watch.checking();
    let j = job.clone();
    tokio::task::spawn_blocking(move || {
        let r = check(&j, &f).and_then(|verdict| match verdict {
            Verdict::Good(staged) if install => install_staged(&j, &f, staged).map(Verdict::Good),
            Verdict::Good(staged) => Ok(Verdict::Good(staged.stats())),
            Verdict::Bad { why, stable } => Ok(Verdict::Bad { why, stable }),
        });
        let _ = fs::remove_file(&f.archive);
        r
    })
    .await
    .context("restore task failed")?
}

fn check_hash(f: &Fetched) -> Result<(), String> {
    if f.expected_sha256 != f.actual_sha256 {
        return Err(format!(
            "hash mismatch: its sidecar says SHA-256 {} but the archive hashes to {}",
            &f.expected_sha256[..12.min(f.expected_sha256.len())],
            &f.actual_sha256[..12.min(f.actual_sha256.len())]
        ));
    }
    Ok(())
}

/// A verified version extracted into a staging dir (removed when dropped).
struct Staged {
    staging: PathBuf,
    id: String,
    stats: extract::Stats,
}

impl Staged {
    fn stats(mut self) -> extract::Stats {
        std::mem::take(&mut self.stats)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
    }
}

/// Verify one fetched version (blocking): hash, archive read while extracting into a fresh
/// staging dir next to the state dir, databases. `Err` only for failures on this side.
fn check(job: &Job, f: &Fetched) -> Result<Verdict<Staged>> {
    if let Err(why) = check_hash(f) {
        return Ok(Verdict::Bad { why, stable: false });
    }
    let parent = job
        .state_dir
        .parent()
        .ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let name = file_name(&job.state_dir)?;
    let id = format!("{}-{}", std::process::id(), snapshot::now_ns());
    let staging = parent.join(format!("{name}.staging-{id}"));
    fs::create_dir(&staging)
        .with_context(|| format!("cannot create the staging dir {}", staging.display()))?;
    let mut staged = Staged {
        staging,
        id,
        stats: extract::Stats::default(),
    };
    let checked = extract::extract(&f.archive, &staged.staging).and_then(|stats| {
        staged.stats = stats;
        prepare_databases(&staged.staging.join(ROOT))
    });
    match checked {
        Ok(()) => Ok(Verdict::Good(staged)),
        Err(e) if is_local(&e) => Err(e.context("cannot extract the backup here")),
        Err(e) => Ok(Verdict::Bad {
            why: one_line_why(&format!("{e:#}")),
            stable: true,
        }),
    }
}

/// Whether an extraction or database failure is this machine's (disk full, permissions, I/O
/// errors) rather than the archive's. In doubt it is ours: that stops the restore instead of
/// falling back to an older version.
fn is_local(e: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode;
    e.chain().any(|c| {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.raw_os_error(),
                Some(
                    libc::ENOSPC
                        | libc::EDQUOT
                        | libc::EROFS
                        | libc::EACCES
                        | libc::EPERM
                        | libc::ENOMEM
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::EIO
                )
            );
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = c.downcast_ref::<rusqlite::Error>() {
            return matches!(
                f.code,
                ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
                    | ErrorCode::PermissionDenied
                    | ErrorCode::OutOfMemory
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
            );
        }
        false
    })
}

/// Swap a verified version in, then record what the state now equals (blocking).
fn install_staged(job: &Job, f: &Fetched, mut staged: Staged) -> Result<extract::Stats> {
    let new = staged.staging.join(ROOT);
    // The new state must be on disk before it replaces the old one (a power cut after the
    // rename must not leave empty files): one syncfs instead of an fsync per file.
    let dir = fs::File::open(&new).with_context(|| format!("cannot open {}", new.display()))?;
    nix::unistd::syncfs(&dir).with_context(|| format!("cannot sync {}", new.display()))?;
    swap(&job.state_dir, &new, &staged.id)?;
    let mut stats = std::mem::take(&mut staged.stats);
    drop(staged);
    info!(
        "restored {} files ({} MB) from backup {}",
        stats.files,
        stats.bytes >> 20,
        &f.actual_sha256[..12]
    );
    seed_member_cache(job, f, std::mem::take(&mut stats.members));
    // The state now equals this backup: record it, and its fingerprint, so an unchanged state
    // is neither restored again nor re-uploaded.
    job.meta.set_state_sha(&f.actual_sha256)?;
    match fingerprint(job) {
        Ok(fp) => job.meta.set_fingerprint(&fp)?,
        Err(e) => {
            warn!(
                "cannot fingerprint the restored state ({e:#}); the next backup uploads it again"
            );
            job.meta.forget_fingerprint();
        }
    }
    Ok(stats)
}

/// Keep the fetched archive as the backup's member cache (indexed by content only: the
/// restored files have new inodes), so the first backup after a restore copies the members of
/// unchanged regions instead of compressing everything again. Only for archives cut into
/// members like ours; a seed's single huge member could never be reused.
fn seed_member_cache(job: &Job, f: &Fetched, members: Vec<(u64, u64, u64, String)>) {
    // Empty unless every member was one of ours (`extract::Stats::members`).
    if members.is_empty() {
        return;
    }
    let index = awrite::Index {
        format: awrite::format_id(),
        size: f.size,
        members: members
            .into_iter()
            .map(|(coff, clen, ulen, ukey)| awrite::MemberRec {
                skey: None,
                ukey,
                ulen,
                coff,
                clen,
                last: false,
            })
            .collect(),
        sha_states: Vec::new(),
        file: None,
        prev: None,
        older: Vec::new(),
    };
    if let Err(e) = job.meta.keep_as_cache(&f.archive, Install::Link, index) {
        warn!("cannot keep the restored archive as the member cache: {e:#}");
    }
}

/// Every restored SQLite database must pass `quick_check`; the owner lease of the gateway that
/// wrote it (in a container that is gone) is removed so the new gateway starts at once.
fn prepare_databases(root: &Path) -> Result<()> {
    let tree = snapshot::walk(root, &globset::GlobSet::empty(), None)?;
    for e in tree.entries.iter().filter(|e| e.kind == Kind::Sqlite) {
        let path = e.path_in(root);
        let ctx = || format!("database {}", String::from_utf8_lossy(&e.rel));
        let conn = rusqlite::Connection::open(&path).with_context(ctx)?;
        if let Some(why) = crate::livedb::quick_check(&conn).with_context(ctx)? {
            bail!("{}: quick_check failed: {}", ctx(), one_line_why(&why));
        }
        let n = state::clear_owner_leases(&conn).with_context(ctx)?;
        if n > 0 {
            info!("{}: cleared {n} stale owner lease(s)", ctx());
        }
        conn.close().map_err(|(_, e)| e).with_context(ctx)?;
    }
    Ok(())
}

fn fingerprint(job: &Job) -> Result<Fingerprint> {
    let skip = snapshot::excludes(&job.excludes)?;
    let tree = snapshot::walk(&job.state_dir, &skip, None)?;
    let mut sqlite = std::collections::BTreeMap::new();
    for e in tree.entries.iter().filter(|e| e.kind == Kind::Sqlite) {
        sqlite.insert(
            hex::encode(&e.rel),
            crate::livedb::logical_hash(&e.path_in(&job.state_dir))?,
        );
    }
    // Every restored file was just written (its ctime is now), yet none is "racily clean":
    // nothing else writes the state until the restore returns and the gateway starts, seconds
    // and many timestamp ticks after this walk, so any later write moves the ctime. Hence a
    // scan time just past the racy window of the newest file instead of hashing every file.
    let newest = tree
        .entries
        .iter()
        .map(|e| e.stat.ctime_ns.max(e.stat.mtime_ns))
        .max()
        .unwrap_or(0);
    Ok(Fingerprint {
        scan_start_ns: newest + snapshot::RACY_NS + 1,
        entries: tree.entries,
        sqlite,
        racy: Default::default(),
    })
}

/// Put `new` in place of `state_dir`; the old state ends as `<name>.pre-restore`.
fn swap(state_dir: &Path, new: &Path, id: &str) -> Result<()> {
    let parent = state_dir
        .parent()
        .ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let name = file_name(state_dir)?;
    let old = parent.join(format!("{name}.old-{id}"));
    let had_old = fs::symlink_metadata(state_dir).is_ok();
    if had_old {
        fs::rename(state_dir, &old)
            .with_context(|| format!("cannot move {} aside", state_dir.display()))?;
    }
    if let Err(e) = fs::rename(new, state_dir) {
        if had_old {
            let _ = fs::rename(&old, state_dir);
        }
        return Err(e)
            .with_context(|| format!("cannot move the restored state to {}", state_dir.display()));
    }
    sync_dir(parent)?;
    if had_old {
        keep_aside(state_dir, &old)?;
        sync_dir(parent)?;
    }
    Ok(())
}

/// `<name>.old-*` -> `<name>.pre-restore` (replacing an older one); an empty old state is
/// simply removed.
fn keep_aside(state_dir: &Path, old: &Path) -> Result<()> {
    let pre =
        meta::pre_restore_dir(state_dir).ok_or_else(|| anyhow!("the state dir has no parent"))?;
    let empty = fs::read_dir(old)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        fs::remove_dir_all(old)?;
        return Ok(());
    }
    if pre.exists() {
        fs::remove_dir_all(&pre).with_context(|| format!("cannot remove {}", pre.display()))?;
    }
    fs::rename(old, &pre)
        .with_context(|| format!("cannot keep the replaced state as {}", pre.display()))?;
    info!(
        "the replaced state is kept as {} until the next successful backup",
        pre.display()
    );
    Ok(())
}

/// Finish or undo a swap a kill interrupted, and remove stale staging dirs. Never deletes the
/// only copy of a state.
pub fn recover(state_dir: &Path) -> Result<()> {
    let Some(parent) = state_dir.parent() else {
        return Ok(());
    };
    let name = file_name(state_dir)?;
    let Ok(rd) = fs::read_dir(parent) else {
        return Ok(());
    };
    let mut olds = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!("{name}.staging-")) {
            let _ = fs::remove_dir_all(e.path());
        } else if n.starts_with(&format!("{name}.old-")) {
            olds.push(e.path());
        }
    }
    olds.sort();
    if fs::symlink_metadata(state_dir).is_err() {
        if let Some(last) = olds.pop() {
            warn!(
                "an interrupted restore left {} without {}; putting it back",
                last.display(),
                state_dir.display()
            );
            fs::rename(&last, state_dir)?;
            sync_dir(parent)?;
        }
    }
    for o in olds {
        keep_aside(state_dir, &o)?;
    }
    Ok(())
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the state dir {} has no usable name", p.display()))
}
