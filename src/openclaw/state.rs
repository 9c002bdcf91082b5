//! OpenClaw's state dir: which paths are volatile (never backed up) and which SQLite rows are
//! per-process (the `gateway-owner` lease), so a restored copy starts at once.
//!
//! Facts (OpenClaw 2026.9.6, `facts/openclaw-runtime.md` §5-6): caches, scratch, locks and
//! regenerable plugin symlinks live under fixed names; every `*.sqlite` is WAL-mode and live;
//! `state/openclaw.sqlite` holds `state_leases(scope, lease_key, owner, expires_at,
//! heartbeat_at, payload_json, created_at, updated_at)`, where the row `scope='gateway-owner'`
//! is heartbeated every 30 s and, restored into a container with another hostname, blocks the
//! gateway's start for up to 5 minutes.

use rusqlite::Connection;

/// Paths (relative to the state dir, `/`-separated) that are never backed up. A matching
/// directory is skipped with everything below it.
pub const VOLATILE: &[&str] = &[
    "cache",
    "tmp",
    "plugin-skills",
    "logs",
    "**/*.lock*",
    "openclaw.json.rejected.*",
];

/// Top-level dirs that a restore leaves out even when an archive holds them (seed archives made
/// with a plain `tar czf .openclaw` carry caches and absolute plugin symlinks; all regenerable).
pub const SKIP_ON_RESTORE: &[&str] = &["cache", "tmp", "plugin-skills"];

/// True for the paths OpenClaw rewrites all the time besides its databases: the config (and
/// its `.bak` ring) and session transcripts. Archives put them last, with the databases
/// (`snapshot::archive_order`), so the settled rest of the tree keeps its bytes and offsets
/// from one archive to the next.
pub fn changes_often(rel: &[u8]) -> bool {
    let mut parts = rel.split(|&b| b == b'/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(b"openclaw.json"), None, _) => true,
        (Some(name), None, _) => name.starts_with(b"openclaw.json."),
        (Some(b"agents"), Some(_), Some(b"sessions")) => true,
        _ => false,
    }
}

/// The lease rows that belong to one running gateway process (per table, an SQL condition).
/// They are left out of change detection and deleted from copies and restored databases.
const PROCESS_ROWS: &[(&str, &str)] = &[("state_leases", "scope = 'gateway-owner'")];

/// True for a table holding per-process rows.
pub fn has_process_rows(table: &str) -> bool {
    PROCESS_ROWS.iter().any(|(t, _)| *t == table)
}

/// The `WHERE` condition that selects the rows of `table` worth comparing (everything but the
/// per-process lease rows), or None for the whole table.
pub fn stable_rows_filter(table: &str) -> Option<String> {
    PROCESS_ROWS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, cond)| format!("NOT ({cond})"))
}

/// Delete the per-process lease rows (the gateway that wrote them is gone: it ran in another
/// container, or it is still running and its copy must not claim ownership). Returns the
/// number of rows removed. Tables that don't exist are fine: not every SQLite file is
/// OpenClaw's state DB.
pub fn clear_owner_leases(conn: &Connection) -> rusqlite::Result<usize> {
    let mut removed = 0;
    for (table, cond) in PROCESS_ROWS {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if exists {
            removed += conn.execute(&format!("DELETE FROM \"{table}\" WHERE {cond}"), [])?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_lease_is_removed_other_leases_kept() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL,
               expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL,
               updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT;
             INSERT INTO state_leases VALUES ('gateway-owner','global','x',1,1,'{}',1,1);
             INSERT INTO state_leases VALUES ('other','k','y',1,1,'{}',1,1);",
        )
        .unwrap();
        assert_eq!(clear_owner_leases(&c).unwrap(), 1);
        let left: i64 = c
            .query_row("SELECT count(*) FROM state_leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
        // A database without the table is left alone.
        let other = Connection::open_in_memory().unwrap();
        assert_eq!(clear_owner_leases(&other).unwrap(), 0);
        assert_eq!(
            stable_rows_filter("state_leases").as_deref(),
            Some("NOT (scope = 'gateway-owner')")
        );
        assert_eq!(stable_rows_filter("audit_events"), None);
    }
}
