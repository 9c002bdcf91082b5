//! Small file-system and clock helpers shared by the engine and the stores (leaves: they
//! depend on nothing in this crate).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// How much a replaced file must survive. Whatever the choice, the write is atomic (a
/// private temp file, then rename): a reader, or a crash, sees the old content or the new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No fsync: a power cut may lose the new content (leaving the old one, or none). For
    /// files that are rebuilt, or informational.
    Plain,
    /// The new content is fsynced before the rename: after a power cut the file holds the
    /// new content, or the old one if the rename itself was lost.
    Synced,
    /// `Synced`, and the parent dir too: once the call returns, the new content is the file's.
    Published,
}

/// Replace `path` with `bytes` (mode 0600) atomically, as durable as asked. The one way this
/// program replaces a file in place.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A temp file left by a crash keeps its old mode through `open`.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        if durability != Durability::Plain {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durability == Durability::Published {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// fsync a directory: the renames and creations in it survive a power cut. A filesystem that
/// cannot sync a directory at all (some network and FUSE ones answer EINVAL or ENOTSUP) is not
/// an error: there is nothing more to ask of it (PostgreSQL's `fsync_fname` does the same).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP)) => Ok(()),
        r => r,
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (d, t) = civil(secs as i64);
    format!("{d}T{t}Z")
}

/// UTC `YYYY-MM-DD` and `HH:MM:SS` of a Unix time (Howard Hinnant's days-to-civil).
pub fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(
            civil(1_795_293_443),
            ("2026-11-21".into(), "20:37:23".into())
        );
    }
}
