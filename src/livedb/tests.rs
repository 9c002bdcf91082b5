use std::fs;
use std::path::Path;

use rusqlite::Connection;

use super::*;

/// A WAL database shaped like OpenClaw's state: the gateway's owner lease and 3000 rows.
fn lease_db(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT,
           heartbeat_at INTEGER, PRIMARY KEY (scope, lease_key));
         INSERT INTO state_leases VALUES ('gateway-owner','global','host-a',1);
         CREATE TABLE memory (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
           INSERT INTO memory (body) SELECT printf('%0500d', i) FROM n;",
    )
    .unwrap();
    c
}

#[test]
fn logical_hash_ignores_the_owner_lease_only() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("state.sqlite");
    let c = lease_db(&db);
    c.execute_batch(
        "INSERT INTO state_leases VALUES ('other','k','y',1);
         DELETE FROM memory WHERE id % 3 = 0;",
    )
    .unwrap();
    let hash = |c: &Connection| {
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        logical_hash(&db).unwrap()
    };
    let base = hash(&c);
    assert_eq!(base, hash(&c), "stable");
    c.execute(
        "UPDATE state_leases SET heartbeat_at = 99, owner = 'host-b' WHERE scope = 'gateway-owner'",
        [],
    )
    .unwrap();
    assert_eq!(base, hash(&c), "a heartbeat is not a change");
    c.execute(
        "UPDATE state_leases SET heartbeat_at = 2 WHERE scope = 'other'",
        [],
    )
    .unwrap();
    let other = hash(&c);
    assert_ne!(base, other, "other lease rows count");
    c.execute("UPDATE memory SET body = 'x' WHERE id = 1000", [])
        .unwrap();
    assert_ne!(other, hash(&c), "a row change counts");
    // Uncheckpointed WAL frames: hashed row by row, still seen.
    c.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
    let before = logical_hash(&db).unwrap();
    c.execute("UPDATE memory SET body = 'y' WHERE id = 1000", [])
        .unwrap();
    assert_ne!(before, logical_hash(&db).unwrap());
}

#[test]
fn the_bundled_sqlite_has_sqlite_dbpage() {
    // .cargo/config.toml builds it in; without it every copy is a whole backup-API copy.
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE t(x)").unwrap();
    let pages: i64 = c
        .query_row("SELECT count(*) FROM sqlite_dbpage", [], |r| r.get(0))
        .unwrap();
    assert!(pages >= 1);
}

#[test]
fn incremental_copy_equals_a_fresh_one_and_repairs_leftovers() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("live.sqlite");
    let c = lease_db(&db);
    c.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
    let kept = d.path().join("kept.sqlite");
    let fresh = |name: &str| {
        let p = d.path().join(name);
        copy(&db, &p).unwrap();
        fs::read(&p).unwrap()
    };
    copy(&db, &kept).unwrap();
    assert_eq!(fs::read(&kept).unwrap(), fresh("a.sqlite"));
    // Changes still in the WAL (never checkpointed), a shrink, and leftovers of an
    // interrupted run: the kept copy catches up to exactly what a fresh copy holds.
    c.execute_batch(
        "UPDATE memory SET body = 'changed' WHERE id % 97 = 0;
         DELETE FROM memory WHERE id > 2500; VACUUM;
         UPDATE state_leases SET heartbeat_at = 2;",
    )
    .unwrap();
    fs::write(side_path(&kept, "-journal"), b"not a journal").unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&kept).unwrap();
        f.write_all_at(&[0xAB; 4096], 8192).unwrap();
    }
    copy(&db, &kept).unwrap();
    let bytes = fs::read(&kept).unwrap();
    assert_eq!(bytes, fresh("b.sqlite"));
    assert!(!side_path(&kept, "-journal").exists());
    let k = Connection::open(&kept).unwrap();
    let check: String = k
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (rows, changed, leases): (i64, i64, i64) = k
        .query_row(
            "SELECT (SELECT count(*) FROM memory), \
                    (SELECT count(*) FROM memory WHERE body = 'changed'), \
                    (SELECT count(*) FROM state_leases)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((rows, changed, leases), (2500, 25, 0));
    let mode: String = k
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    drop(k);
    // The header says how many pages there are, and the file has exactly those.
    let pages = u32::from_be_bytes(bytes[28..32].try_into().unwrap()) as usize;
    assert_eq!(pages * 4096, bytes.len());
    drop(c);
}

/// A WAL database with committed frames still in its WAL (autocheckpoint off).
fn wal_db(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE t (x BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
           INSERT INTO t SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    c
}

/// Ask another process for `PRAGMA wal_checkpoint(TRUNCATE)` on `db`: true when it could
/// not finish (busy = 1), i.e. a reader of ours still holds its read mark.
fn truncate_blocked(db: &Path) -> bool {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], timeout=0)\n\
             print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])",
        )
        .arg(db)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

#[test]
fn nothing_opens_a_live_database_or_its_side_files_while_a_copy_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("state.sqlite");
    let writer = wal_db(&db);
    let shm = side_path(&db, "-shm");
    assert!(shm.exists() && side_path(&db, "-wal").exists());
    // A copy in the middle of its read: the first page read, the statement still open.
    let live = Live::open(&db).unwrap();
    let mut st = live
        .conn()
        .prepare("SELECT pgno, data FROM sqlite_dbpage")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    assert!(rows.next().unwrap().is_some());
    assert!(truncate_blocked(&db), "the read mark holds to begin with");

    // Everything that could open the database or its side files during a copy:
    assert!(open_plain(&db).is_err(), "the database itself is refused");
    for side in SIDE_SUFFIXES {
        assert!(
            open_plain(&side_path(&db, side)).is_err(),
            "{side} is refused"
        );
    }
    assert!(!sniff(&shm).unwrap(), "a side file is never sniffed");
    assert!(sniff(&db).is_err(), "a live database is not sniffed");
    // Under another name (a hard link made after the walk): opened, then parked, not closed.
    let alias = d.path().join("alias");
    fs::hard_link(&db, &alias).unwrap();
    assert!(open_plain(&alias).is_err());
    fs::remove_file(&alias).unwrap();
    // The snapshot's walk over the tree (its sniff of every candidate file).
    let mut tree = crate::snapshot::list(d.path(), &globset::GlobSet::empty()).unwrap();
    assert!(crate::snapshot::classify(d.path(), &mut tree, None).is_err());

    assert!(
        truncate_blocked(&db),
        "the copy's read mark survived every attempt (POSIX locks drop on any close)"
    );
    drop(rows);
    drop(st);
    drop(live);
    assert!(open_plain(&db).is_ok(), "free again once the copy is done");
    assert!(!truncate_blocked(&db));
    drop(writer);
}

#[test]
fn a_copy_is_checked_and_a_torn_one_is_made_again_whole() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("live.sqlite");
    let c = lease_db(&db);
    let kept = d.path().join("kept.sqlite");
    copy::TEAR_NEXT.with(|t| t.set(1));
    copy(&db, &kept).unwrap();
    let k = Connection::open(&kept).unwrap();
    assert_eq!(copy::quick_check(&k).unwrap(), None);
    let n: i64 = k
        .query_row("SELECT count(*) FROM memory", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3000);
    drop(c);
}

#[test]
fn a_corrupt_source_is_still_backed_up_as_it_is() {
    use std::os::unix::fs::FileExt;
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("live.sqlite");
    let c = lease_db(&db);
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE")
        .unwrap();
    drop(c);
    // Garbage over a b-tree page in the middle of the `memory` table.
    let f = fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&[0x0D; 4096], 4096 * 100).unwrap();
    drop(f);
    let kept = d.path().join("kept.sqlite");
    copy(&db, &kept).unwrap();
    let k = Connection::open(&kept).unwrap();
    assert!(copy::quick_check(&k).unwrap().is_some(), "copied as it is");
}

#[test]
fn a_copy_torn_twice_of_a_sound_database_fails_the_backup_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("live.sqlite");
    let c = lease_db(&db);
    copy::TEAR_NEXT.with(|t| t.set(2));
    let err = format!(
        "{:#}",
        copy(&db, &d.path().join("kept.sqlite")).unwrap_err()
    );
    assert!(
        err.contains("live.sqlite") && err.contains("failed its integrity check twice"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    drop(c);
}
