//! `openclaw-space`: PID 1 for the OpenClaw gateway on a Hugging Face Docker Space.
//!
//! Module map (dependencies point down):
//! - `cli` parses arguments and dispatches; `run` orchestrates the service.
//! - `backup`, `restore`, `supervisor`, `keepalive`, `pairing`: the jobs `run` combines.
//! - `snapshot`, `archive`, `store`: the mechanisms behind backup and restore; `livedb`: the
//!   one owner of every access to the state dir's SQLite files (and of its plain opens).
//! - `openclaw`: everything specific to OpenClaw (config, state layout, child command).
//! - `datadir`, `settings`: where state lives and what the environment says (`mounts`: is a
//!   path on a network or FUSE filesystem); `meta`: every
//!   name in the meta dir (`.openclaw-space/`) and beside the state dir; `fsutil`: atomic
//!   writes, directory sync, the clock.
//!
//! No import cycle between files: `tests/architecture.rs` checks it.
//!
//! The binary (`src/main.rs`) is `cli::main`; the library exists so integration tests can use
//! the modules directly.

pub mod archive;
pub mod backup;
pub mod cli;
pub mod datadir;
pub mod fsutil;
pub mod keepalive;
pub mod livedb;
pub mod logging;
pub mod meta;
pub mod mounts;
pub mod openclaw;
pub mod pairing;
pub mod restore;
pub mod run;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod supervisor;
