//! What is specific to OpenClaw: its config (`config`), which state paths and SQLite rows are
//! volatile (`state`), and how to start the gateway. Other modules know OpenClaw only through
//! these, except for names the environment and the data dir fix: the `OPENCLAW_*` variables
//! (`settings`), the state dir `.openclaw` (`datadir`), and the gateway's pairing API
//! (`pairing`).

pub mod config;
pub mod state;

use std::ffi::OsString;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::supervisor::ChildSpec;

/// The program the default child runs.
pub const PROGRAM: &str = "openclaw";

/// Variables that would make the gateway exit on restart instead of restarting in-process
/// (it believes an external supervisor such as systemd will respawn it).
const SUPERVISOR_MARKERS: &[&str] = &[
    "OPENCLAW_SUPERVISOR_MODE",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
];

/// True when `cmd` runs OpenClaw (so the config must be written before it starts).
pub fn is_openclaw(cmd: &[OsString]) -> bool {
    cmd.first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|n| n == PROGRAM)
}

/// `openclaw gateway` (or the given command) with `OPENCLAW_HOME` pointing at the data dir.
///
/// For the default child, SIGHUP becomes SIGUSR2: the gateway has no HUP handler and would die
/// at once, while SIGUSR2 restarts it in process, which is what a HUP means to an operator.
/// An explicit command gets every signal as-is.
pub fn child_spec(cmd: Option<Vec<OsString>>, data_dir: &Path) -> ChildSpec {
    let explicit = cmd.is_some();
    let cmd = cmd.unwrap_or_else(|| vec![PROGRAM.into(), "gateway".into()]);
    let openclaw = is_openclaw(&cmd);
    let mut args = cmd;
    let program = args.remove(0);
    ChildSpec {
        program,
        args,
        env_set: vec![("OPENCLAW_HOME".into(), data_dir.as_os_str().to_owned())],
        env_remove: if openclaw {
            SUPERVISOR_MARKERS.iter().map(OsString::from).collect()
        } else {
            Vec::new()
        },
        hup_as: (!explicit).then_some(Signal::SIGUSR2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_child_is_the_gateway() {
        let spec = child_spec(None, Path::new("/data"));
        assert_eq!(spec.program, "openclaw");
        assert_eq!(spec.args, vec![OsString::from("gateway")]);
        assert_eq!(spec.env_set[0].1, "/data");
        assert_eq!(spec.hup_as, Some(Signal::SIGUSR2));
    }

    #[test]
    fn explicit_command_gets_signals_as_is() {
        let spec = child_spec(
            Some(vec!["sh".into(), "-c".into(), "sleep 1".into()]),
            Path::new("/h"),
        );
        assert_eq!(spec.program, "sh");
        assert_eq!(spec.hup_as, None);
        assert!(spec.env_remove.is_empty());
    }
}
