//! The data dir on a network or FUSE filesystem (issue 15, part A), with a real FUSE mount:
//! Debian's `bindfs` stands in for a Hugging Face bucket volume (hf-mount). The live state goes
//! to `$HOME`, the mount takes the backups, the opt-in keeps the live state there, and a plain
//! folder is still chosen as before.
//!
//! Mounting needs root and `/dev/fuse` (scripts/e2e-deps.sh installs bindfs): without them the
//! FUSE tests say SKIP and pass, like the namespace tests, except under `CI`, where they fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A bindfs mount of `src` on `mnt`, unmounted on drop.
struct Fuse {
    mnt: PathBuf,
}

impl Fuse {
    /// Mount, or None (with a SKIP line saying why) when this machine cannot.
    fn mount(src: &Path, mnt: &Path) -> Option<Fuse> {
        if !nix::unistd::Uid::effective().is_root() {
            return skip("not root, cannot mount a FUSE filesystem");
        }
        if !Path::new("/dev/fuse").exists() {
            return skip("no /dev/fuse here");
        }
        fs::create_dir_all(src).unwrap();
        fs::create_dir_all(mnt).unwrap();
        match Command::new("bindfs").arg(src).arg(mnt).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return skip(&format!(
                    "bindfs failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => {
                return skip(&format!(
                    "bindfs not installed ({e}); scripts/e2e-deps.sh installs it"
                ));
            }
        }
        let fuse = Fuse {
            mnt: mnt.to_path_buf(),
        };
        // bindfs daemonizes once mounted; make sure the kernel lists it before using it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let real = fs::canonicalize(mnt).unwrap();
        while !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(real.to_str().unwrap()))
        {
            assert!(Instant::now() < deadline, "bindfs mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(fuse)
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let ok = Command::new("fusermount")
            .arg("-u")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// No mount here: a SKIP line, except under `CI`, which runs as root with bindfs installed
/// (scripts/test.sh runs scripts/e2e-deps.sh), so a skip there would hide a failure.
fn skip(why: &str) -> Option<Fuse> {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot mount bindfs under CI: {why}"
    );
    eprintln!("SKIP: {why}");
    None
}

/// A bindfs mount `mnt` of `src`, and a local `home`, in one temp dir. Fields drop in order:
/// the mount goes before the folder under it.
struct Mounted {
    _fuse: Fuse,
    t: tempfile::TempDir,
    src: PathBuf,
    mnt: PathBuf,
    home: PathBuf,
}

fn mounted() -> Option<Mounted> {
    let t = tempfile::tempdir().unwrap();
    let (src, mnt, home) = (
        t.path().join("src"),
        t.path().join("mnt"),
        t.path().join("home"),
    );
    let fuse = Fuse::mount(&src, &mnt)?;
    fs::create_dir_all(&home).unwrap();
    Some(Mounted {
        _fuse: fuse,
        t,
        src,
        mnt,
        home,
    })
}

/// `entrypoint ARGS` with a clean environment: data dir candidate `data`, `$HOME` `home`.
fn entrypoint(data: &Path, home: &Path, extra: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_entrypoint"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ENTRYPOINT_DATA_DIR", data)
        .env("ENTRYPOINT_LOG", "info");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A child that records its `OPENCLAW_HOME` and writes a state file, then exits 0.
const CHILD: &str = r#"printf %s "$OPENCLAW_HOME" > "$MARK"; mkdir -p "$OPENCLAW_HOME/.openclaw"; echo hello > "$OPENCLAW_HOME/.openclaw/state.txt""#;

fn run_child(data: &Path, home: &Path, mark: &Path, extra: &[(&str, &str)]) -> String {
    let mut env = vec![("MARK", mark.to_str().unwrap())];
    env.extend_from_slice(extra);
    let out = entrypoint(data, home, &env, &["run", "--", "sh", "-c", CHILD]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "entrypoint failed:\n{log}");
    log
}

fn dot_openclaw_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".openclaw"))
        .collect()
}

#[test]
fn a_fuse_candidate_keeps_live_state_off_the_mount_and_takes_the_backups() {
    let Some(m) = mounted() else {
        return;
    };
    let (t, src, mnt, home) = (&m.t, &m.src, &m.mnt, &m.home);
    let mark = t.path().join("openclaw_home");
    let log = run_child(mnt, home, &mark, &[]);

    assert_eq!(
        fs::read_to_string(&mark).unwrap(),
        home.to_str().unwrap(),
        "{log}"
    );
    assert_eq!(
        fs::read_to_string(home.join(".openclaw/state.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        dot_openclaw_entries(mnt).is_empty(),
        "{:?}",
        dot_openclaw_entries(mnt)
    );
    // One line says what was found and what was chosen.
    let line: Vec<&str> = log.lines().filter(|l| l.contains("data dir:")).collect();
    assert_eq!(line.len(), 1, "{log}");
    assert!(
        line[0].contains("FUSE") && line[0].contains("ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS"),
        "{}",
        line[0]
    );

    // The final backup landed on the mount (seen through the mount's source folder too).
    let backups = src.join("openclaw-backups");
    let versions: Vec<_> = fs::read_dir(backups.join(".versions"))
        .unwrap_or_else(|e| panic!("no backups on the mount ({e}):\n{log}"))
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(versions.len(), 1, "{log}");
    assert!(versions[0].path().join("latest_backup.sha256").is_file());

    // `restore --list` and `status` find that store without being told.
    let out = entrypoint(mnt, home, &[], &["restore", "--list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let out = entrypoint(mnt, home, &[], &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["data_dir"]["network_backup_dir"].as_str(),
        backups
            .to_str()
            .map(|s| s.replace("/src/", "/mnt/"))
            .as_deref(),
        "{status}"
    );

    // A fresh home restores from the mount's backup.
    let home2 = t.path().join("home2");
    fs::create_dir_all(&home2).unwrap();
    let out = entrypoint(mnt, &home2, &[], &["restore"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(home2.join(".openclaw/state.txt")).unwrap(),
        "hello\n"
    );
    assert!(dot_openclaw_entries(mnt).is_empty());
}

#[test]
fn the_opt_in_keeps_live_state_on_the_mount() {
    let Some(m) = mounted() else {
        return;
    };
    let (t, src, mnt, home) = (&m.t, &m.src, &m.mnt, &m.home);
    let mark = t.path().join("openclaw_home");
    let log = run_child(
        mnt,
        home,
        &mark,
        &[("ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS", "1")],
    );
    assert_eq!(
        fs::read_to_string(&mark).unwrap(),
        mnt.to_str().unwrap(),
        "{log}"
    );
    assert!(src.join(".openclaw/state.txt").is_file());
    assert!(
        !src.join("openclaw-backups").exists(),
        "no store was configured"
    );
    assert!(log.contains("is set"), "{log}");
}

#[test]
fn a_plain_folder_is_still_the_data_dir() {
    let t = tempfile::tempdir().unwrap();
    let (data, home) = (t.path().join("data"), t.path().join("home"));
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(&home).unwrap();
    let mark = t.path().join("openclaw_home");
    let log = run_child(&data, &home, &mark, &[]);
    assert_eq!(
        fs::read_to_string(&mark).unwrap(),
        data.to_str().unwrap(),
        "{log}"
    );
    assert!(data.join(".openclaw/state.txt").is_file());
    assert!(!data.join("openclaw-backups").exists());
    assert!(log.contains("backups are off"), "{log}");
}

/// hf-mount keeps symlinks in memory only, and uploads each file on its own: after a restart the
/// dir store's `current` and seed links are gone, and the newest version may be torn. Five
/// backups with keep 3 (so the newest's archive may be written over the retiring file, which is
/// on another filesystem here), then the links are removed and the newest archive is cut short:
/// a fresh home restores the version before it, whole.
#[test]
fn backups_on_the_mount_survive_lost_links_and_a_torn_newest_version() {
    let Some(m) = mounted() else {
        return;
    };
    let (t, src, mnt, home) = (&m.t, &m.src, &m.mnt, &m.home);
    let state = home.join(".openclaw");
    fs::create_dir_all(&state).unwrap();
    for round in 1..=5 {
        fs::write(state.join("round.txt"), format!("round {round}\n")).unwrap();
        // Enough bytes that a torn copy is visibly torn.
        fs::write(state.join("blob.bin"), vec![round as u8; 200_000]).unwrap();
        let out = entrypoint(mnt, home, &[("ENTRYPOINT_BACKUP_KEEP", "3")], &["backup"]);
        assert!(
            out.status.success(),
            "backup {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = src.join("openclaw-backups");
    let mut versions: Vec<_> = fs::read_dir(store.join(".versions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    versions.sort();
    assert_eq!(versions.len(), 3, "keep 3: {versions:?}");

    // The mount restarted: no links; the newest archive landed only in part.
    for link in ["current", "latest_backup.tar.gz", "latest_backup.sha256"] {
        fs::remove_file(store.join(link)).unwrap();
    }
    let newest = versions[2].join("latest_backup.tar.gz");
    let bytes = fs::read(&newest).unwrap();
    fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();

    let home2 = t.path().join("home2");
    fs::create_dir_all(&home2).unwrap();
    let out = entrypoint(mnt, &home2, &[], &["restore"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        fs::read_to_string(home2.join(".openclaw/round.txt")).unwrap(),
        "round 4\n",
        "the version before the torn one: {log}"
    );
    assert_eq!(
        fs::read(home2.join(".openclaw/blob.bin")).unwrap(),
        vec![4u8; 200_000]
    );
}
