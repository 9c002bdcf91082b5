//! The PID-1 supervisor, end to end: the real binary runs `sh` scripts (as PID 1 of a fresh PID
//! namespace where the behaviour depends on it, else directly) and the scripts report what they
//! saw through marker files. Namespace tests skip (and say so) when not root.

mod support;

use std::time::{Duration, Instant};

use support::pid1::{can_unshare, status_field, wait_for, Launch};

const T: Duration = Duration::from_secs(10);

/// Wait loop for scripts: sleep in the background and `wait`, which a trapped signal interrupts
/// at once (a foreground `sleep` would delay the trap until it ends).
const IDLE: &str = "while :; do sleep 1 & wait; done";

#[test]
fn signals_reach_the_child_and_its_grandchild() {
    if !can_unshare() {
        return;
    }
    // The background subshell cannot trap QUIT/INT (a non-interactive shell ignores them in
    // background jobs for good), so it traps the rest. 40 is a real-time signal.
    let script = format!(
        r#"
        for s in HUP QUIT USR1 USR2 WINCH CONT ALRM 40; do trap "echo $s >> $D/child" $s; done
        (
          for s in HUP USR1 USR2 WINCH CONT ALRM 40; do trap "echo $s >> $D/grandchild" $s; done
          touch $D/grandchild.ready
          {IDLE}
        ) &
        touch $D/child.ready
        {IDLE}
        "#
    );
    let mut ep = Launch::sh(&script).start();
    ep.wait_marker("child.ready", T);
    ep.wait_marker("grandchild.ready", T);
    let signals = [
        (libc::SIGHUP, "HUP", true), // an explicit CMD gets SIGHUP as-is
        (libc::SIGQUIT, "QUIT", false),
        (libc::SIGUSR1, "USR1", true),
        (libc::SIGUSR2, "USR2", true),
        (libc::SIGWINCH, "WINCH", true),
        (libc::SIGCONT, "CONT", true),
        (libc::SIGALRM, "ALRM", true),
        (40, "40", true),
    ];
    // One at a time: a second identical signal sent before the first is taken would merge.
    for (sig, name, grandchild) in signals {
        ep.signal(sig);
        ep.wait_line("child", name, T);
        if grandchild {
            ep.wait_line("grandchild", name, T);
        }
    }
    // Job-control signals are dropped, not forwarded: the child must not be stopped by them.
    ep.signal(libc::SIGTSTP);
    ep.signal(libc::SIGUSR1);
    wait_for(T, "a second USR1 after TSTP", || {
        (ep.read("child").matches("USR1").count() == 2).then_some(())
    });
    // No TERM trap: the shell dies of the forwarded SIGTERM.
    ep.signal(libc::SIGTERM);
    assert_eq!(ep.wait_exit(T), 128 + libc::SIGTERM, "{}", ep.log());
}

#[test]
fn exit_codes_pass_through() {
    if !can_unshare() {
        return;
    }
    let cases = [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 42", 42),
        ("exit 255", 255),
        ("kill -USR1 $$", 128 + libc::SIGUSR1),
        ("kill -KILL $$", 128 + libc::SIGKILL),
    ];
    for (script, want) in cases {
        let mut ep = Launch::sh(script).start();
        assert_eq!(ep.wait_exit(T), want, "`{script}`\n{}", ep.log());
    }
}

#[test]
fn a_missing_program_exits_127_and_a_non_executable_one_126() {
    let mut ep = Launch::new(&["no-such-program-xyz", "arg"])
        .direct()
        .start();
    assert_eq!(ep.wait_exit(T), 127);
    let log = ep.log();
    assert!(
        log.contains("no-such-program-xyz: not found on PATH"),
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("no-such-program-xyz: not found"))
            .count(),
        1,
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let mut ep = Launch::new(&[script.to_str().unwrap()]).direct().start();
    assert_eq!(ep.wait_exit(T), 126);
    assert!(
        ep.log()
            .contains("not-executable.sh: cannot execute: Permission denied"),
        "{}",
        ep.log()
    );
}

#[test]
fn orphaned_zombies_are_reaped() {
    if !can_unshare() {
        return;
    }
    // 30 `sleep`s whose parent subshell exits at once: they are re-parented to PID 1 (the
    // entrypoint) and become zombies when they end, unless PID 1 reaps them. The script counts
    // the orphans, then waits for no sleep and no zombie to be left in the namespace.
    let script = r#"
        i=0; while [ $i -lt 30 ]; do (sleep 2 &); i=$((i+1)); done
        orphans=$(grep -l '^Name:.sleep$' /proc/[0-9]*/status 2>/dev/null | xargs -r grep -l '^PPid:.1$' 2>/dev/null | wc -l)
        end=$(( $(date +%s) + 20 ))
        while :; do
          z=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
          s=$(grep -l '^Name:.sleep$' /proc/[0-9]*/status 2>/dev/null | wc -l)
          if [ "$z" -eq 0 ] && [ "$s" -eq 0 ]; then echo "reaped orphans=$orphans" > $D/report; exit 0; fi
          if [ $(date +%s) -ge $end ]; then echo "zombies=$z sleeping=$s orphans=$orphans" > $D/report; exit 1; fi
          sleep 0.1
        done
    "#;
    let mut ep = Launch::sh(script).start();
    let code = ep.wait_exit(Duration::from_secs(30));
    assert_eq!(
        ep.read("report").trim(),
        "reaped orphans=30",
        "{}",
        ep.log()
    );
    assert_eq!(code, 0);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    if !can_unshare() {
        return;
    }
    let script = format!("trap '' TERM; touch $D/ready; {IDLE}");
    let mut ep = Launch::sh(&script).args(&["--stop-timeout", "1s"]).start();
    ep.wait_marker("ready", T);
    let t0 = Instant::now();
    ep.signal(libc::SIGTERM);
    let code = ep.wait_exit(T);
    let took = t0.elapsed();
    assert_eq!(code, 128 + libc::SIGKILL, "{}", ep.log());
    assert!(
        took >= Duration::from_millis(950),
        "SIGKILL came early: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "SIGKILL came late: {took:?}");
    assert!(ep.log().contains("did not stop within 1s"), "{}", ep.log());
}

#[test]
fn restarts_back_off_exponentially_and_a_stop_during_the_delay_exits_at_once() {
    if !can_unshare() {
        return;
    }
    let mut ep = Launch::sh("date +%s.%N >> $D/spawns; exit 1")
        .args(&["--restart", "always"])
        .start();
    // Spawns at ~0, 1, 3, 7 s (delays 1, 2, 4 s); the 5th would come 8 s later.
    wait_for(Duration::from_secs(30), "4 spawns", || {
        (ep.read("spawns").lines().count() >= 4).then_some(())
    });
    let t0 = Instant::now();
    ep.signal(libc::SIGTERM);
    assert_eq!(
        ep.wait_exit(T),
        1,
        "exits with the last child's code\n{}",
        ep.log()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the stop waited for the backoff: {:?}",
        t0.elapsed()
    );

    let times: Vec<f64> = ep
        .read("spawns")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(times.len(), 4, "no restart after the stop: {times:?}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, delay) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= delay - 0.05,
            "gap {gap:.2}s shorter than the {delay}s backoff: {gaps:?}"
        );
        assert!(
            *gap < delay + 1.5,
            "gap {gap:.2}s much longer than the {delay}s backoff: {gaps:?}"
        );
    }
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "{gaps:?}");
    assert!(ep.log().contains("restarting in 4s"), "{}", ep.log());
}

#[test]
fn config_errors_and_clean_exits_are_not_restarted() {
    if !can_unshare() {
        return;
    }
    // 78 (EX_CONFIG) even under `always` (nothing repairs an explicit command's config).
    let mut ep = Launch::sh("echo run >> $D/spawns; exit 78")
        .args(&["--restart", "always"])
        .start();
    assert_eq!(ep.wait_exit(T), 78, "{}", ep.log());
    assert_eq!(ep.read("spawns").lines().count(), 1);
    // 0 under `on-failure`.
    let mut ep = Launch::sh("echo run >> $D/spawns; exit 0")
        .args(&["--restart", "on-failure"])
        .start();
    assert_eq!(ep.wait_exit(T), 0, "{}", ep.log());
    assert_eq!(ep.read("spawns").lines().count(), 1);
    // But a failure under `on-failure` is restarted.
    let mut ep = Launch::sh("echo run >> $D/spawns; exit 5")
        .args(&["--restart", "on-failure"])
        .start();
    wait_for(T, "a restart", || {
        (ep.read("spawns").lines().count() == 2).then_some(())
    });
    ep.signal(libc::SIGTERM);
    assert_eq!(ep.wait_exit(T), 5);
}

#[test]
fn without_a_pid_namespace_orphans_are_reaped_by_the_entrypoint_as_subreaper() {
    // The grandchild's parent subshell exits at once: with PR_SET_CHILD_SUBREAPER it is
    // re-parented to the entrypoint (not to the real PID 1), and reaped by it when it ends.
    let script = format!(
        r#"( sh -c 'echo $$ > $D/gc.pid; while [ ! -e $D/go ]; do sleep 0.05; done' & )
        {IDLE}"#
    );
    let mut ep = Launch::sh(&script).direct().start();
    ep.wait_marker("gc.pid", T);
    let gc: i32 = wait_for(T, "the grandchild's pid", || {
        ep.read("gc.pid").trim().parse().ok()
    });
    let parent = wait_for(T, "the orphan to be re-parented", || {
        let ppid: i32 = status_field(gc, "PPid")?.parse().ok()?;
        // Still the subshell for a moment after the fork.
        (ppid == ep.pid || status_field(ppid, "Name").is_none_or(|n| n != "sh")).then_some(ppid)
    });
    assert_eq!(
        parent, ep.pid,
        "the orphan went to {parent}, not to the entrypoint"
    );
    std::fs::write(ep.marker("go"), "").unwrap();
    // Reaped, not a zombie: /proc/<pid> disappears.
    wait_for(T, "the orphan to be reaped", || {
        (!std::path::Path::new(&format!("/proc/{gc}")).exists()).then_some(())
    });
    ep.signal(libc::SIGTERM);
    assert_eq!(ep.wait_exit(T), 128 + libc::SIGTERM, "{}", ep.log());
}

#[test]
fn the_child_starts_with_the_original_mask_and_default_dispositions() {
    // `exec`: grep reads its own status, inherited from the shell the entrypoint started (the
    // shell's own status would show what it blocks while waiting for grep).
    let report = "exec grep -E '^Sig(Blk|Ign)' /proc/self/status > $D/status";
    if can_unshare() {
        let mut ep = Launch::sh(report).start();
        assert_eq!(ep.wait_exit(T), 0, "{}", ep.log());
        assert_eq!(
            ep.read("status"),
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
        );
    }
    // A parent that leaves SIGUSR1 blocked and SIGHUP ignored: the mask is the child's to keep
    // (it is what the entrypoint was given), but the entrypoint's own blocked set (everything)
    // must not leak, and dispositions are reset to the defaults.
    let mut launch = Launch::sh(report).direct();
    launch.inherit_blocked = vec![libc::SIGUSR1];
    launch.inherit_ignored = vec![libc::SIGHUP];
    let mut ep = launch.start();
    assert_eq!(ep.wait_exit(T), 0, "{}", ep.log());
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    assert_eq!(
        ep.read("status"),
        format!("SigBlk:\t{usr1:016x}\nSigIgn:\t0000000000000000\n")
    );
}

#[test]
fn sighup_becomes_sigusr2_for_the_default_openclaw_child() {
    // A stand-in `openclaw` on PATH: the default child is `openclaw gateway`, which has no
    // SIGHUP handler (it would die), so the entrypoint turns SIGHUP into SIGUSR2 for it.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("openclaw");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntrap 'echo USR2 >> $D/got' USR2\ntrap 'echo HUP >> $D/got' HUP\ntouch $D/ready\n{IDLE}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut launch = Launch::new(&[]).direct();
    launch.path_prepend = Some(bin.path().to_owned());
    launch.env.push((
        "OPENCLAW_GATEWAY_TOKEN".into(),
        "test-token-not-secret".into(),
    ));
    let mut ep = launch.start();
    ep.wait_marker("ready", T);
    ep.signal(libc::SIGHUP);
    ep.wait_line("got", "USR2", T);
    ep.signal(libc::SIGTERM);
    assert_eq!(ep.wait_exit(T), 128 + libc::SIGTERM, "{}", ep.log());
    assert_eq!(
        ep.read("got"),
        "USR2\n",
        "SIGHUP must not reach the gateway"
    );
}
