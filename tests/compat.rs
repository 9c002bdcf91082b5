//! Old meta dirs and stores keep working. `tests/compat/d22beb2.tar.gz` was written by the
//! binary of commit d22beb2 (before the engine was re-laid): three backups of a small state
//! (a note, a session, a WAL database) to a `dir` store (`data`, `store`); a fallback restore
//! over a store whose newest archive is garbage (`data-fallback`, `store-newest-bad`); and a
//! failed restore that latched uploads off (`data-latched`, `store-all-bad`). Today's binary
//! must read every file of those meta dirs and stores as the old one wrote them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NEWEST: &str = "20261205T141152.625Z-93ef391809f7";
const NEWEST_SHA: &str = "93ef391809f7a7a3c2ac5a56d105f46887bf30c06fd9af6251e7233496c4c72c";
const SECOND: &str = "20261205T141152.515Z-9e6b65e5d9c9";

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn unpack() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/d22beb2.tar.gz");
        let st = Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(st.success(), "cannot unpack {}", archive.display());
        let root = tmp.path().to_path_buf();
        Fixture { _tmp: tmp, root }
    }

    fn run(&self, data: &str, store: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_entrypoint"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.root)
            .env("ENTRYPOINT_DATA_DIR", self.root.join(data))
            .env("ENTRYPOINT_BACKUP_DIR", self.root.join(store))
            .env("ENTRYPOINT_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Run, expect success, return stdout as JSON.
    fn json(&self, data: &str, store: &str, args: &[&str]) -> serde_json::Value {
        let out = self.run(data, store, args);
        assert!(
            out.status.success(),
            "entrypoint {args:?} on {data}/{store} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

#[test]
fn an_old_meta_dir_and_store_are_read_as_written() {
    let f = Fixture::unpack();
    // The ledger: the last-backup record.
    let st = f.json("data", "store", &["status", "--json"]);
    assert_eq!(
        st["last_backup"]["last_upload"]["sha256"], NEWEST_SHA,
        "{st:#}"
    );
    // The store's versions, newest first, and the newest verifies.
    let list = f.json("data", "store", &["restore", "--list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| list["versions"].as_array().expect("a list of versions"))
        .iter()
        .map(|v| v["id"].as_str().or(v["version"].as_str()).unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{list:#}");
    assert_eq!(ids[0], NEWEST);
    let v = f.json("data", "store", &["verify"]);
    assert_eq!(v["sha256"], NEWEST_SHA);

    // The state equals the newest backup (`state.sha256`): a restore has nothing to do.
    let r = f.json("data", "store", &["restore"]);
    assert_eq!(r["result"], "up-to-date", "{r:#}");

    // A change is backed up over the old member cache and copies, and the store keeps 3.
    let notes = f.root.join("data/.openclaw/notes.md");
    fs::write(&notes, "hello\nv2\nv3 after the upgrade\n").unwrap();
    let b = f.json("data", "store", &["backup"]);
    assert_eq!(b["result"], "uploaded", "{b:#}");
    // (The old member cache is not reused here: unpacking gave its file a new identity, and
    // an index never trusts a file it was not written for.)
    let list = f.json("data", "store", &["restore", "--list", "--json"]);
    let n = list
        .as_array()
        .unwrap_or_else(|| list["versions"].as_array().unwrap())
        .len();
    assert_eq!(n, 3, "{list:#}");

    // A fresh data dir restores the new backup.
    fs::create_dir_all(f.root.join("fresh")).unwrap();
    let r = f.json("fresh", "store", &["restore"]);
    assert_eq!(r["result"], "restored", "{r:#}");
    assert_eq!(
        fs::read_to_string(f.root.join("fresh/.openclaw/notes.md")).unwrap(),
        "hello\nv2\nv3 after the upgrade\n"
    );
}

#[test]
fn an_old_fallback_and_an_old_latch_are_honoured() {
    let f = Fixture::unpack();
    // Restored from the second version after the newest failed: still up to date with it.
    let r = f.json("data-fallback", "store-newest-bad", &["restore"]);
    assert_eq!(r["result"], "up-to-date", "{r:#}");
    assert_eq!(r["version"], SECOND, "{r:#}");

    // The restore-failed latch written by the old binary still pauses uploads.
    let out = f.run("data-latched", "store-all-bad", &["backup"]);
    assert!(!out.status.success(), "a latched backup uploaded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("uploads are paused"), "{err}");
    let st = f.json("data-latched", "store-all-bad", &["status", "--json"]);
    assert!(
        st.to_string().contains("last restore failed"),
        "status does not show the latch: {st:#}"
    );
    // Forced, it uploads and lifts the latch.
    let b = f.json("data-latched", "store-all-bad", &["backup", "--force"]);
    assert_eq!(b["result"], "uploaded", "{b:#}");
    let b = f.json("data-latched", "store-all-bad", &["backup"]);
    assert_eq!(b["result"], "skipped", "{b:#}");
}
