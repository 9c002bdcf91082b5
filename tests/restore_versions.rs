//! Restore falls back to the newest version that verifies, through the real binary with a
//! `dir` store: a newest version with a corrupt database (its sidecar matching) or a hash
//! mismatch is skipped in one line; when no version verifies the state is kept and uploads
//! pause; `restore --list` (table and JSON), `restore --version`, `verify --version`;
//! `ENTRYPOINT_BACKUP_KEEP` and how many versions the store keeps.

#[path = "support/craft.rs"]
mod craft;

use std::fs;
use std::path::Path;

use craft::{corrupt_version, good_db};

use openclaw_space::store::{dir::DirStore, Store};
use sha2::{Digest, Sha256};

#[path = "support/dirstore.rs"]
mod dirstore;
use dirstore::Env;

impl Env {
    /// Run, expect success, return the JSON on stdout and the lines on stderr.
    fn ok(&self, data: &Path, args: &[&str]) -> (serde_json::Value, Vec<String>) {
        let out = self.run(data, args);
        let err = lines(&out.stderr);
        assert!(out.status.success(), "entrypoint {args:?} failed: {err:?}");
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON {e}: {}", String::from_utf8_lossy(&out.stdout)));
        (v, err)
    }

    /// Run, expect failure with exactly one line on stderr; return it.
    fn fails(&self, data: &Path, args: &[&str]) -> String {
        let out = self.run(data, args);
        let err = lines(&out.stderr);
        assert!(!out.status.success(), "entrypoint {args:?} succeeded");
        assert_eq!(err.len(), 1, "one line, not {err:#?}");
        err[0].clone()
    }

    /// Version ids in the store, newest first.
    fn versions(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.store.join(".versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v.reverse();
        v
    }

    /// Publish `archive` as the store's newest version, as a backup would.
    fn publish(&self, archive: &[u8]) -> String {
        // Version names carry a millisecond stamp: stay clear of the previous one.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let path = self.root.join(format!("publish-{}.tar.gz", rand_tag()));
        fs::write(&path, archive).unwrap();
        let sha = hex::encode(Sha256::digest(archive));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(DirStore::new(self.store.clone(), 3).put(&path, &sha))
            .unwrap()
            .unwrap()
    }

    /// Replace a stored version's archive with other bytes (its sidecar now mismatches).
    fn tamper(&self, id: &str) {
        let p = self
            .store
            .join(".versions")
            .join(id)
            .join("latest_backup.tar.gz");
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        // A new file: the stored one may be hard-linked to a data dir's member cache.
        fs::remove_file(&p).unwrap();
        fs::write(&p, bytes).unwrap();
    }
}

fn rand_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn write(p: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// A state dir with notes and a database; `backup` it and return the stored version's id.
fn backup_state(t: &Env, data: &Path, notes: &str) -> String {
    let state = data.join(".openclaw");
    write(&state.join("notes.md"), notes);
    good_db(&state.join("state/app.sqlite"), notes);
    let (v, _) = t.ok(data, &["backup"]);
    assert_eq!(v["result"], "uploaded");
    t.versions()[0].clone()
}

#[test]
fn a_corrupt_database_in_the_newest_version_falls_back_to_the_previous_one() {
    let t = Env::new();
    let a = t.data("a");
    let good = backup_state(&t, &a, "good state");
    let bad = t.publish(&corrupt_version());

    // A fresh Space: the last good state, in one line, and uploads allowed.
    let b = t.data("b");
    let (v, err) = t.ok(&b, &["restore"]);
    assert_eq!(v["result"], "restored", "{v}");
    assert_eq!(v["version"], good.as_str());
    assert_eq!(v["skipped"][0]["version"], bad.as_str());
    assert!(
        v["skipped"][0]["why"]
            .as_str()
            .is_some_and(|w| w.contains("state/app.sqlite: quick_check failed")),
        "{v}"
    );
    assert_eq!(err.len(), 1, "one line: {err:#?}");
    for part in [good.as_str(), bad.as_str(), "quick_check failed", "skipped"] {
        assert!(err[0].contains(part), "{part:?} not in {}", err[0]);
    }
    assert_eq!(
        fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
        "good state"
    );
    assert!(!b.join(".openclaw-space/restore-failed").exists());

    // The next start: the state already is the newest good version; the bad one is not
    // downloaded again, and nothing is replaced.
    let marker = b.join(".openclaw/touched-since");
    write(&marker, "local work");
    let (v, err) = t.ok(&b, &["restore"]);
    assert_eq!(v["result"], "up-to-date", "{v}");
    assert_eq!(v["version"], good.as_str());
    assert!(
        v["skipped"][0]["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("known bad: ")),
        "{v}"
    );
    assert_eq!(err.len(), 1, "{err:#?}");
    assert!(marker.exists(), "the state on disk was not replaced");

    // Uploads are not paused: the next backup publishes the good state on top.
    let (v, _) = t.ok(&b, &["backup"]);
    assert_eq!(v["result"], "uploaded");
    let c = t.data("c");
    let (v, err) = t.ok(&c, &["restore"]);
    assert_eq!(v["result"], "restored");
    assert!(v.get("skipped").is_none() && err.is_empty(), "{v} {err:?}");
    assert!(c.join(".openclaw/touched-since").exists());
}

#[test]
fn a_hash_mismatch_in_the_newest_version_falls_back() {
    let t = Env::new();
    let a = t.data("a");
    let first = backup_state(&t, &a, "first");
    let second = backup_state(&t, &a, "second");
    t.tamper(&second);
    let b = t.data("b");
    let (v, err) = t.ok(&b, &["restore"]);
    assert_eq!(v["result"], "restored", "{v}");
    assert_eq!(v["version"], first.as_str());
    assert!(
        v["skipped"][0]["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("hash mismatch")),
        "{v}"
    );
    assert_eq!(err.len(), 1, "{err:#?}");
    assert_eq!(
        fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
        "first"
    );
    // A mismatch may be a bad transfer: it is tried again next time (and still fails).
    let (v, _) = t.ok(&b, &["restore"]);
    assert_eq!(v["result"], "up-to-date");
    assert!(v["skipped"][0]["why"]
        .as_str()
        .is_some_and(|w| w.starts_with("hash mismatch")));
}

#[test]
fn when_no_version_verifies_the_state_is_kept_and_uploads_pause() {
    let t = Env::new();
    let a = t.data("a");
    let first = backup_state(&t, &a, "first");
    t.tamper(&first);
    let bad = t.publish(&corrupt_version());
    let d = t.data("d");
    write(&d.join(".openclaw/keep.txt"), "old");

    let line = t.fails(&d, &["restore"]);
    assert!(line.starts_with("entrypoint: no backup in dir:"), "{line}");
    for part in [
        first.as_str(),
        bad.as_str(),
        "hash mismatch",
        "quick_check failed",
        "entrypoint backup --force",
        "entrypoint restore --version",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert_eq!(
        fs::read_to_string(d.join(".openclaw/keep.txt")).unwrap(),
        "old"
    );
    assert_eq!(fs::read_dir(d.join(".openclaw")).unwrap().count(), 1);
    assert!(d.join(".openclaw-space/restore-failed").exists());
    let line = t.fails(&d, &["backup"]);
    assert!(line.contains("uploads are paused"), "{line}");
    assert!(line.contains("backup --force"), "{line}");
}

#[test]
fn restore_list_shows_the_versions_newest_first() {
    let t = Env::new();
    let a = t.data("a");
    let empty = t.run(&a, &["restore", "--list"]);
    assert!(empty.status.success());
    assert_eq!(
        lines(&empty.stdout),
        vec![format!("no backup in dir:{}", t.store.display())]
    );
    let mut shas = Vec::new();
    for n in ["one", "two", "three", "four"] {
        backup_state(&t, &a, n);
        shas.push(
            fs::read_to_string(t.store.join("latest_backup.sha256")).unwrap()[..64].to_string(),
        );
    }
    let ids = t.versions();
    assert_eq!(ids.len(), 3, "three kept by default");

    let out = t.run(&a, &["restore", "--list", "--json"]);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], ids[i].as_str(), "newest first");
        assert_eq!(row["sha256"], shas[3 - i].as_str());
        assert_eq!(row["store"], format!("dir:{}", t.store.display()).as_str());
        let size = fs::metadata(
            t.store
                .join(".versions")
                .join(&ids[i])
                .join("latest_backup.tar.gz"),
        )
        .unwrap()
        .len();
        assert_eq!(row["size"], size);
        assert!(
            row["time"]
                .as_str()
                .is_some_and(|s| s.len() == 24 && s.ends_with('Z')),
            "{row}"
        );
    }

    let out = t.run(&a, &["restore", "--list"]);
    assert!(out.status.success());
    let table = lines(&out.stdout);
    assert_eq!(table.len(), 4, "{table:#?}");
    assert!(
        table[0].starts_with("TIME") && table[0].ends_with("VERSION"),
        "{}",
        table[0]
    );
    for (i, row) in table[1..].iter().enumerate() {
        assert!(row.ends_with(&ids[i]), "{row}");
        assert!(row.contains(&shas[3 - i][..12]), "{row}");
        assert!(row.contains(" KiB ") || row.contains(" B "), "{row}");
        assert!(row.contains(rows[i]["time"].as_str().unwrap()), "{row}");
    }
    // Listing changes nothing and needs no stopped gateway.
    assert!(!a.join(".openclaw.pre-restore").exists());
}

#[test]
fn restore_version_takes_exactly_that_one_and_never_falls_back() {
    let t = Env::new();
    let a = t.data("a");
    let first = backup_state(&t, &a, "first");
    let _second = backup_state(&t, &a, "second");
    let bad = t.publish(&corrupt_version());

    let b = t.data("b");
    // A unique prefix is enough.
    let prefix = &first[..first.len() - 1];
    let (v, err) = t.ok(&b, &["restore", "--version", prefix]);
    assert_eq!(v["result"], "restored");
    assert_eq!(v["version"], first.as_str());
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(
        fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
        "first"
    );

    // A bad one: one line, nothing changed, no fallback, and uploads not paused by it.
    let line = t.fails(&b, &["restore", "--version", &bad]);
    assert!(
        line.contains(&bad) && line.contains("fails verification"),
        "{line}"
    );
    assert!(
        line.contains("quick_check failed") && line.contains("--list"),
        "{line}"
    );
    assert_eq!(
        fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
        "first"
    );
    assert!(!b.join(".openclaw-space/restore-failed").exists());

    let line = t.fails(
        &b,
        &["restore", "--version", "19990101T000000.000Z-nothere"],
    );
    assert!(
        line.contains("holds no version") && line.contains("restore --list"),
        "{line}"
    );
    // A prefix every version shares names several.
    let line = t.fails(&b, &["restore", "--version", "2"]);
    assert!(line.contains("names 3 versions"), "{line}");
}

#[test]
fn verify_checks_the_latest_or_one_version() {
    let t = Env::new();
    let a = t.data("a");
    let good = backup_state(&t, &a, "good");
    let (v, _) = t.ok(&a, &["verify"]);
    assert_eq!(v["result"], "verified");
    assert_eq!(v["version"], good.as_str());
    let bad = t.publish(&corrupt_version());

    let line = t.fails(&a, &["verify"]);
    assert!(
        line.contains(&bad) && line.contains("quick_check failed"),
        "{line}"
    );
    let line = t.fails(&a, &["verify", "--version", &bad]);
    assert!(line.contains("fails verification"), "{line}");
    let (v, _) = t.ok(&a, &["verify", "--version", &good]);
    assert_eq!(v["result"], "verified");
    assert_eq!(v["version"], good.as_str());
    assert!(v["files"].as_u64().unwrap() >= 2);
    // Verify changes nothing: no staging left, the state untouched.
    let names: Vec<String> = fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("staging")), "{names:?}");
    assert_eq!(
        fs::read_to_string(a.join(".openclaw/notes.md")).unwrap(),
        "good"
    );
}

#[test]
fn backup_keep_is_validated_and_honoured() {
    let t = Env::new();
    let a = t.data("a");
    for bad in ["0", "many", "-2"] {
        let out = t
            .cmd(&a, &["backup"])
            .env("ENTRYPOINT_BACKUP_KEEP", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = lines(&out.stderr);
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with("entrypoint: ENTRYPOINT_BACKUP_KEEP: "),
            "{}",
            err[0]
        );
    }
    for keep in [1usize, 2] {
        let t = Env::new();
        let a = t.data("a");
        for i in 0..keep + 2 {
            let state = a.join(".openclaw");
            write(&state.join("notes.md"), format!("version {i}"));
            let out = t
                .cmd(&a, &["backup"])
                .env("ENTRYPOINT_BACKUP_KEEP", keep.to_string())
                .output()
                .unwrap();
            assert!(out.status.success(), "{:?}", lines(&out.stderr));
            assert_eq!(
                t.versions().len(),
                (i + 1).min(keep),
                "keep {keep}, backup {i}"
            );
        }
        let out = t.run(&a, &["restore", "--list", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), keep);
        // The store still restores the newest.
        let b = t.data("b");
        t.ok(&b, &["restore"]);
        assert_eq!(
            fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
            format!("version {}", keep + 1)
        );
    }
}

#[test]
fn a_fresh_start_runs_on_the_last_good_state_and_backs_it_up() {
    let t = Env::new();
    let a = t.data("a");
    let good = backup_state(&t, &a, "good state");
    let bad = t.publish(&corrupt_version());
    let fresh = t.data("fresh");
    // The child sees the restored state and changes it; the final backup publishes that.
    let child = r#"grep -q 'good state' "$OPENCLAW_HOME/.openclaw/notes.md" && echo more >> "$OPENCLAW_HOME/.openclaw/notes.md""#;
    let out = t
        .cmd(&fresh, &["run", "--", "sh", "-c", child])
        .output()
        .unwrap();
    let err = lines(&out.stderr);
    assert!(out.status.success(), "{err:#?}");
    let said: Vec<&String> = err.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(said.len(), 1, "{err:#?}");
    assert!(
        said[0].contains(&good) && said[0].contains(&bad),
        "{}",
        said[0]
    );
    let newest = t.versions()[0].clone();
    assert!(
        newest != bad && newest != good,
        "the final backup was uploaded"
    );
    let b = t.data("b");
    t.ok(&b, &["restore"]);
    assert_eq!(
        fs::read_to_string(b.join(".openclaw/notes.md")).unwrap(),
        "good statemore\n"
    );
}
