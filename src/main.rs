//! `entrypoint`: PID 1 for the OpenClaw gateway on a Hugging Face Docker Space.
//!
//! Module map (dependencies point down):
//! - `cli` parses arguments and dispatches; `run` orchestrates the service.
//! - `backup`, `restore`, `supervisor`, `keepalive`, `pairing`: the jobs `run` combines.
//! - `snapshot`, `archive`, `store`: the mechanisms behind backup and restore.
//! - `openclaw`: everything specific to OpenClaw (config, state layout, child command).
//! - `datadir`, `settings`: where state lives and what the environment says.

mod archive;
mod backup;
mod cli;
mod datadir;
mod keepalive;
mod logging;
mod openclaw;
mod pairing;
mod restore;
mod run;
mod settings;
mod snapshot;
mod store;
mod supervisor;

fn main() {
    std::process::exit(cli::main());
}
