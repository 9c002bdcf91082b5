//! The logical hash of a database: what it holds, blind to the gateway's per-process rows.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};

use super::Live;
use crate::openclaw::state;

/// The logical hash of a copy this process made (a private file, not a live database).
pub fn of_copy(copy: &Path) -> Result<String> {
    let conn = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the copy {}", copy.display()))?;
    conn.execute_batch("PRAGMA cache_size = -256")?;
    logical(&conn).with_context(|| format!("cannot hash the copy {}", copy.display()))
}

/// The logical hash of a live database of the state dir (e.g. one just restored).
pub fn logical_hash(db: &Path) -> Result<String> {
    let live = Live::open(db)?;
    logical(live.conn())
        .with_context(|| format!("cannot read the SQLite database {}", db.display()))
}

/// A hash (BLAKE3) of what a database holds, blind to the per-process lease rows, so it is
/// equal for copies where only the gateway's heartbeat moved.
///
/// Page level, as it must be cheap (it runs on every check while the gateway heartbeats):
/// every page as the connection sees it (`sqlite_dbpage`: WAL frames included, one read
/// transaction) except free pages and the pages of the tables holding process rows (and their
/// indexes), page 1's write counters and journal-mode bytes masked; those tables then count by
/// their remaining rows. Without `sqlite_dbpage`, every table is hashed row by row.
fn logical(conn: &Connection) -> Result<String> {
    // One read transaction for a consistent view.
    conn.execute_batch("BEGIN")?;
    let schema: Vec<(String, String, String, String)> = {
        let mut st = conn.prepare(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut h = blake3::Hasher::new();
    let special: Vec<&str> = schema
        .iter()
        .filter(|(ty, _, tbl, _)| ty == "table" && state::has_process_rows(tbl))
        .map(|(_, name, _, _)| name.as_str())
        .collect();
    let paged = match hash_pages(conn, &schema, &special, &mut h) {
        Ok(()) => true,
        Err(e) if e.to_string().contains("no such table") => false,
        Err(e) => return Err(e),
    };
    if !paged {
        h = blake3::Hasher::new();
        h.update(b"rows\0");
    }
    for (ty, name, _, sql) in &schema {
        h.update(format!("{ty}\0{name}\0{sql}\0").as_bytes());
    }
    for (ty, name, _, _) in &schema {
        if (paged && special.contains(&name.as_str())) || (!paged && ty == "table") {
            hash_rows(conn, name, &mut h)?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(h.finalize().to_hex().to_string())
}

/// Feed every kept page (see `logical`) to `h`, each run of consecutive pages after the number
/// of its first page.
fn hash_pages(
    conn: &Connection,
    schema: &[(String, String, String, String)],
    special: &[&str],
    h: &mut blake3::Hasher,
) -> Result<()> {
    // Pages of the tables with process rows, and of their indexes: left out of the page hash.
    let mut skip = HashSet::new();
    for (_, name, tbl, _) in schema {
        if special.contains(&tbl.as_str()) {
            let mut st = conn.prepare("SELECT pageno FROM dbstat WHERE name = ?1")?;
            for p in st.query_map([name], |r| r.get::<_, i64>(0))? {
                skip.insert(p? as u64);
            }
        }
    }
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let pages = pages as u64;
    free_pages(conn, pages, &mut skip)?;
    let mut st = conn.prepare("SELECT pgno, data FROM sqlite_dbpage")?;
    let mut rows = st.query([])?;
    let mut page_size = 0u64;
    let mut last_kept = 0u64;
    while let Some(row) = rows.next()? {
        let pgno = row.get::<_, i64>(0)? as u64;
        let data = row.get_ref(1)?.as_blob()?;
        if page_size == 0 {
            page_size = data.len() as u64;
            h.update(b"pages\0");
            h.update(&page_size.to_le_bytes());
            h.update(&pages.to_le_bytes());
        }
        if skip.contains(&pgno) {
            continue;
        }
        if pgno != last_kept + 1 {
            h.update(&pgno.to_le_bytes());
        }
        last_kept = pgno;
        if pgno == 1 {
            let mut first = data.to_vec();
            // Journal mode (18-19), change counter (24-27), version-valid-for (92-95).
            for i in [18, 19, 24, 25, 26, 27, 92, 93, 94, 95] {
                first[i] = 0;
            }
            h.update(&first);
        } else {
            h.update(data);
        }
    }
    Ok(())
}

/// Add the free pages (trunk and leaf pages of the freelist, header offset 32) to `out`: their
/// bytes are leftovers, not content.
fn free_pages(conn: &Connection, pages: u64, out: &mut HashSet<u64>) -> Result<()> {
    let be = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let page = |n: u64| -> rusqlite::Result<Vec<u8>> {
        conn.query_row(
            "SELECT data FROM sqlite_dbpage WHERE pgno = ?1",
            [n as i64],
            |r| r.get(0),
        )
    };
    let head = page(1)?;
    let page_size = head.len();
    let mut trunk = be(&head, 32) as u64;
    // Bounded: a corrupt list must not loop.
    for _ in 0..pages {
        if trunk == 0 || trunk > pages || !out.insert(trunk) {
            break;
        }
        let t = page(trunk)?;
        let n = (be(&t, 4) as usize).min(page_size / 4 - 2);
        for i in 0..n {
            out.insert(be(&t, 8 + 4 * i) as u64);
        }
        trunk = be(&t, 0) as u64;
    }
    Ok(())
}

/// Hash the rows of `table` that are not process rows, in rowid/key order.
fn hash_rows(conn: &Connection, table: &str, h: &mut blake3::Hasher) -> rusqlite::Result<()> {
    let filter = state::stable_rows_filter(table)
        .map(|c| format!(" WHERE {c}"))
        .unwrap_or_default();
    let quoted = table.replace('"', "\"\"");
    let mut st = conn.prepare(&format!("SELECT * FROM \"{quoted}\"{filter}"))?;
    let cols = st.column_count();
    let mut rows = st.query([])?;
    h.update(format!("T{table}\0").as_bytes());
    while let Some(row) = rows.next()? {
        h.update(b"R");
        for i in 0..cols {
            use rusqlite::types::ValueRef;
            match row.get_ref(i)? {
                ValueRef::Null => {
                    h.update(b"n");
                }
                ValueRef::Integer(v) => {
                    h.update(b"i");
                    h.update(&v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update(b"r");
                    h.update(&v.to_le_bytes());
                }
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    h.update(b"b");
                    h.update(&(t.len() as u64).to_le_bytes());
                    h.update(t);
                }
            }
        }
    }
    Ok(())
}
