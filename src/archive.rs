//! Archive: deterministic multi-member tar.gz with inline SHA-256; safe extraction into staging.
//!
//! - `write`: the tar stream of a snapshot, cut into independent gzip members at stable
//!   boundaries (runs of small files ended at path-hash anchors; content-defined chunks inside
//!   big files), compressed on every core, members of unchanged regions reused from the last
//!   archive. Plain gzip readers (`tar xzf`, Python `tarfile`) see one ordinary tar.gz.
//! - `gz`: our gzip members (libdeflate; the member's length in the header; poorly
//!   compressible data stored).
//! - `sha`: SHA-256 that records its state every few MB, so an archive that starts like the
//!   last one resumes hashing where they part.
//! - `decode`: inflate an archive on its own thread (whole members for ours, streaming for
//!   anything else).
//! - `extract`: read any tar.gz (ours or a seed made with `tar czf`), refusing every entry that
//!   could write outside the staging dir.

pub mod decode;
pub mod extract;
pub mod gz;
pub mod sha;
pub mod write;

/// Root entry of every archive (seed layout).
pub const ROOT: &str = ".openclaw";
