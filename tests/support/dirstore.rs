//! A test root with a `dir` store, and the real binary run against data dirs in it
//! (shared by tests/backup.rs and tests/restore_versions.rs through `#[path]`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub store: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let store = root.join("store");
        Env {
            _tmp: tmp,
            root,
            store,
        }
    }

    /// A data dir `name` under the test root (created).
    pub fn data(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// `entrypoint ARGS` on `data`, backing up to the store, with a clean environment.
    pub fn cmd(&self, data: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_entrypoint"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.root)
            .env("ENTRYPOINT_DATA_DIR", data)
            .env("ENTRYPOINT_BACKUP_DIR", &self.store)
            .env("ENTRYPOINT_LOG", "warn");
        c
    }

    pub fn run(&self, data: &Path, args: &[&str]) -> Output {
        self.cmd(data, args).output().unwrap()
    }
}
