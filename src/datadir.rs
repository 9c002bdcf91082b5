//! The data dir: `/data` when a real write probe succeeds, else `$HOME`.
//!
//! State lives in `<data dir>/.openclaw` (what is backed up); the entrypoint's own bookkeeping
//! (lock, last fingerprint, last upload) in `<data dir>/.openclaw-space` (never backed up).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::meta::{Job, Meta};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DataDir {
    pub root: PathBuf,
    /// Why this one was chosen, for the log and `status`.
    pub reason: String,
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
}

/// Pick the data dir: `candidate` (normally `/data`) when writable for real, else `home`.
pub fn resolve(candidate: &Path, home: Option<&Path>) -> anyhow::Result<DataDir> {
    let why_not = match probe(candidate) {
        Ok(()) => {
            return Ok(DataDir {
                root: candidate.to_path_buf(),
                reason: format!("{} is writable", candidate.display()),
            })
        }
        Err(e) => e,
    };
    let Some(home) = home else {
        bail!(
            "HOME: not set, and {} is not usable ({why_not:#}); set HOME or make {} writable",
            candidate.display(),
            candidate.display()
        );
    };
    fs::create_dir_all(home).with_context(|| format!("HOME: cannot create {}", home.display()))?;
    probe(home).with_context(|| format!("HOME: {} is not writable either", home.display()))?;
    Ok(DataDir {
        root: home.to_path_buf(),
        reason: format!(
            "{} is not usable ({why_not:#}); using $HOME",
            candidate.display()
        ),
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
        let d = resolve(t.path(), Some(Path::new("/nonexistent-home"))).unwrap();
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
        let d = resolve(Path::new("/nonexistent-data-dir"), Some(home.path())).unwrap();
        assert_eq!(d.root, home.path());
        assert!(d.reason.contains("/nonexistent-data-dir"), "{}", d.reason);
    }

    #[test]
    fn candidate_that_is_a_file_falls_back() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("data");
        fs::write(&file, "x").unwrap();
        let d = resolve(&file, Some(t.path())).unwrap();
        assert_eq!(d.root, t.path());
    }

    #[test]
    fn no_home_and_no_candidate_names_home() {
        let err = resolve(Path::new("/nonexistent-data-dir"), None).unwrap_err();
        assert!(err.to_string().starts_with("HOME"), "{err}");
    }
}
