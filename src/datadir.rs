//! The data dir: `/data` when a real write probe succeeds and it is on a local filesystem, else
//! `$HOME`.
//!
//! State lives in `<data dir>/.openclaw` (what is backed up); the entrypoint's own bookkeeping
//! (lock, last fingerprint, last upload) in `<data dir>/.openclaw-space` (never backed up).
//!
//! A candidate on a network or FUSE filesystem (a Hugging Face bucket mounted as a volume, NFS,
//! SMB, 9p: see `mounts`) does not get the live state: SQLite there can lose or tear data. The
//! live state goes to `$HOME`, and the mount becomes the backup target (a dir store in
//! [`BACKUP_SUBDIR`]) when no other store is configured. Whole archives written once and then
//! left alone are what such a mount handles well. `ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS=1`
//! keeps the live state on the mount anyway.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::meta::{Job, Meta};

use crate::settings::{BackupSettings, Settings, StoreSettings};

/// The folder of a network-filesystem candidate that backups go to (see the module doc).
pub const BACKUP_SUBDIR: &str = "openclaw-backups";
/// The opt-in that keeps the live state on a network filesystem.
pub const UNSAFE_OPT_IN: &str = "ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS";

#[derive(Debug, Clone, serde::Serialize)]
pub struct DataDir {
    pub root: PathBuf,
    /// Why this one was chosen, for the log and `status`.
    pub reason: String,
    /// The candidate was a writable network filesystem passed over for the live state: its
    /// backup folder, the store to use when none is configured.
    pub network_backup_dir: Option<PathBuf>,
}

impl DataDir {
    /// `<root>/.openclaw`: OpenClaw's state, the thing we back up.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".openclaw")
    }
    /// `<root>/.openclaw-space`: our own bookkeeping, outside the backed-up tree.
    pub fn meta(&self) -> Meta {
        Meta::new(self.root.join(".openclaw-space"))
    }

    /// What a backup or restore of this data dir works on.
    pub fn job(&self, excludes: &[String]) -> Job {
        Job {
            state_dir: self.state_dir(),
            meta: self.meta(),
            excludes: excludes.to_vec(),
        }
    }
    /// The store to use: the configured one, else the network candidate's backup folder.
    pub fn store_settings(&self, backup: &BackupSettings) -> Option<StoreSettings> {
        backup.store.clone().or_else(|| {
            self.network_backup_dir
                .clone()
                .map(|path| StoreSettings::Dir {
                    path,
                    keep: backup.keep,
                })
        })
    }
}

/// What `resolve` needs besides the paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice {
    /// `ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS`: keep the live state on a network filesystem.
    pub live_state_on_network_fs: bool,
    /// A store is configured (then a network candidate is not used for backups either).
    pub store_configured: bool,
}

impl Choice {
    pub fn of(settings: &Settings) -> Choice {
        Choice {
            live_state_on_network_fs: settings.live_state_on_network_fs,
            store_configured: settings.backup.store.is_some(),
        }
    }
}

/// Pick the data dir: `candidate` (normally `/data`) when writable for real and local (or the
/// opt-in is set), else `home`.
pub fn resolve(candidate: &Path, home: Option<&Path>, choice: Choice) -> anyhow::Result<DataDir> {
    resolve_with(candidate, home, choice, crate::mounts::network_fs_of)
}

/// `resolve` with the network-filesystem check passed in (tests fake the mount table).
fn resolve_with(
    candidate: &Path,
    home: Option<&Path>,
    choice: Choice,
    network_fs_of: impl Fn(&Path) -> Option<String>,
) -> anyhow::Result<DataDir> {
    let c = candidate.display();
    let (why_not, network_backup_dir) = match probe(candidate) {
        Ok(()) => match network_fs_of(candidate) {
            None => {
                return Ok(DataDir {
                    root: candidate.to_path_buf(),
                    reason: format!("{c} is writable"),
                    network_backup_dir: None,
                })
            }
            Some(kind) if choice.live_state_on_network_fs => {
                return Ok(DataDir {
                    root: candidate.to_path_buf(),
                    reason: format!("{c} is on {kind}; live state kept there because {UNSAFE_OPT_IN} is set (SQLite on such a filesystem can lose or tear data)"),
                    network_backup_dir: None,
                })
            }
            Some(kind) => {
                let backups = candidate.join(BACKUP_SUBDIR);
                let target = if choice.store_configured {
                    "backups go to the configured store".to_string()
                } else {
                    format!("backups go to {}", backups.display())
                };
                let why = format!("{c} is on {kind}: SQLite must not live there (uploads in the background, per file, after fsync); live state on local disk in $HOME, {target}; set {UNSAFE_OPT_IN}=1 to keep it on {c} anyway");
                (why, (!choice.store_configured).then_some(backups))
            }
        },
        Err(e) => (format!("{c} is not usable ({e:#}); using $HOME"), None),
    };
    let Some(home) = home else {
        bail!("HOME: not set, and {why_not}; set HOME or make {c} writable");
    };
    fs::create_dir_all(home).with_context(|| format!("HOME: cannot create {}", home.display()))?;
    probe(home).with_context(|| format!("HOME: {} is not writable either", home.display()))?;
    Ok(DataDir {
        root: home.to_path_buf(),
        reason: why_not,
        network_backup_dir,
    })
}

/// Create, write, fsync and remove a file: permission bits lie (root, read-only mounts), this does not.
fn probe(dir: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("{} does not exist", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let path = dir.join(format!(".entrypoint-probe-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(b"probe")?;
        f.sync_all()
    })();
    let _ = fs::remove_file(&path);
    result.with_context(|| format!("cannot write to {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_candidate_wins() {
        let t = tempfile::tempdir().unwrap();
        let d = resolve(
            t.path(),
            Some(Path::new("/nonexistent-home")),
            Choice::default(),
        )
        .unwrap();
        assert_eq!(d.root, t.path());
        assert_eq!(d.state_dir(), t.path().join(".openclaw"));
        assert!(
            fs::read_dir(t.path()).unwrap().next().is_none(),
            "probe file left behind"
        );
    }

    #[test]
    fn missing_candidate_falls_back_to_home() {
        let home = tempfile::tempdir().unwrap();
        let d = resolve(
            Path::new("/nonexistent-data-dir"),
            Some(home.path()),
            Choice::default(),
        )
        .unwrap();
        assert_eq!(d.root, home.path());
        assert!(d.reason.contains("/nonexistent-data-dir"), "{}", d.reason);
    }

    #[test]
    fn candidate_that_is_a_file_falls_back() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("data");
        fs::write(&file, "x").unwrap();
        let d = resolve(&file, Some(t.path()), Choice::default()).unwrap();
        assert_eq!(d.root, t.path());
    }

    #[test]
    fn no_home_and_no_candidate_names_home() {
        let err = resolve(Path::new("/nonexistent-data-dir"), None, Choice::default()).unwrap_err();
        assert!(err.to_string().starts_with("HOME"), "{err}");
    }

    fn on_fuse(_: &Path) -> Option<String> {
        Some("FUSE: type fuse, source hf-mount, mounted at /data".to_string())
    }

    #[test]
    fn a_network_candidate_gives_home_the_live_state_and_takes_the_backups() {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let d = resolve_with(data.path(), Some(home.path()), Choice::default(), on_fuse).unwrap();
        assert_eq!(d.root, home.path());
        assert_eq!(d.network_backup_dir, Some(data.path().join(BACKUP_SUBDIR)));
        assert!(
            d.reason.contains("hf-mount") && d.reason.contains(UNSAFE_OPT_IN),
            "{}",
            d.reason
        );
        assert!(!d.reason.contains('\n'));
        let backup = BackupSettings {
            store: None,
            keep: 4,
            interval: std::time::Duration::from_secs(1),
            excludes: Vec::new(),
            final_deadline: std::time::Duration::from_secs(1),
        };
        match d.store_settings(&backup) {
            Some(StoreSettings::Dir { path, keep }) => {
                assert_eq!(path, data.path().join(BACKUP_SUBDIR));
                assert_eq!(keep, 4);
            }
            other => panic!("{other:?}"),
        }
        // Nothing was created on the mount by choosing.
        assert!(fs::read_dir(data.path()).unwrap().next().is_none());

        // A configured store wins; the mount is left alone.
        let choice = Choice {
            store_configured: true,
            ..Choice::default()
        };
        let d = resolve_with(data.path(), Some(home.path()), choice, on_fuse).unwrap();
        assert_eq!(d.root, home.path());
        assert_eq!(d.network_backup_dir, None);
        assert!(d.reason.contains("configured store"), "{}", d.reason);

        // The opt-in keeps the live state on the mount.
        let choice = Choice {
            live_state_on_network_fs: true,
            ..Choice::default()
        };
        let d = resolve_with(data.path(), Some(home.path()), choice, on_fuse).unwrap();
        assert_eq!(d.root, data.path());
        assert_eq!(d.network_backup_dir, None);
        assert!(d.store_settings(&backup).is_none());
    }
}
