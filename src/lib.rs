//! `openclaw-space`: PID 1 for the OpenClaw gateway on a Hugging Face Docker Space.
//!
//! Module map, top to bottom; a module uses only modules below it (`tests/architecture.rs`
//! fails on any import cycle between files, and on any function over 120 lines):
//! - `cli`: parses arguments, runs the one-shot commands, hands `run` to the service;
//! - `run`: the service: data dir -> restore -> config -> supervise, with periodic backups
//!   and a final one; it owns the one shutdown signal;
//! - `frontdoor`: listens on `$PORT` for the gateway: the status page (it reads a restore's
//!   progress, `restore::Watch`), the proxy, the owner's JSON status;
//! - `backup`, `restore`: the engine (its glossary is in `backup`); `supervisor` (a generic
//!   init), `keepalive`, `pairing`: the service's other jobs;
//! - `datadir`: where state lives (`mounts`: whether a path is on a network or FUSE
//!   filesystem); `meta`: the only owner of `.openclaw-space/` (every name
//!   in it and how durable each file is);
//! - `store` (one file per backend), `archive` (the archive format), `snapshot` (the state
//!   dir as a tree, and the fingerprint of the last upload);
//! - `livedb`: the one owner of every access to the state dir's SQLite files;
//! - `openclaw`: what is specific to OpenClaw (config, volatile state, the child command);
//! - `settings`, `logging`, `fsutil`: the environment, logs, atomic writes and the clock.
//!
//! The binary (`src/main.rs`) is `cli::main`; the library exists so integration tests can use
//! the modules directly.

pub mod archive;
pub mod backup;
pub mod cli;
pub mod datadir;
pub mod frontdoor;
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
