#!/usr/bin/env python3
"""Check a Dockerfile against what a Hugging Face Docker Space running openclaw-space needs.

Parses with BuildKit's own parser (PyPI `dockerfile`), so what is checked is what `docker build`
would read. Run it with the venv from scripts/docker-venv.sh:

    "$(scripts/docker-venv.sh)" scripts/check-dockerfile.py Dockerfile [--openclaw-version V]

Prints `PATH:LINE: problem` per problem and exits 1, or `ok: PATH (N checks)` and exits 0.
Exit 2: the file is missing or does not parse. The rules and why:
- multi-stage, base images pinned by version (a rebuild must be the same image);
- `cargo build --release --locked` (the binary is what Cargo.lock says);
- OpenClaw installed at the pinned version, never `latest` (rebuilds happen on every restart);
- the final stage runs as uid 1000 with HOME=/home/user (Spaces run uid 1000);
- no `openclaw` command run as root (its first call creates a root-owned 0700 log folder);
- its own exec-form `ENTRYPOINT ["/app/entrypoint"]` and `CMD ["run"]` (entrypoint must be PID 1
  and get SIGTERM; the node image's ENTRYPOINT must not be inherited);
- EXPOSE 7860 and ENV PORT=7860 (the Space's app_port);
- no ENV/ARG that looks like a secret with a value (image layers are readable);
- Dev Mode's packages (bash curl wget procps git git-lfs) and ca-certificates (HTTPS);
- /app owned by uid 1000 (Dev Mode).
"""

import argparse
import re
import shlex
import sys

import dockerfile

DEV_MODE_PACKAGES = ["bash", "curl", "wget", "procps", "git", "git-lfs", "ca-certificates"]
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}")
# Wrappers that run the next word as the command.
WRAPPERS = {"sudo", "env", "exec", "npx", "nohup", "time", "command", "xargs"}


class Stage:
    def __init__(self, from_cmd, base):
        self.from_cmd = from_cmd
        self.base = base
        self.commands = []


def words(text):
    """Shell words with operators (&&, ;, |, ...) as separate tokens; None if unparsable."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def simple_commands(text):
    """Split a shell line into simple commands (lists of words)."""
    tokens = words(text) or text.split()
    out, cur = [], []
    for t in tokens:
        if t and all(c in "&|;()<>" for c in t):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def program(cmd):
    """The program a simple command runs: skips VAR=value prefixes and wrappers like sudo/npx."""
    i = 0
    while i < len(cmd):
        w = cmd[i]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            i += 1
        elif w.rsplit("/", 1)[-1] in WRAPPERS:
            i += 1
            # Skip the wrapper's own options (npx --yes, env -i, sudo -u x is not used here).
            while i < len(cmd) and cmd[i].startswith("-"):
                i += 1
        else:
            return w.rsplit("/", 1)[-1]
    return None


def substitute(text, args):
    def repl(m):
        name = m.group(1) or m.group(2)
        return args.get(name, m.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


def arg_pairs(cmd):
    """ARG NAME[=default] ... -> [(name, default or None)]."""
    out = []
    for v in cmd.value:
        name, eq, default = v.partition("=")
        out.append((name, default if eq else None))
    return out


def env_pairs(cmd):
    vals = list(cmd.value)
    return list(zip(vals[0::2], vals[1::2]))


def check(path, openclaw_version):
    problems = []

    def bad(cmd, msg):
        line = cmd.start_line if cmd is not None else 1
        problems.append(f"{path}:{line}: {msg}")

    try:
        cmds = dockerfile.parse_file(path)
    except (dockerfile.GoIOError, dockerfile.GoParseError) as e:
        print(f"{path}: cannot parse: {e}", file=sys.stderr)
        sys.exit(2)

    # Global ARGs (before the first FROM) give FROM lines their defaults.
    global_args, stages = {}, []
    for c in cmds:
        if c.cmd == "FROM":
            image = substitute(c.value[0], global_args)
            stages.append(Stage(c, image))
        elif not stages:
            if c.cmd == "ARG":
                global_args.update({k: v for k, v in arg_pairs(c) if v is not None})
        else:
            stages[-1].commands.append(c)

    checks = 0

    # Multi-stage, pinned bases.
    checks += 1
    if len(stages) < 2:
        bad(stages[0].from_cmd if stages else None, f"expected a multi-stage build (>= 2 FROM), found {len(stages)}")
    stage_names = {s.from_cmd.value[2].lower() for s in stages if len(s.from_cmd.value) >= 3}
    for s in stages:
        checks += 1
        image = s.base
        if image.lower() in stage_names or image == "scratch":
            continue
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "$" in image:
            bad(s.from_cmd, f"FROM {s.from_cmd.value[0]}: cannot resolve the image (give the ARG a default)")
        elif not tag or tag == "latest" or not re.search(r"\d", tag):
            bad(s.from_cmd, f"FROM {image}: pin the base image to a version tag (e.g. node:24.21.0-bookworm-slim)")

    all_runs = [(s, c) for s in stages for c in s.commands if c.cmd == "RUN"]
    final = stages[-1] if stages else None

    # cargo build --release --locked somewhere.
    checks += 1
    cargo_ok = False
    for _, c in all_runs:
        for sc in simple_commands(c.value[0]):
            if program(sc) == "cargo" and "build" in sc and "--release" in sc and "--locked" in sc:
                cargo_ok = True
    if not cargo_ok:
        bad(None, "no `cargo build --release --locked` in any RUN")

    # OpenClaw pinned, nothing @latest.
    checks += 1
    version_args = [(c, d) for s in stages for c in s.commands if c.cmd == "ARG" for n, d in arg_pairs(c) if n == "OPENCLAW_VERSION"]
    if not version_args:
        bad(final.from_cmd if final else None, f"no `ARG OPENCLAW_VERSION={openclaw_version}`: pin the OpenClaw version")
    for c, d in version_args:
        if d != openclaw_version:
            bad(c, f"ARG OPENCLAW_VERSION={d}: expected the tested version {openclaw_version}")
    for c in cmds:
        if re.search(r"@latest\b", c.original):
            bad(c, "`@latest` is not pinned: a rebuild would change the program; use an exact version")
    for s, c in all_runs:
        for sc in simple_commands(c.value[0]):
            if program(sc) in ("npm", "pnpm", "yarn", "bun") and any(w in ("install", "i", "add") for w in sc):
                for w in sc:
                    if w == "openclaw" or (w.startswith("openclaw@") and not re.fullmatch(r"openclaw@(\$\{?OPENCLAW_VERSION\}?|\d[\w.\-]*)", w)):
                        bad(c, f"`{w}` is not pinned: install openclaw@${{OPENCLAW_VERSION}}")
                    elif w.startswith("openclaw@"):
                        checks += 1

    # Final stage: user, env, port, cmd.
    if final is not None:
        fc = final.commands
        checks += 1
        users = [c for c in fc if c.cmd == "USER"]
        if not users:
            bad(final.from_cmd, "the final stage has no USER: Spaces run uid 1000; add `USER 1000` (or a user created with uid 1000)")
        else:
            last = users[-1]
            name = last.value[0].split(":")[0]
            if name != "1000" and not user_has_uid_1000(name, final):
                bad(last, f"USER {last.value[0]}: cannot tell that it is uid 1000; create it with `useradd -m -u 1000 {name}` or write `USER 1000`")

        # No openclaw run before the switch to the non-root user, in any stage.
        for s in stages:
            for c in s.commands:
                if c.cmd == "USER":
                    break
                if c.cmd == "RUN":
                    checks += 1
                    for sc in simple_commands(c.value[0]):
                        prog = program(sc) or ""
                        if prog == "openclaw" or prog.startswith("openclaw@"):
                            bad(c, "`openclaw` runs as root during the build: its log folder in /tmp becomes root-owned and uid 1000 gets EACCES at run time; run it after USER, or not at build time")

        env = {}
        for c in fc:
            if c.cmd == "ENV":
                env.update(dict(env_pairs(c)))
        checks += 2
        if env.get("PORT") != "7860":
            bad(final.from_cmd, f"the final stage needs `ENV PORT=7860` (found {env.get('PORT')!r})")
        if env.get("HOME") != "/home/user":
            bad(final.from_cmd, f"the final stage needs `ENV HOME=/home/user` (found {env.get('HOME')!r})")
        checks += 1
        exposed = [p.split("/")[0] for c in fc if c.cmd == "EXPOSE" for p in c.value]
        if "7860" not in exposed:
            bad(final.from_cmd, "the final stage needs `EXPOSE 7860` (the Space's app_port)")

        checks += 2
        check_entrypoint_and_cmd(final, bad)

        # Dev Mode packages.
        checks += 1
        installed = set()
        for c in fc:
            if c.cmd != "RUN":
                continue
            for sc in simple_commands(c.value[0]):
                if program(sc) in ("apt-get", "apt") and "install" in sc:
                    installed.update(w for w in sc[sc.index("install") + 1:] if not w.startswith("-"))
        missing = [p for p in DEV_MODE_PACKAGES if p not in installed]
        if missing:
            bad(final.from_cmd, f"the final stage does not apt-get install {' '.join(missing)} (Spaces Dev Mode needs bash curl wget procps git git-lfs; HTTPS needs ca-certificates)")

        # /app owned by uid 1000.
        checks += 1
        if not app_owned_by_1000(final):
            bad(final.from_cmd, "/app must be owned by uid 1000 (Dev Mode): `chown 1000:1000 /app` or `COPY --chown=1000:1000 ... /app/`")

    # Secrets.
    for c in cmds:
        if c.cmd == "ENV":
            pairs = env_pairs(c)
        elif c.cmd == "ARG":
            pairs = arg_pairs(c)
        else:
            pairs = []
        for name, value in pairs:
            checks += 1
            if SECRET_NAME.search(name) and value:
                bad(c, f"{c.cmd} {name} has a value baked into the image; secrets come from the Space's Secrets at run time")
        if HF_TOKEN_VALUE.search(c.original):
            bad(c, "looks like a Hugging Face token in the Dockerfile; remove it and revoke it")

    return checks, problems


ENTRYPOINTS = (["/app/entrypoint"], ["entrypoint"])


def check_entrypoint_and_cmd(final, bad):
    """The final stage sets its own exec-form ENTRYPOINT ["/app/entrypoint"] and CMD ["run"].

    Its own: a base image's ENTRYPOINT is inherited (the node image's docker-entrypoint.sh would
    turn `docker run IMAGE status` into `node status`). Exec form: shell form makes /bin/sh PID 1
    and SIGTERM never reaches entrypoint. Nothing in front of it (tini, a script): entrypoint is
    the init. CMD ["run"]: `docker run IMAGE` runs the service and Dev Mode finds a CMD, while
    `docker run IMAGE status` replaces it."""
    fc = final.commands
    eps = [c for c in fc if c.cmd == "ENTRYPOINT"]
    if not eps:
        bad(final.from_cmd, 'the final stage has no ENTRYPOINT, so it inherits the base image\'s (node\'s docker-entrypoint.sh); add `ENTRYPOINT ["/app/entrypoint"]`')
    else:
        c = eps[-1]
        if not c.json:
            bad(c, 'ENTRYPOINT must be exec form `ENTRYPOINT ["/app/entrypoint"]`: shell form makes /bin/sh PID 1 and SIGTERM never reaches entrypoint')
        elif list(c.value) not in ENTRYPOINTS:
            bad(c, f'ENTRYPOINT {list(c.value)}: expected ["/app/entrypoint"]; entrypoint is the init, nothing goes in front of it')
    cmd_lines = [c for c in fc if c.cmd == "CMD"]
    if not cmd_lines:
        bad(final.from_cmd, 'the final stage has no CMD; add `CMD ["run"]` (Dev Mode needs a CMD, and the base image\'s would be inherited)')
    else:
        c = cmd_lines[-1]
        if not c.json:
            bad(c, 'CMD must be exec form `CMD ["run"]`')
        elif list(c.value) != ["run"]:
            bad(c, f'CMD {list(c.value)}: expected ["run"] (the arguments to ENTRYPOINT ["/app/entrypoint"])')


def user_has_uid_1000(name, stage):
    """True if the stage creates `name` with uid 1000 (useradd -u 1000 NAME), or renames the
    node image's uid-1000 user `node` to it (usermod -l NAME node)."""
    for c in stage.commands:
        if c.cmd != "RUN":
            continue
        for sc in simple_commands(c.value[0]):
            prog = program(sc)
            if prog == "useradd" and sc[-1] == name:
                for i, w in enumerate(sc[:-1]):
                    if (w in ("-u", "--uid") and sc[i + 1] == "1000") or w in ("-u1000", "--uid=1000"):
                        return True
            if prog == "usermod" and sc[-1] == "node" and stage.base.split(":")[0].endswith("node"):
                for i, w in enumerate(sc[:-1]):
                    if (w in ("-l", "--login") and sc[i + 1] == name) or w == f"--login={name}":
                        return True
    return False


def app_owned_by_1000(stage):
    owners = ("1000", "1000:1000", "user", "user:user")
    for c in stage.commands:
        if c.cmd == "RUN":
            for sc in simple_commands(c.value[0]):
                if program(sc) == "chown":
                    args = [w for w in sc[1:] if not w.startswith("-")]
                    if args and args[0] in owners and any(a.rstrip("/") == "/app" for a in args[1:]):
                        return True
        if c.cmd in ("COPY", "ADD"):
            chown = [f.split("=", 1)[1] for f in c.flags if f.startswith("--chown=")]
            if chown and chown[0] in owners and c.value[-1].rstrip("/") == "/app":
                return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dockerfiles", nargs="+")
    ap.add_argument("--openclaw-version", default="2026.9.6", help="the OpenClaw version the image must pin")
    a = ap.parse_args()
    failed = False
    for path in a.dockerfiles:
        checks, problems = check(path, a.openclaw_version)
        for p in problems:
            print(p)
        if problems:
            failed = True
        else:
            print(f"ok: {path} ({checks} checks)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
