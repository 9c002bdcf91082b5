//! Snapshot: a consistent, deterministic view of the state dir, and its change fingerprint.
//!
//! TODO(backup-engine): sorted walk, excludes, SQLite via the online backup API, fingerprint.
