//! Backup and restore end to end through the real binary (`entrypoint backup|restore|verify`)
//! with a `dir` store: round trip, determinism, change detection, hostile and corrupt
//! archives, seed archives made by GNU tar, kill -9 during backup and restore, and SQLite
//! under a concurrent writer.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

#[path = "support/dirstore.rs"]
mod dirstore;
use dirstore::Env;

impl Env {
    /// Run and expect success; returns the JSON outcome printed on stdout.
    fn ok(&self, data: &Path, args: &[&str]) -> serde_json::Value {
        let out = self.run(data, args);
        assert!(
            out.status.success(),
            "entrypoint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn result(v: &serde_json::Value) -> &str {
    v["result"].as_str().unwrap()
}

fn write(p: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A state DB shaped like OpenClaw's: WAL mode, a `state_leases` table with the gateway's
/// owner lease, and some data.
fn make_db(path: &Path, rows: i64) -> Connection {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL,
           expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL,
           updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT;
         CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT);
         INSERT OR REPLACE INTO state_leases VALUES ('gateway-owner','global','owner-1',9999999999999,1,
           '{\"owner\":{\"pid\":1,\"host\":\"old-host\"}}',1,1);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items (body) VALUES (?1)",
            [format!("item {i} {}", "x".repeat((i % 50) as usize))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c
}

fn heartbeat(c: &Connection, t: i64) {
    c.execute(
        "UPDATE state_leases SET heartbeat_at = ?1, expires_at = ?1 + 300000, updated_at = ?1 WHERE scope = 'gateway-owner'",
        [t],
    )
    .unwrap();
}

/// A varied state dir: unicode names, modes, symlink, empty dir, long path, a big file,
/// a live WAL database, and volatile paths that must not be backed up.
fn make_state(state: &Path) -> Connection {
    write(
        &state.join("openclaw.json"),
        r#"{"gateway":{"mode":"local"}}"#,
    );
    write(&state.join("ünïcødé/文件 name.md"), "héllo wörld\n");
    write(&state.join("workspace/AGENTS.md"), "# agents\n".repeat(100));
    let exe = state.join("workspace/run.sh");
    write(&exe, "#!/bin/sh\necho hi\n");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o750)).unwrap();
    let secret = state.join("credentials/token.json");
    write(&secret, "{\"t\":1}");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(state.join("media/outbound")).unwrap();
    std::os::unix::fs::symlink(
        "../workspace/AGENTS.md",
        state.join("credentials/agents-link"),
    )
    .unwrap();
    let long = format!("{}/{}", "d".repeat(60), "f".repeat(70));
    write(&state.join(&long).join("deep.txt"), "deep");
    let mut big = noise(1 << 20, 42);
    big.extend("compressible text line\n".repeat(100_000).as_bytes());
    write(&state.join("agents/main/blob.bin"), big);
    for i in 0..50 {
        write(
            &state.join(format!("agents/main/sessions/s{i:03}.jsonl")),
            format!("{{\"turn\":{i}}}\n").repeat(40),
        );
    }
    // Volatile: never archived.
    write(&state.join("cache/control-ui-assets/x.js"), "cache");
    write(&state.join("tmp/openclaw-0/gateway.lock"), "lock");
    write(&state.join("agents/main/agent/db.lock.sqlite"), "lock");
    write(&state.join("openclaw.json.rejected.123"), "bad");
    make_db(&state.join("state/openclaw.sqlite"), 2000)
}

#[derive(Debug, PartialEq)]
enum Node {
    Dir(u32),
    File(u32, String, i64),
    Link(String),
    Db(Vec<(i64, String)>),
}

/// The tree as comparable values (databases by their `items` rows).
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            // SQLite side files come and go as connections open and close.
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    Node::Link(fs::read_link(&p).unwrap().to_string_lossy().into_owned()),
                );
            } else if m.is_dir() {
                out.insert(rel, Node::Dir(m.mode() & 0o7777));
                walk(root, &p, out);
            } else if rel.ends_with(".sqlite") && !rel.contains(".lock") {
                let c = Connection::open(&p).unwrap();
                let rows = c
                    .prepare("SELECT id, body FROM items ORDER BY id")
                    .unwrap()
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                out.insert(rel, Node::Db(rows));
            } else if rel.ends_with("-wal") || rel.ends_with("-shm") {
            } else {
                let h = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
                out.insert(rel, Node::File(m.mode() & 0o7777, h, m.mtime()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn leases(db: &Path) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row(
        "SELECT count(*) FROM state_leases WHERE scope = 'gateway-owner'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn latest_sha(store: &Path) -> String {
    let text = fs::read_to_string(store.join("latest_backup.sha256")).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

#[test]
fn round_trip_is_faithful_and_deterministic() {
    let t = Env::new();
    let a = t.data("a");
    let _db = make_state(&a.join(".openclaw"));

    let first = t.ok(&a, &["backup"]);
    assert_eq!(result(&first), "uploaded");
    let sha = first["sha256"].as_str().unwrap().to_string();
    assert_eq!(latest_sha(&t.store), sha);
    // Same tree, forced: byte-identical archive.
    let again = t.ok(&a, &["backup", "--force"]);
    assert_eq!(
        again["sha256"].as_str().unwrap(),
        sha,
        "equal content must give an equal archive"
    );

    let b = t.data("b");
    let r = t.ok(&b, &["restore"]);
    assert_eq!(result(&r), "restored");
    let mut want = snapshot(&a.join(".openclaw"));
    want.retain(|k, _| {
        !(k.starts_with("cache")
            || k.starts_with("tmp")
            || k.contains(".lock")
            || k.contains(".rejected."))
    });
    let got = snapshot(&b.join(".openclaw"));
    assert_eq!(got, want);
    assert!(!b.join(".openclaw/cache").exists() && !b.join(".openclaw/tmp").exists());
    assert_eq!(
        leases(&a.join(".openclaw/state/openclaw.sqlite")),
        1,
        "the live DB is never modified"
    );
    assert_eq!(
        leases(&b.join(".openclaw/state/openclaw.sqlite")),
        0,
        "no owner lease in a restored DB"
    );

    // The restored state is known to equal the backup: no upload, no second restore...
    assert_eq!(result(&t.ok(&b, &["backup"])), "skipped");
    assert_eq!(result(&t.ok(&b, &["restore"])), "up-to-date");
    // ...and it archives to the very same bytes.
    assert_eq!(
        t.ok(&b, &["backup", "--force"])["sha256"].as_str().unwrap(),
        sha,
        "determinism after a restore"
    );
    // The restore seeded the member cache: nothing had to be compressed again.
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join(".openclaw-space/last-backup.json")).unwrap())
            .unwrap();
    assert_eq!(
        rec["last_upload"]["reused_members"], rec["last_upload"]["members"],
        "{rec}"
    );
    let v = t.ok(&b, &["verify"]);
    assert_eq!(result(&v), "verified");
}

#[test]
fn successive_backups_recycle_the_oldest_version_file_intact() {
    let t = Env::new();
    let a = t.data("a");
    let state = a.join(".openclaw");
    drop(make_state(&state));
    write(&state.join("big.bin"), noise(3 << 20, 7));
    let v1 = t.ok(&a, &["backup"]);
    fs::remove_file(state.join("big.bin")).unwrap();
    let v2 = t.ok(&a, &["backup"]);
    write(&state.join("notes/new.md"), "a third version\n");
    let v3 = t.ok(&a, &["backup"]);
    // The store keeps 3 versions (the default): the fourth archive is written over the first
    // one's file (longer, and not open anywhere): it must come out exactly as a fresh write
    // would.
    write(&state.join("notes/new.md"), "a fourth version\n");
    let v4 = t.ok(&a, &["backup"]);
    let sizes: Vec<u64> = [&v1, &v2, &v3, &v4]
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert!(sizes[0] > sizes[3] + (1 << 20), "{sizes:?}");
    let stored = t.store.join("latest_backup.tar.gz");
    assert_eq!(fs::metadata(&stored).unwrap().len(), sizes[3]);
    assert_eq!(
        hex::encode(Sha256::digest(fs::read(&stored).unwrap())),
        v4["sha256"].as_str().unwrap()
    );
    assert_eq!(result(&t.ok(&a, &["verify"])), "verified");
    let versions = fs::read_dir(t.store.join(".versions")).unwrap().count();
    assert_eq!(versions, 3, "the current version and the two before it");
    // Same bytes as a first backup of the same tree into an empty store.
    let fresh = Env::new();
    let c = fresh.data("c");
    // `cp -a`: other inodes and ctimes, same content, modes and mtimes.
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(c.join(".openclaw"))
        .status()
        .unwrap();
    assert!(cp.success());
    assert_eq!(
        fresh.ok(&c, &["backup"])["sha256"],
        v4["sha256"],
        "recycling must not change the archive"
    );
    let b = t.data("b");
    assert_eq!(result(&t.ok(&b, &["restore"])), "restored");
    assert!(b.join(".openclaw/notes/new.md").exists() && !b.join(".openclaw/big.bin").exists());
}

#[test]
fn the_backup_after_the_first_is_written_over_a_spare_copy() {
    let t = Env::new();
    let a = t.data("a");
    let state = a.join(".openclaw");
    drop(make_state(&state));
    write(&state.join("media/big.bin"), noise(12 << 20, 3));
    t.ok(&a, &["backup"]);
    // The store holds one version, so the first backup left a copy of its settled start.
    let spare = a.join(".openclaw-space/spare.tar.gz");
    assert!(fs::metadata(&spare).unwrap().len() > 12 << 20);

    write(
        &state.join("openclaw.json"),
        "{\"gateway\": {\"port\": 7861}}\n",
    );
    let out = t
        .cmd(&a, &["backup"])
        .env("ENTRYPOINT_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let left: u64 = log
        .split_once("MB left in place")
        .and_then(|(before, _)| before.rsplit('(').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no in-place line in {log}"));
    assert!(left >= 12, "{left} MB left in place");
    assert!(!spare.exists(), "the spare became the new archive");
    let v2: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(latest_sha(&t.store), v2["sha256"].as_str().unwrap());
    assert_eq!(
        hex::encode(Sha256::digest(
            fs::read(t.store.join("latest_backup.tar.gz")).unwrap()
        )),
        latest_sha(&t.store)
    );
    let b = t.data("b");
    assert_eq!(result(&t.ok(&b, &["restore"])), "restored");
    for f in ["openclaw.json", "media/big.bin"] {
        assert_eq!(
            fs::read(b.join(".openclaw").join(f)).unwrap(),
            fs::read(state.join(f)).unwrap()
        );
    }
}

#[test]
fn change_detection_ignores_the_lease_heartbeat() {
    let t = Env::new();
    let a = t.data("a");
    let state = a.join(".openclaw");
    let db = make_state(&state);
    assert_eq!(result(&t.ok(&a, &["backup"])), "uploaded");
    assert_eq!(result(&t.ok(&a, &["backup"])), "skipped", "nothing changed");

    heartbeat(&db, 2_000_000);
    assert_eq!(
        result(&t.ok(&a, &["backup"])),
        "skipped",
        "a lease heartbeat alone is no change"
    );
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    heartbeat(&db, 3_000_000);
    assert_eq!(
        result(&t.ok(&a, &["backup"])),
        "skipped",
        "nor after a checkpoint"
    );

    db.execute("INSERT INTO items (body) VALUES ('real change')", [])
        .unwrap();
    assert_eq!(
        result(&t.ok(&a, &["backup"])),
        "uploaded",
        "a new row is a change"
    );
    assert_eq!(result(&t.ok(&a, &["backup"])), "skipped");

    // A small file edit re-uses the members of everything else.
    write(&state.join("workspace/AGENTS.md"), "# changed\n");
    assert_eq!(result(&t.ok(&a, &["backup"])), "uploaded");
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join(".openclaw-space/last-backup.json")).unwrap())
            .unwrap();
    let (members, reused) = (
        rec["last_upload"]["members"].as_u64().unwrap(),
        rec["last_upload"]["reused_members"].as_u64().unwrap(),
    );
    assert!(
        reused > 0 && reused < members,
        "{reused} of {members} members reused"
    );
    // Excluded paths never count.
    write(&state.join("cache/new.js"), "x");
    write(&state.join("logs/stability/crash.json"), "x");
    assert_eq!(result(&t.ok(&a, &["backup"])), "skipped");
}

/// A tar.gz with raw (unchecked) entry names, published in the seed layout.
fn seed_store(store: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let bytes = gz.finish().unwrap();
    fs::create_dir_all(store).unwrap();
    fs::write(store.join("latest_backup.tar.gz"), &bytes).unwrap();
    fs::write(
        store.join("latest_backup.sha256"),
        hex::encode(Sha256::digest(&bytes)),
    )
    .unwrap();
}

fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    ty: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(ty);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_archives_are_refused_and_nothing_escapes() {
    use tar::EntryType::*;
    let t = Env::new();
    let outside = t.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let abs = outside.join("abs").to_string_lossy().into_owned();
    // (what, [(entry name, type, link target)])
    type Case = (&'static str, Vec<(String, tar::EntryType, String)>);
    let cases: Vec<Case> = vec![
        ("absolute", vec![(abs.clone(), Regular, String::new())]),
        (
            "dotdot",
            vec![(".openclaw/../outside/dotdot".into(), Regular, String::new())],
        ),
        (
            "not under .openclaw",
            vec![("other/x".into(), Regular, String::new())],
        ),
        (
            "symlink escape + write-through",
            vec![
                (".openclaw/esc".into(), Symlink, "../../outside".into()),
                (".openclaw/esc/pwned".into(), Regular, String::new()),
            ],
        ),
        (
            "absolute symlink",
            vec![(
                ".openclaw/abs".into(),
                Symlink,
                outside.to_string_lossy().into_owned(),
            )],
        ),
        (
            "write through an inside symlink",
            vec![
                (".openclaw/sub/".into(), Directory, String::new()),
                (".openclaw/l".into(), Symlink, "sub".into()),
                (".openclaw/l/f".into(), Regular, String::new()),
            ],
        ),
        (
            "hardlink escape",
            vec![(".openclaw/h".into(), Link, "../outside/target".into())],
        ),
        (
            "hardlink absolute",
            vec![(".openclaw/h".into(), Link, "/etc/passwd".into())],
        ),
        (
            "device node",
            vec![(".openclaw/dev".into(), Char, String::new())],
        ),
        ("fifo", vec![(".openclaw/fifo".into(), Fifo, String::new())]),
    ];
    for (what, entries) in cases {
        let data = t.data(&format!("d-{}", what.replace(' ', "-")));
        write(&data.join(".openclaw/keep.txt"), "old state");
        let store = t.root.join(format!("s-{}", what.replace(' ', "-")));
        seed_store(&store, |b| {
            raw_entry(b, ".openclaw/", Directory, "", b"");
            raw_entry(b, ".openclaw/fine.txt", Regular, "", b"fine");
            for (name, ty, link) in &entries {
                raw_entry(
                    b,
                    name,
                    *ty,
                    link,
                    if *ty == Regular { b"pwned" } else { b"" },
                );
            }
        });
        let mut c = t.cmd(&data, &["restore"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: restore should fail");
        assert!(
            err.contains("refused") || err.contains("archive entry"),
            "{what}: unclear error: {err}"
        );
        assert_eq!(
            fs::read_to_string(data.join(".openclaw/keep.txt")).unwrap(),
            "old state",
            "{what}: old state lost"
        );
        assert!(
            !data.join(".openclaw/fine.txt").exists(),
            "{what}: partial restore visible"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{what}: wrote outside"
        );
        assert!(!Path::new(&abs).exists());
        let leftovers: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            2,
            "{what}: staging left behind: {leftovers:?}"
        );
        // Uploads are now paused until a restore succeeds or a backup is forced.
        let mut c = t.cmd(&data, &["backup"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        let out = c.output().unwrap();
        assert!(
            !out.status.success(),
            "{what}: backup after a failed restore must be refused"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    }
}

#[test]
fn corrupt_archives_and_wrong_sidecars_keep_the_old_state() {
    let t = Env::new();
    let a = t.data("a");
    let _db = make_state(&a.join(".openclaw"));
    t.ok(&a, &["backup"]);
    let good = fs::read(t.store.join("latest_backup.tar.gz")).unwrap();

    let mut truncated = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    let mid = flipped.len() / 3;
    flipped[mid] ^= 0x55;
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("truncated", std::mem::take(&mut truncated), None),
        ("bit flip", flipped, None),
        ("wrong sidecar", good.clone(), Some("0".repeat(64))),
        ("garbage sidecar", good.clone(), Some("not a digest".into())),
    ];
    for (what, bytes, sidecar) in cases {
        let store = t.root.join(format!("s-{}", what.replace(' ', "-")));
        fs::create_dir_all(&store).unwrap();
        fs::write(store.join("latest_backup.tar.gz"), &bytes).unwrap();
        let side = sidecar.unwrap_or_else(|| {
            format!(
                "{}  latest_backup.tar.gz\n",
                hex::encode(Sha256::digest(&bytes))
            )
        });
        fs::write(store.join("latest_backup.sha256"), side).unwrap();
        let data = t.data(&format!("d-{}", what.replace(' ', "-")));
        write(&data.join(".openclaw/keep.txt"), "old");
        let mut c = t.cmd(&data, &["restore"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{what}: restore should fail");
        assert_eq!(
            fs::read_to_string(data.join(".openclaw/keep.txt")).unwrap(),
            "old",
            "{what}"
        );
        assert_eq!(
            fs::read_dir(data.join(".openclaw")).unwrap().count(),
            1,
            "{what}: mixed state"
        );
        let mut c = t.cmd(&data, &["verify"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        assert!(
            !c.output().unwrap().status.success(),
            "{what}: verify should fail"
        );
        // Forced backup lifts the latch.
        let mut c = t.cmd(&data, &["backup", "--force"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{what}: forced backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = t.cmd(&data, &["backup"]);
        c.env("ENTRYPOINT_BACKUP_DIR", &store);
        assert!(
            c.output().unwrap().status.success(),
            "{what}: latch not lifted"
        );
    }
}

#[test]
fn seed_archive_made_by_gnu_tar_restores() {
    let t = Env::new();
    let a = t.data("a");
    let db = make_state(&a.join(".openclaw"));
    // The seed method: tar czf of the live dir (WAL and all), sha256sum format sidecar.
    fs::create_dir_all(&t.store).unwrap();
    let archive = t.store.join("latest_backup.tar.gz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg(".openclaw")
        .current_dir(&a)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("sha256sum")
        .arg("latest_backup.tar.gz")
        .current_dir(&t.store)
        .output()
        .unwrap();
    fs::write(t.store.join("latest_backup.sha256"), &out.stdout).unwrap();
    drop(db);

    let b = t.data("b");
    assert_eq!(result(&t.ok(&b, &["restore"])), "restored");
    let mut want = snapshot(&a.join(".openclaw"));
    want.retain(|k, _| !(k.starts_with("cache") || k.starts_with("tmp")));
    let mut got = snapshot(&b.join(".openclaw"));
    // Lock files are kept from a seed (only caches are dropped); compare what both have.
    got.retain(|k, _| want.contains_key(k));
    assert_eq!(got.len(), want.len());
    assert_eq!(leases(&b.join(".openclaw/state/openclaw.sqlite")), 0);
    // The restored seed is known to equal the store's latest: nothing to upload.
    assert_eq!(result(&t.ok(&b, &["backup"])), "skipped");
    // A forced backup replaces the seed pair with ours, still under the seed names.
    assert_eq!(result(&t.ok(&b, &["backup", "--force"])), "uploaded");
    assert!(fs::symlink_metadata(t.store.join("latest_backup.tar.gz"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn other_readers_accept_our_archive() {
    let t = Env::new();
    let a = t.data("a");
    let _db = make_state(&a.join(".openclaw"));
    t.ok(&a, &["backup"]);
    let archive = t.store.join("latest_backup.tar.gz");
    assert!(Command::new("gzip")
        .arg("-t")
        .arg(&archive)
        .status()
        .unwrap()
        .success());
    let out = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.starts_with(".openclaw/\n"),
        "root entry first: {}",
        &list[..list.len().min(200)]
    );
    assert!(list.contains(".openclaw/state/openclaw.sqlite\n"));
    assert!(!list.contains("-wal") && !list.contains("cache/"));
    let py = Command::new("python3")
        .arg("-c")
        .arg("import sys,tarfile\nt=tarfile.open(sys.argv[1],'r:gz')\nn=0\nfor m in t:\n  n+=1\n  f=t.extractfile(m)\n  f and f.read()\nprint(n)")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "python tarfile: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let n: usize = String::from_utf8(py.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, list.lines().count());
    // Extracted by GNU tar, the database is a single consistent file.
    let x = t.data("x");
    assert!(Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .current_dir(&x)
        .status()
        .unwrap()
        .success());
    let c = Connection::open(x.join(".openclaw/state/openclaw.sqlite")).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

/// Pseudo-random delay in [0, max) (varies the kill point; not synchronisation).
fn jitter(i: u64, max_ms: u64) -> Duration {
    let x = noise(8, i * 7919 + 1);
    Duration::from_millis(u64::from_le_bytes(x.try_into().unwrap()) % max_ms)
}

fn kill9(child: &mut std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
}

fn bulk_state(state: &Path, tag: &str) {
    for i in 0..600 {
        write(
            &state.join(format!("w/{:02}/f{i}.txt", i % 20)),
            format!("{tag} {i} ").repeat(200),
        );
    }
    write(&state.join("big.bin"), noise(6 << 20, tag.len() as u64));
    write(&state.join("TAG"), tag);
}

/// Every file of the tree carries the same tag (a mix of two states would not).
fn tag_of(state: &Path) -> String {
    let tag = fs::read_to_string(state.join("TAG")).unwrap();
    for i in 0..600 {
        let f = fs::read_to_string(state.join(format!("w/{:02}/f{i}.txt", i % 20))).unwrap();
        assert!(
            f.starts_with(&format!("{tag} {i} ")),
            "mixed state: f{i} is not from {tag}"
        );
    }
    tag
}

#[test]
fn kill_9_during_backup_never_publishes_a_torn_pair() {
    let t = Env::new();
    let a = t.data("a");
    bulk_state(&a.join(".openclaw"), "A");
    t.ok(&a, &["backup"]);
    for i in 0..20u64 {
        write(&a.join(".openclaw/TAG"), format!("A{i}"));
        let mut child = t
            .cmd(&a, &["backup", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(i, 600));
        kill9(&mut child);
        // The published pair always matches.
        let bytes = fs::read(t.store.join("latest_backup.tar.gz")).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            latest_sha(&t.store),
            "iteration {i}: torn pair"
        );
    }
    // The meta dir survived the kills: a backup and a verify still work.
    t.ok(&a, &["backup", "--force"]);
    assert_eq!(result(&t.ok(&a, &["verify"])), "verified");
}

#[test]
fn kill_9_during_restore_leaves_old_or_new() {
    let t = Env::new();
    let src = t.data("src");
    bulk_state(&src.join(".openclaw"), "NEW");
    t.ok(&src, &["backup"]);
    let mut outcomes = BTreeMap::new();
    for i in 0..20u64 {
        let d = t.data(&format!("d{i}"));
        bulk_state(&d.join(".openclaw"), "OLD");
        let mut child = t
            .cmd(&d, &["restore"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(i, 800));
        kill9(&mut child);
        // Right after the kill: the state dir is old or new; if the kill hit between the two
        // renames it is missing and exactly one `.old-*` copy holds the old state.
        let state = d.join(".openclaw");
        let tag = if state.exists() {
            tag_of(&state)
        } else {
            let olds: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(".openclaw.old-")
                })
                .collect();
            assert_eq!(olds.len(), 1, "iteration {i}: no state at all");
            assert_eq!(tag_of(&olds[0]), "OLD");
            "MISSING".to_string()
        };
        *outcomes.entry(tag).or_insert(0) += 1;
        // The next restore recovers and completes.
        let r = t.ok(&d, &["restore"]);
        assert!(
            matches!(result(&r), "restored" | "up-to-date"),
            "iteration {i}: {r}"
        );
        assert_eq!(tag_of(&state), "NEW");
        let names: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.contains(".staging-") && !n.contains(".old-")),
            "iteration {i}: leftovers {names:?}"
        );
    }
    eprintln!("states right after kill -9: {outcomes:?}");
}

#[test]
fn sqlite_under_a_concurrent_writer_restores_consistent() {
    let t = Env::new();
    let a = t.data("a");
    let state = a.join(".openclaw");
    let db = state.join("state/ledger.sqlite");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=50;
             CREATE TABLE debit (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB);
             CREATE TABLE credit (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB);",
        )
        .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..5000 {
            tx.execute("INSERT INTO debit VALUES (?1, 0, randomblob(300))", [i])
                .unwrap();
            tx.execute("INSERT INTO credit VALUES (?1, 0, randomblob(300))", [i])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tx = c.unchecked_transaction().unwrap();
                let (x, y) = ((n * 7919) % 5000, (n * 104_729) % 5000);
                tx.execute(
                    "UPDATE debit SET v = v + 3, pad = randomblob(300) WHERE id = ?1",
                    [x],
                )
                .unwrap();
                tx.execute(
                    "UPDATE credit SET v = v + 3, pad = randomblob(300) WHERE id = ?1",
                    [y],
                )
                .unwrap();
                tx.commit().unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..6 {
        t.ok(&a, &["backup", "--force"]);
        let x = t.data(&format!("x{i}"));
        let out = Command::new("tar")
            .arg("xzf")
            .arg(t.store.join("latest_backup.tar.gz"))
            .current_dir(&x)
            .status()
            .unwrap();
        assert!(out.success());
        let c = Connection::open(x.join(".openclaw/state/ledger.sqlite")).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "copy {i}");
        let (d, cr): (i64, i64) = c
            .query_row(
                "SELECT (SELECT sum(v) FROM debit), (SELECT sum(v) FROM credit)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(d, cr, "copy {i}: torn transaction");
        assert!(!x.join(".openclaw/state/ledger.sqlite-wal").exists());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = writer.join().unwrap();
    assert!(n > 100, "the writer made progress ({n} transactions)");
}

#[test]
fn a_manual_backup_waits_for_a_running_one() {
    let t = Env::new();
    let a = t.data("a");
    bulk_state(&a.join(".openclaw"), "A");
    let mut first = t
        .cmd(&a, &["backup", "--force"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first holds the lock (its scratch dir appears), then start the second.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.join(".openclaw-space/scratch").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = t.ok(&a, &["backup"]);
    assert!(first.wait().unwrap().success());
    // The second ran after the first finished, so it saw nothing new.
    assert_eq!(result(&second), "skipped");
}
