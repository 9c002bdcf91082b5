//! Archive: deterministic multi-member tar.gz with inline SHA-256; safe extraction into staging.
//!
//! TODO(backup-engine).
