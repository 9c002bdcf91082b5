//! OpenClaw's state dir: which paths are volatile (never backed up) and which SQLite rows are
//! per-process (the `gateway-owner` lease), so a restored copy starts at once.
//!
//! TODO(backup-engine): exclusion list, volatile tables for change detection, lease clean-up.
