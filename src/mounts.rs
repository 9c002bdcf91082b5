//! Which filesystem a path lives on, from `/proc/self/mountinfo`: is it a network or FUSE
//! filesystem, where a live SQLite database must not be kept?
//!
//! Why: a Hugging Face Storage Bucket mounted as a Space volume (hf-mount, FUSE) uploads each
//! file in the background after `fsync()` returned, locks only within one mount, and leaves
//! WAL's shared memory untested (facts/hf-storage-2026.md §3). NFS, SMB and 9p have their own
//! well-known locking and mmap troubles for SQLite. Nothing in the environment says a volume is
//! mounted, so the mount table is the only witness.
//!
//! Parsing is a pure function over the file's text, so it is tested without mounting anything.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (field 5, unescaped).
    pub mount_point: PathBuf,
    /// The filesystem type after the ` - ` separator, e.g. `fuse`, `fuse.hf-mount`, `nfs4`.
    pub fstype: String,
    /// The mount source, e.g. `hf-mount`, `server:/export`, `//host/share`.
    pub source: String,
}

/// Parse `/proc/self/mountinfo` text. Lines that do not have the documented shape are skipped
/// (the kernel never writes them; a test fixture might).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// ten or more space-separated fields, a variable number of optional ones ended by `-`.
fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let mount_point = fields.get(4)?;
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let fstype = fields.get(sep + 1)?;
    let source = fields.get(sep + 2).copied().unwrap_or("");
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype: unescape(fstype),
        source: unescape(source),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\040`, `\011`, `\012`,
/// `\134` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount `path` lives on: the one whose mount point is the longest (whole components)
/// prefix of it; of equal ones the last listed, which is the one mounted on top. `path` must
/// already be absolute with symlinks resolved (see [`mount_of_path`]).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .fold(None, |best: Option<&Mount>, m| match best {
            Some(b) if b.mount_point.components().count() > m.mount_point.components().count() => {
                Some(b)
            }
            _ => Some(m),
        })
}

/// What kind of network or FUSE filesystem `m` is, in words for the log; None for a local one.
pub fn network_kind(m: &Mount) -> Option<String> {
    let t = m.fstype.as_str();
    let kind = if m.source == "hf-mount" || t.contains("hf-mount") {
        "a Hugging Face bucket volume (hf-mount, FUSE)"
    } else if t == "fuse" || t.starts_with("fuse.") {
        "FUSE"
    } else if t == "nfs" || t == "nfs4" {
        "NFS"
    } else if t == "cifs" || t == "smb3" || t == "smbfs" {
        "SMB/CIFS"
    } else if t == "9p" {
        "9p"
    } else {
        return None;
    };
    Some(format!(
        "{kind}: type {}, source {}, mounted at {}",
        m.fstype,
        m.source,
        m.mount_point.display()
    ))
}

/// The network or FUSE filesystem `path` lives on, described for the log; None when it is
/// local, does not exist, or the mount table cannot be read (then nothing is known to be wrong).
pub fn network_fs_of(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    network_fs_in(&text, &real)
}

/// [`network_fs_of`] over a given mount table and an already resolved path (for tests).
pub fn network_fs_in(mountinfo: &str, real_path: &Path) -> Option<String> {
    let mounts = parse_mountinfo(mountinfo);
    mount_of(&mounts, real_path).and_then(network_kind)
}

/// [`mount_of`] for a path that may hold symlinks or be relative: resolved first.
pub fn mount_of_path(mounts: &[Mount], path: &Path) -> Option<Mount> {
    let real = std::fs::canonicalize(path).ok()?;
    mount_of(mounts, &real).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 0:40 / /data rw,nosuid,nodev,relatime shared:7 master:3 - fuse hf-mount rw,user_id=0,group_id=0
41 40 8:1 /srv/x /data/local rw,relatime - ext4 /dev/sda1 rw
42 22 0:41 / /mnt/my\\040share rw - cifs //host/share rw
43 22 0:42 / /mnt/nfs rw - nfs4 server:/export rw
44 22 0:43 / /mnt/b rw - fuse.bindfs /srv/b rw
45 22 0:44 / /mnt/p9 rw - 9p hostshare rw
46 22 0:45 / /data2 rw - fuse.sshfs me@host:/x rw
47 22 8:1 / /data2 rw - ext4 /dev/sda1 rw
";

    #[test]
    fn parses_fields_and_unescapes_paths() {
        let m = parse_mountinfo(TABLE);
        assert_eq!(m.len(), 10);
        assert_eq!(m[2].mount_point, Path::new("/data"));
        assert_eq!(m[2].fstype, "fuse");
        assert_eq!(m[2].source, "hf-mount");
        assert_eq!(m[4].mount_point, Path::new("/mnt/my share"));
        assert_eq!(unescape(r"a\011b\012c\134d\040"), "a\tb\nc\\d ");
        // Not an escape: kept as is.
        assert_eq!(unescape(r"a\9b\04"), r"a\9b\04");
        // Garbage lines are skipped, not fatal.
        assert!(parse_mountinfo("junk\n1 2 3\n").is_empty());
    }

    #[test]
    fn longest_whole_component_prefix_wins() {
        let m = parse_mountinfo(TABLE);
        let at = |p: &str| mount_of(&m, Path::new(p)).map(|m| m.mount_point.clone());
        assert_eq!(at("/data"), Some(PathBuf::from("/data")));
        assert_eq!(at("/data/x/y"), Some(PathBuf::from("/data")));
        assert_eq!(at("/data/local/y"), Some(PathBuf::from("/data/local")));
        // `/database` is not under `/data`.
        assert_eq!(at("/database"), Some(PathBuf::from("/")));
        // Two mounts on one point: the later one is on top.
        assert_eq!(mount_of(&m, Path::new("/data2")).unwrap().fstype, "ext4");
    }

    #[test]
    fn network_and_fuse_filesystems_are_recognised() {
        let kind = |p: &str| network_fs_in(TABLE, Path::new(p));
        assert!(
            kind("/data").unwrap().contains("hf-mount"),
            "{:?}",
            kind("/data")
        );
        assert!(kind("/data/x").is_some());
        assert_eq!(
            kind("/data/local/x"),
            None,
            "a local mount inside the volume"
        );
        assert!(kind("/mnt/my share/x").unwrap().starts_with("SMB"));
        assert!(kind("/mnt/nfs").unwrap().starts_with("NFS"));
        assert!(kind("/mnt/b").unwrap().starts_with("FUSE"));
        assert!(kind("/mnt/p9").unwrap().starts_with("9p"));
        assert_eq!(kind("/home/user"), None);
        assert_eq!(kind("/data2"), None);
        let hf = Mount {
            mount_point: "/v".into(),
            fstype: "fuse.hf-mount".into(),
            source: "x".into(),
        };
        assert!(network_kind(&hf).unwrap().contains("hf-mount"));
    }

    #[test]
    fn symlinks_are_resolved_before_matching() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        let table = format!(
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 0:40 / {} rw - fuse.bindfs /srv rw\n",
            real.display()
        );
        let mounts = parse_mountinfo(&table);
        let m = mount_of_path(&mounts, &link).unwrap();
        assert_eq!(m.mount_point, real);
        assert!(network_kind(&m).is_some());
    }
}
