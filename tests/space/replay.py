#!/usr/bin/env python3
"""Replay the runtime image's layout on this machine, for tests/space.rs.

Must run as root inside fresh mount and network namespaces, which tests/space.rs provides:

    unshare --mount --net --propagation private -- python3 tests/space/replay.py ...

Inside, like the image: a `user` with uid 1000 and HOME /home/user (our own /etc/passwd and
/home bind-mounted over the host's), an empty /tmp (tmpfs), the pinned Node + OpenClaw on PATH,
and the entrypoint binary run as uid 1000 via setpriv. The network namespace has only loopback,
so the gateway can reach nothing outside this machine and port 7860 is always free.

    replay.py status  --root DIR --entrypoint BIN --case absent|readonly|root-owned|writable
    replay.py gateway --root DIR --entrypoint BIN --openclaw-bin DIR [--deadline 90]

Each prints one JSON object on stdout; the test asserts on it.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

UID = 1000
PORT = 7860


def sh(*cmd):
    subprocess.run(cmd, check=True)


def image_layout(root, entrypoint, openclaw_bin=None):
    """Build the image's filesystem view under `root` and mount it into place."""
    os.chmod(root, 0o755)
    # /etc/passwd and /etc/group: uid 1000 is `user` with HOME /home/user, as in the image,
    # whatever uid 1000 is called on this machine (node's os.userInfo() reads these).
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    for name, entry in (("passwd", "user:x:1000:1000:user:/home/user:/bin/bash"), ("group", "user:x:1000:")):
        with open(f"/etc/{name}") as f:
            lines = [l for l in f.read().splitlines() if l.split(":")[2:3] != ["1000"] and not l.startswith("user:")]
        with open(os.path.join(etc, name), "w") as f:
            f.write("\n".join(lines + [entry]) + "\n")
        os.chmod(os.path.join(etc, name), 0o644)
        sh("mount", "--bind", os.path.join(etc, name), f"/etc/{name}")

    home = os.path.join(root, "home")
    os.makedirs(os.path.join(home, "user"), exist_ok=True)
    os.chown(os.path.join(home, "user"), UID, UID)
    sh("mount", "--bind", home, "/home")
    # A container starts with an empty /tmp; OpenClaw puts its log folder there.
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp")

    bindir = os.path.join(root, "bin")
    os.makedirs(bindir, exist_ok=True)
    binary = os.path.join(bindir, "entrypoint")
    shutil.copy(entrypoint, binary)
    os.chmod(binary, 0o755)

    path = [bindir, "/usr/local/bin", "/usr/bin", "/bin"]
    if openclaw_bin:
        # The install lives under root's 0700 home: bind it where uid 1000 can reach it.
        prefix = os.path.dirname(os.path.realpath(openclaw_bin))
        target = os.path.join(root, "opt", "openclaw")
        os.makedirs(target, exist_ok=True)
        sh("mount", "--bind", prefix, target)
        path.insert(0, os.path.join(target, "bin"))
    # The tmpfs over /tmp may hide our cwd (a checkout under /tmp); the gateway spawns helpers
    # with its cwd, which must exist in this view, as the image's WORKDIR does.
    os.chdir("/home/user")
    return binary, ":".join(path)


def as_user(argv, env):
    """argv as uid/gid 1000, no supplementary groups, with exactly `env`."""
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", "env", "-i"] + [
        f"{k}={v}" for k, v in sorted(env.items())
    ] + argv


def base_env(path, data):
    # What the image sets (ENV HOME, PORT, OPENCLAW_NO_AUTO_UPDATE), plus PATH and the test's data dir.
    return {"HOME": "/home/user", "PATH": path, "PORT": str(PORT), "OPENCLAW_NO_AUTO_UPDATE": "1", "ENTRYPOINT_DATA_DIR": data}


def cmd_status(a):
    binary, path = image_layout(a.root, a.entrypoint)
    parent = os.path.join(a.root, a.case)
    data = os.path.join(parent, "data")
    os.makedirs(parent, exist_ok=True)
    if a.case != "absent":
        os.makedirs(data, exist_ok=True)
    if a.case in ("readonly", "writable"):
        os.chown(data, UID, UID)
    if a.case == "root-owned":
        os.chown(data, 0, 0)
        os.chmod(data, 0o755)
    if a.case == "readonly":
        # Writable by uid 1000 going by ownership and mode; only the mount says no.
        sh("mount", "--bind", data, data)
        sh("mount", "-o", "remount,ro,bind", data)
    r = subprocess.run(as_user([binary, "status", "--json"], base_env(path, data)), capture_output=True, text=True)
    out = {"exit": r.returncode, "stderr": r.stderr[-2000:], "data": data}
    try:
        out["status"] = json.loads(r.stdout)
    except ValueError:
        out["stdout"] = r.stdout[-2000:]
    out["leftovers"] = sorted(os.listdir(data)) if os.path.isdir(data) else None
    print(json.dumps(out))


def poll(path, deadline, until=lambda body: True):
    """GET `path` every 250 ms until a 200 whose body satisfies `until`, or `deadline`
    (monotonic). Returns (status, body) or None."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=2) as r:
                body = r.read(2000).decode(errors="replace")
                if r.status == 200 and until(body):
                    return r.status, body
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    return None


def uid_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None


def descendants(pid):
    """All live descendants of pid (via /proc/*/stat ppid)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmd_gateway(a):
    sh("ip", "link", "set", "lo", "up")
    binary, path = image_layout(a.root, a.entrypoint, a.openclaw_bin)
    env = base_env(path, os.path.join(a.root, "no-volume", "data"))  # no /data: state in $HOME
    env["OPENCLAW_GATEWAY_TOKEN"] = os.urandom(16).hex()
    log_path = os.path.join(a.root, "entrypoint.log")
    out = {"log": log_path}
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(as_user([binary, "run"], env), stdout=log, stderr=subprocess.STDOUT)
        try:
            ok = poll("/healthz", t0 + a.deadline)
            out["healthz"] = ok and {"status": ok[0], "body": ok[1]}
            out["healthz_after_s"] = round(time.monotonic() - t0, 2)
            # Stop a *started* gateway: SIGTERM during startup is a different (slower) path.
            started = poll("/startupz", time.monotonic() + a.deadline, lambda b: '"status":"started"' in b.replace(" ", ""))
            out["started"] = bool(started)
            out["started_after_s"] = round(time.monotonic() - t0, 2)
            tree = [proc.pid] + descendants(proc.pid)
            out["uids"] = sorted({u for u in map(uid_of, tree) if u is not None})
            out["early_exit"] = proc.poll()
            t1 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                out["exit"] = proc.wait(timeout=a.stop_deadline)
                out["stop_s"] = round(time.monotonic() - t1, 2)
            except subprocess.TimeoutExpired:
                out["exit"] = None
            out["left_running"] = [p for p in tree if uid_of(p) is not None and p != proc.pid]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # Leave nothing behind, whatever happened above.
            for p in descendants(os.getpid()):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    state = "/home/user/.openclaw"
    out["state_dir_uid"] = os.stat(state).st_uid if os.path.isdir(state) else None
    out["config_exists"] = os.path.isfile(os.path.join(state, "openclaw.json"))
    out["tmp_entries"] = {e: os.stat(os.path.join("/tmp", e)).st_uid for e in os.listdir("/tmp")}
    with open(log_path, errors="replace") as f:
        out["log_tail"] = f.read()[-4000:]
    print(json.dumps(out))


def main():
    if os.geteuid() != 0:
        sys.exit("replay.py: must run as root inside `unshare --mount --net` (see tests/space.rs)")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status")
    s.add_argument("--root", required=True)
    s.add_argument("--entrypoint", required=True)
    s.add_argument("--case", required=True, choices=["absent", "readonly", "root-owned", "writable"])
    g = sub.add_parser("gateway")
    g.add_argument("--root", required=True)
    g.add_argument("--entrypoint", required=True)
    g.add_argument("--openclaw-bin", required=True, help="the bin dir printed by scripts/install-openclaw.sh")
    g.add_argument("--deadline", type=float, default=120, help="seconds to wait for /healthz 200, and then again for /startupz started (generous: CI shares 2 cores)")
    g.add_argument("--stop-deadline", type=float, default=30, help="seconds to wait for exit after SIGTERM")
    a = ap.parse_args()
    {"status": cmd_status, "gateway": cmd_gateway}[a.cmd](a)


if __name__ == "__main__":
    main()
