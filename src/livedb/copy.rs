//! A verified single-file copy of a live database.
//!
//! The copy (`dst`, kept in the meta dir between backups) is brought up to date page by page:
//! all pages are read in one statement over `sqlite_dbpage` (one read transaction: consistent
//! as long as the read lock holds, see the rule in `livedb`; a WAL reader never blocks the
//! gateway's writers) and only the pages that differ from `dst` are written. A 100 MB database
//! with a few changed rows costs a read of its pages instead of a fresh 100 MB file.
//!
//! Every copy is then checked (`PRAGMA quick_check`) before it may go into an archive: cheap
//! insurance against a torn read, whatever its cause. A copy that fails is made again whole
//! through the online backup API; if that fails too, the source is checked: a source that is
//! itself corrupt is still the user's data and is copied as it is, loudly; otherwise the
//! backup fails, naming the database, and the previous backup stays the latest.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

use super::{side_path, Live, SIDE_SUFFIXES};
use crate::openclaw::state;

/// Bring `dst` up to a verified, consistent single-file copy of the live database `src`,
/// without the gateway's lease rows, in journal mode DELETE, with normalised write counters.
pub fn copy(src: &Path, dst: &Path) -> Result<()> {
    let first = patiently(|| refresh(src, dst)).and_then(|()| check(dst));
    let why = match first {
        Ok(None) => return Ok(()),
        Ok(Some(why)) => why,
        Err(e) => return Err(e),
    };
    tracing::warn!(
        "backup: the copy of {} failed its check ({why}); copying it again whole",
        src.display()
    );
    let second = patiently(|| whole(src, dst)).and_then(|()| check(dst))?;
    let Some(why) = second else { return Ok(()) };
    let live = Live::open(src)?;
    if let Some(source) = quick_check(live.conn())
        .with_context(|| format!("cannot check the SQLite database {}", src.display()))?
    {
        tracing::warn!(
            "BACKUP OF A CORRUPT DATABASE: {} fails its own integrity check ({source}); it is \
             backed up as it is, since it is still your data. Repair it (sqlite3 .recover) soon.",
            src.display()
        );
        return Ok(());
    }
    bail!(
        "the copy of the SQLite database {} failed its integrity check twice ({why}) while the \
         database itself is sound; this backup was not taken and the previous one stays the \
         latest. Please report this.",
        src.display()
    )
}

/// Run `f` again (up to `BUSY_TRIES` times in all) while the database stays locked past the
/// busy timeout: a writer that commits back to back in rollback-journal mode can keep a
/// reader out for a while, and a failed backup would wait a whole interval.
fn patiently(mut f: impl FnMut() -> Result<()>) -> Result<()> {
    const BUSY_TRIES: usize = 3;
    for _ in 1..BUSY_TRIES {
        match f() {
            Err(e) if is_busy(&e) => tracing::info!("backup: {e:#}; trying again"),
            other => return other,
        }
    }
    f()
}

fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            })
    })
}

/// The incremental page refresh (or, without `sqlite_dbpage`, a whole copy), then our own
/// edits to the copy.
fn refresh(src: &Path, dst: &Path) -> Result<()> {
    let ctx = || format!("cannot copy the SQLite database {}", src.display());
    let live = Live::open(src)?;
    // Side files of the copy are leftovers of an interrupted run; the page refresh below
    // rewrites whatever they would have restored.
    for suffix in SIDE_SUFFIXES {
        let _ = fs::remove_file(side_path(dst, suffix));
    }
    match refresh_pages(live.conn(), dst) {
        Ok(written) => tracing::debug!(
            "backup: {written} changed pages of {} copied",
            src.display()
        ),
        Err(e) if e.to_string().contains("no such table") => {
            tracing::debug!("backup: no sqlite_dbpage ({e}); copying through the backup API");
            backup_api_copy(live.conn(), dst).with_context(ctx)?;
        }
        Err(e) => return Err(e).with_context(ctx),
    }
    drop(live);
    finish(dst).with_context(ctx)?;
    #[cfg(test)]
    tear_if_asked(dst)?;
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests: how many of the next copies (page refresh or whole) come out torn (garbage
    /// over a b-tree page), as a lost read lock would leave them.
    pub(super) static TEAR_NEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn tear_if_asked(dst: &Path) -> Result<()> {
    if TEAR_NEXT.with(|t| t.replace(t.get().saturating_sub(1))) > 0 {
        tear(dst)?;
    }
    Ok(())
}

#[cfg(not(test))]
fn tear_if_asked(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
fn tear(dst: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(dst)?;
    f.write_all_at(&[0x0D; 4096], 4096 * 100)?;
    Ok(())
}

/// A fresh whole copy through the online backup API, then our own edits.
fn whole(src: &Path, dst: &Path) -> Result<()> {
    let ctx = || format!("cannot copy the SQLite database {}", src.display());
    let live = Live::open(src)?;
    backup_api_copy(live.conn(), dst).with_context(ctx)?;
    drop(live);
    finish(dst).with_context(ctx)?;
    tear_if_asked(dst)
}

/// Our edits to a fresh copy: the gateway's lease rows go, the write counters are normalised.
fn finish(dst: &Path) -> Result<()> {
    let to = Connection::open(dst)?;
    // A scratch copy: the archive made from it is what gets synced, not the copy (an
    // interrupted write is repaired by the next refresh).
    to.execute_batch(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -256; PRAGMA journal_mode = MEMORY",
    )?;
    state::clear_owner_leases(&to)?;
    to.close().map_err(|(_, e)| e)?;
    normalise_counters(dst)?;
    Ok(())
}

/// None when the copy `dst` passes `quick_check`, else the first lines of what it found.
fn check(dst: &Path) -> Result<Option<String>> {
    let c = Connection::open_with_flags(dst, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the copy {}", dst.display()))?;
    c.execute_batch("PRAGMA cache_size = -2048")?;
    quick_check(&c).with_context(|| format!("cannot check the copy {}", dst.display()))
}

/// `PRAGMA quick_check`: None when "ok", else its first two findings (it can report
/// hundreds; at most 3 are asked for). A database too broken to be checked at all counts as a
/// failed check.
pub fn quick_check(c: &Connection) -> rusqlite::Result<Option<String>> {
    let lines = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare("PRAGMA quick_check(3)")?;
        let lines = st
            .query_map([], |r| r.get::<_, String>(0))?
            .take(3)
            .collect();
        lines
    })();
    let lines = match lines {
        Ok(l) => l,
        Err(rusqlite::Error::SqliteFailure(e, msg))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            return Ok(Some(msg.unwrap_or_else(|| e.to_string())));
        }
        Err(e) => return Err(e),
    };
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(None);
    }
    let more = if lines.len() > 2 { "; ..." } else { "" };
    Ok(Some(format!(
        "{}{more}",
        lines.iter().take(2).cloned().collect::<Vec<_>>().join("; ")
    )))
}

/// Make `dst` page-for-page equal to what `from` holds (one statement: one snapshot), with
/// page 1 in journal mode DELETE and normalised counters. Returns the pages written.
fn refresh_pages(from: &Connection, dst: &Path) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let out = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dst)
        .with_context(|| format!("cannot write {}", dst.display()))?;
    let old_len = out.metadata()?.len();
    let mut st = from.prepare("SELECT pgno, data FROM sqlite_dbpage")?;
    let mut rows = st.query([])?;
    // The old copy is read in runs of pages to compare against.
    const RUN: u64 = 256;
    const SPAN_MAX: usize = 1 << 20;
    let mut old = Vec::new();
    let mut old_first = 0u64; // first page number held in `old` (0: none)
    let mut page_size = 0u64;
    let (mut pages, mut written) = (0u64, 0u64);
    let mut first = Vec::new();
    // Changed pages in a row are written with one call (a first copy is all changed).
    let mut span: Vec<u8> = Vec::new();
    let mut span_at = 0u64;
    let flush = |span: &mut Vec<u8>, at: u64| -> std::io::Result<()> {
        if !span.is_empty() {
            out.write_all_at(span, at)?;
            span.clear();
        }
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let pgno = row.get::<_, i64>(0)? as u64;
        let data = row.get_ref(1)?.as_blob()?;
        if page_size == 0 {
            page_size = data.len() as u64;
            old = vec![0u8; (RUN * page_size) as usize];
        }
        if pgno != pages + 1 || data.len() as u64 != page_size {
            bail!(
                "sqlite_dbpage returned page {pgno} of {} bytes after page {pages}",
                data.len()
            );
        }
        pages = pgno;
        if pgno == 1 {
            // Patched and compared at the end, once the page count is known.
            first = data.to_vec();
            continue;
        }
        let at = (pgno - 1) * page_size;
        if old_first == 0 || pgno >= old_first + RUN {
            old_first = pgno;
            let have = old_len.saturating_sub(at).min(RUN * page_size) as usize;
            out.read_exact_at(&mut old[..have], at)?;
            old[have..].fill(0);
        }
        let i = ((pgno - old_first) * page_size) as usize;
        if at >= old_len || old[i..i + page_size as usize] != *data {
            if span_at + span.len() as u64 != at || span.len() >= SPAN_MAX {
                flush(&mut span, span_at)?;
                span_at = at;
            }
            span.extend_from_slice(data);
            written += 1;
        }
    }
    flush(&mut span, span_at)?;
    drop(rows);
    if pages == 0 {
        bail!("sqlite_dbpage returned no pages");
    }
    set_header(&mut first, pages);
    let mut was = vec![0u8; page_size as usize];
    if old_len < page_size || {
        out.read_exact_at(&mut was, 0)?;
        was != first
    } {
        out.write_all_at(&first, 0)?;
        written += 1;
    }
    if old_len != pages * page_size {
        out.set_len(pages * page_size)?;
    }
    Ok(written)
}

/// The whole-file fallback: the online backup API into a fresh `dst` (-1 = all pages in one
/// step, i.e. one read transaction), retried while the source is locked.
fn backup_api_copy(from: &Connection, dst: &Path) -> Result<()> {
    use rusqlite::backup::StepResult;
    let _ = fs::remove_file(dst);
    let mut to = Connection::open(dst)?;
    to.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -256")?;
    {
        let backup = rusqlite::backup::Backup::new(from, &mut to)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                r @ (StepResult::More | StepResult::Busy | StepResult::Locked)
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::debug!("backup: the database is busy ({r:?}); retrying");
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => bail!("the database stayed busy ({other:?})"),
            }
        }
    }
    let _: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    Ok(())
}

/// Page 1 of a copy: journal mode DELETE (bytes 18-19 = 1), the file change counter (24) and
/// version-valid-for (92) both 1, so equal content copied along different histories (live DB
/// vs restored one) gives equal bytes and the header stays valid; the in-header database size
/// (28) set to `pages`.
fn set_header(page1: &mut [u8], pages: u64) {
    page1[18] = 1;
    page1[19] = 1;
    page1[24..28].copy_from_slice(&1u32.to_be_bytes());
    page1[92..96].copy_from_slice(&1u32.to_be_bytes());
    page1[28..32].copy_from_slice(&(pages as u32).to_be_bytes());
}

/// Normalise the write counters of a copy after our own writes to it (see `set_header`).
fn normalise_counters(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(db)?;
    f.write_all_at(&1u32.to_be_bytes(), 24)?;
    f.write_all_at(&1u32.to_be_bytes(), 92)?;
    Ok(())
}
