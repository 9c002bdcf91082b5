//! One test per stage: scan, decide, build, in place, commit.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use super::build::{build, Plan};
use super::decide::{scan, unchanged};
use super::inplace::{place_output, take_over, Lent};
use super::*;
use crate::meta::Meta;

/// A state dir with a note and a WAL database holding the gateway's owner lease.
fn state(d: &Path) -> (Job, rusqlite::Connection) {
    let job = Job {
        state_dir: d.join(".openclaw"),
        meta: Meta::new(d.join(".openclaw-space")),
        excludes: vec!["cache/**".into()],
    };
    fs::create_dir_all(job.state_dir.join("state")).unwrap();
    job.meta.create().unwrap();
    fs::write(job.state_dir.join("notes.md"), "hello\n".repeat(100)).unwrap();
    let c = rusqlite::Connection::open(job.state_dir.join("state/openclaw.sqlite")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE state_leases (scope TEXT, lease_key TEXT, owner TEXT, heartbeat_at INTEGER,
           PRIMARY KEY (scope, lease_key));
         INSERT INTO state_leases VALUES ('gateway-owner', 'global', 'me', 1);
         CREATE TABLE memory (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO memory (body) VALUES ('a'), ('b');",
    )
    .unwrap();
    (job, c)
}

/// Stage 3 on the tree as it is now.
fn build_now(job: &Job, force: bool) -> Option<Box<Ready>> {
    let (prev, tree) = scan(job).unwrap();
    let copies = job.meta.copies().unwrap();
    let mut copier = livedb::Copier::start();
    let plan = Plan {
        racy_since_ns: prev.as_ref().map_or(i64::MIN, super::decide::racy_since),
        force,
        lent: Lent::nothing(),
        scratch: job.meta.scratch().unwrap(),
    };
    build(job, tree, &mut copier, &copies, plan).unwrap()
}

/// The fingerprint a full backup of the state makes now (stage 3), and stage 2's verdict
/// on the tree as it is after `change`.
fn verdict(job: &Job, change: impl FnOnce()) -> bool {
    let ready = build_now(job, true).expect("a forced build archives");
    change();
    let (_, tree) = scan(job).unwrap();
    let copier = livedb::Copier::start();
    let copies = job.meta.copies().unwrap();
    unchanged(job, &ready.fingerprint, &tree, &copier, &copies).unwrap()
}

#[test]
fn the_scan_classifies_every_file_and_loads_the_last_fingerprint() {
    let d = tempfile::tempdir().unwrap();
    let (job, _c) = state(d.path());
    fs::create_dir_all(job.state_dir.join("cache")).unwrap();
    fs::write(job.state_dir.join("cache/x.bin"), "left out").unwrap();
    let (prev, tree) = scan(&job).unwrap();
    assert!(prev.is_none(), "no fingerprint yet");
    let rels: Vec<String> = tree
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.rel).into_owned())
        .collect();
    assert!(rels.iter().any(|r| r == "notes.md"), "{rels:?}");
    assert!(!rels.iter().any(|r| r.starts_with("cache/x")), "{rels:?}");
    let dbs: Vec<&[u8]> = tree.databases().map(|e| e.rel.as_slice()).collect();
    assert_eq!(dbs, vec![b"state/openclaw.sqlite".as_slice()]);
    // No side file is an entry of its own.
    assert!(!rels
        .iter()
        .any(|r| r.ends_with("-wal") || r.ends_with("-shm")));
    let ready = build_now(&job, true).unwrap();
    job.meta.set_fingerprint(&ready.fingerprint).unwrap();
    let (prev, _) = scan(&job).unwrap();
    assert_eq!(
        prev.expect("the fingerprint is loaded").entries.len(),
        ready.fingerprint.entries.len()
    );
}

#[test]
fn the_decision_ignores_the_lease_heartbeat_and_sees_everything_else() {
    let d = tempfile::tempdir().unwrap();
    let (job, c) = state(d.path());
    assert!(verdict(&job, || {}), "nothing changed");
    job.meta.forget_fingerprint();
    assert!(
        verdict(&job, || {
            c.execute("UPDATE state_leases SET heartbeat_at = 2", [])
                .unwrap();
        }),
        "a heartbeat is not a change"
    );
    assert!(
        job.meta.fingerprint().is_some(),
        "the database's new stat is remembered"
    );
    assert!(!verdict(&job, || {
        c.execute("UPDATE memory SET body = 'c' WHERE id = 1", [])
            .unwrap();
    }));
    assert!(!verdict(&job, || {
        fs::write(job.state_dir.join("new.md"), "x").unwrap();
    }));
    assert!(!verdict(&job, || {
        fs::remove_file(job.state_dir.join("notes.md")).unwrap();
    }));
}

#[test]
fn the_build_archives_every_entry_and_skips_what_is_stored_already() {
    let d = tempfile::tempdir().unwrap();
    let (job, _c) = state(d.path());
    let ready = build_now(&job, false).expect("nothing stored yet: an archive");
    // The archive is a plain tar.gz holding the note and the database's copy.
    let out = d.path().join("x");
    fs::create_dir_all(&out).unwrap();
    let st = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&ready.archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::read(out.join(".openclaw/notes.md")).unwrap(),
        fs::read(job.state_dir.join("notes.md")).unwrap()
    );
    assert!(out.join(".openclaw/state/openclaw.sqlite").exists());
    assert!(!out.join(".openclaw/state/openclaw.sqlite-wal").exists());
    // The fingerprint covers every entry and the database's logical hash.
    assert_eq!(ready.fingerprint.sqlite.len(), 1);
    assert_eq!(ready.files, ready.fingerprint.entries.len() as u64);
    // The same bytes are stored already: no upload, unless forced.
    job.meta.set_state_sha(&ready.sha256).unwrap();
    job.meta.forget_fingerprint();
    assert!(build_now(&job, false).is_none(), "same bytes: skipped");
    assert!(job.meta.fingerprint().is_some(), "and remembered");
    assert_eq!(build_now(&job, true).unwrap().sha256, ready.sha256);
}

#[test]
fn a_spare_copy_is_written_only_when_no_retiring_file_will_hold_the_archive() {
    let d = tempfile::tempdir().unwrap();
    let meta = Meta::new(d.path().join("m"));
    meta.create().unwrap();
    let scratch = meta.scratch().unwrap();
    let out = scratch.archive();
    assert_eq!(
        place_output(&meta, None, &out, &Lent::nothing(), &scratch),
        None
    );
    let lent = Lent::retiring_for_test(None, true);
    let want = awrite::this_boot().map(|_| scratch.spare());
    assert_eq!(place_output(&meta, None, &out, &lent, &scratch), want);
    // A retiring file nobody else holds is taken over as the output.
    let retiring = d.path().join("old.tar.gz");
    fs::write(&retiring, b"old").unwrap();
    let lent = Lent::retiring_for_test(Some(retiring.clone()), true);
    place_output(&meta, None, &out, &lent, &scratch);
    assert!(!retiring.exists());
    assert_eq!(fs::read(&out).unwrap(), b"old");
}

#[test]
fn a_retiring_file_is_taken_over_only_when_nobody_else_has_it() {
    let d = tempfile::tempdir().unwrap();
    let (old, out) = (d.path().join("old"), d.path().join("out"));
    fs::write(&old, b"old archive").unwrap();
    // Open elsewhere: a reader would see the new bytes. It stays where it was.
    let reader = File::open(&old).unwrap();
    assert!(!take_over(&old, &out));
    assert!(old.exists() && !out.exists());
    drop(reader);
    // Another link to the same inode (e.g. a member cache): also left alone.
    fs::hard_link(&old, d.path().join("link")).unwrap();
    assert!(!take_over(&old, &out));
    assert!(old.exists() && !out.exists());
    fs::remove_file(d.path().join("link")).unwrap();
    // Nobody else: moved.
    assert!(take_over(&old, &out));
    assert!(!old.exists());
    assert_eq!(fs::read(&out).unwrap(), b"old archive");
}

#[test]
fn the_commit_keeps_the_archive_as_the_cache_and_moves_the_ledger_on() {
    let d = tempfile::tempdir().unwrap();
    let (job, _c) = state(d.path());
    job.meta.pause_uploads("a test").unwrap();
    let pre = crate::meta::pre_restore_dir(&job.state_dir).unwrap();
    fs::create_dir_all(&pre).unwrap();
    let ready = build_now(&job, true).unwrap();
    let sha = ready.sha256.clone();
    commit(&job, *ready, false, Duration::from_millis(3)).unwrap();
    assert!(
        job.meta.member_cache().is_some(),
        "the archive is the cache"
    );
    assert_eq!(job.meta.state_sha().as_deref(), Some(sha.as_str()));
    assert!(job.meta.fingerprint().is_some());
    assert_eq!(
        job.meta.record().unwrap()["last_upload"]["sha256"],
        sha.as_str()
    );
    assert!(!pre.exists(), "the pre-restore state goes after an upload");
    assert!(job.meta.uploads_paused().is_some(), "not forced: latched");
    let ready = build_now(&job, true).unwrap();
    commit(&job, *ready, true, Duration::from_millis(3)).unwrap();
    assert!(job.meta.uploads_paused().is_none(), "forced: unlatched");
}
