//! Crafted backups for restore tests: seed-compatible archives whose database fails
//! `quick_check` while their sidecar matches (what a torn copy looked like in issue 13).
#![allow(dead_code)] // each test crate uses a different part of this module

use std::fs;
use std::io::Write;
use std::path::Path;

/// A rollback-journal database with enough rows for several b-tree pages.
pub fn good_db(path: &Path, tag: &str) {
    let _ = fs::remove_file(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT);")
        .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..2000 {
        tx.execute(
            "INSERT INTO items (body) VALUES (?1)",
            [format!("{tag} item {i} {}", "x".repeat(40))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// A database whose header is fine (it opens) but whose b-tree is broken: quick_check fails.
pub fn corrupt_db_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db.sqlite");
    good_db(&p, "corrupt");
    let mut bytes = fs::read(&p).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    // Page 3 is a leaf of the table: garbage over its cell pointers and cells.
    for b in &mut bytes[2 * page + 8..2 * page + 400] {
        *b = 0xA5;
    }
    fs::write(&p, &bytes).unwrap();
    let c = rusqlite::Connection::open(&p).unwrap();
    let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_ne!(check, "ok", "the crafted database must fail quick_check");
    bytes
}

/// A seed-compatible tar.gz of `.openclaw/` with these files.
pub fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir, ".openclaw/", std::io::empty())
        .unwrap();
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!(".openclaw/{name}"), *data)
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A newest version whose database fails quick_check (its sidecar matches).
pub fn corrupt_version() -> Vec<u8> {
    archive(&[
        ("notes.md", b"from the corrupt version"),
        ("state/app.sqlite", &corrupt_db_bytes()),
    ])
}
