#!/usr/bin/env python3
"""Deploy this checkout to a private Hugging Face Docker Space, in one command.

    pip install huggingface_hub            # once (or: pipx run / uv run --with huggingface_hub)
    hf auth login                          # or export HF_TOKEN=hf_... (a token with write access)
    python3 scripts/deploy-space.py alice/openclaw

What it does, in this order (re-running it updates the Space and keeps its secrets):
1. creates the private backup dataset (default `<space>-backup`) if it is missing; refuses a
   public one. With `--bucket owner/name[/folder]` a private Storage Bucket instead (created if
   missing, a public one refused);
2. creates the private Docker Space (`sdk: docker`, `app_port: 7860`) if it is missing; refuses a
   public or non-Docker one (a public Space only with `--public`);
3. sets the Space's Secrets OPENCLAW_GATEWAY_TOKEN (from the env, else kept if the Space has one,
   else generated and printed once) and HF_TOKEN (SPACE_HF_TOKEN from the env, else the token
   used here; kept if the Space has one, unless --update-hf-token), and the Variable HF_DATASET
   (or HF_BUCKET; the other one is removed, since the entrypoint takes exactly one store);
4. uploads, in ONE commit, what the image build needs: Dockerfile, .dockerignore, Cargo.toml,
   Cargo.lock, .cargo/, src/, and spaces/huggingface/README.md as the Space's README.md (its
   front matter is the Space card). Files under src/ and .cargo/ that are gone here are deleted
   there in the same commit;
5. prints the app's URL (https://<owner>-<name>.hf.space) and what to do next.

Creating a Docker Space needs a paid Hugging Face plan (PRO for a personal account).
Errors are one line on stderr, exit status 1 (2 for bad arguments). No secret is ever printed,
except a generated gateway token, once.
"""

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "spaces" / "huggingface" / "README.md"
# What the Dockerfile's build context needs (see .dockerignore); managed dirs are mirrored.
TOP_FILES = ["Dockerfile", ".dockerignore", "Cargo.toml", "Cargo.lock"]
MANAGED_DIRS = ["src", ".cargo"]
# Repo names as the Hub accepts them: letters, digits, `-`, `_`, `.`; no `--`/`..`; <= 96 chars.
NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,94}[A-Za-z0-9]?$")


class Fail(Exception):
    """One line for the user; the exit status is 1."""


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="deploy-space.py",
        description="Deploy this checkout to a private Hugging Face Docker Space.",
    )
    ap.add_argument("space", help="the Space, owner/name (created if missing)")
    ap.add_argument("--dataset", help="backup dataset, owner/name (default: <space>-backup)")
    ap.add_argument("--bucket", help="back up to this Storage Bucket instead of a dataset: owner/name or owner/name/folder (created private if missing)")
    ap.add_argument("--public", action="store_true", help="allow a public Space (the token still guards the gateway)")
    ap.add_argument("--new-gateway-token", action="store_true", help="replace the Space's OPENCLAW_GATEWAY_TOKEN with a new one")
    ap.add_argument("--update-hf-token", action="store_true", help="overwrite the Space's HF_TOKEN secret")
    a = ap.parse_args(argv)
    a.space = repo_id(a.space, "SPACE")
    if a.bucket and a.dataset:
        print("deploy-space: --dataset and --bucket: give one of them (the entrypoint backs up to exactly one store)", file=sys.stderr)
        sys.exit(2)
    if a.bucket:
        parts = a.bucket.strip("/").split("/")
        a.bucket_id = repo_id("/".join(parts[:2]), "--bucket")
        if any(not p for p in parts[2:]):
            print(f"deploy-space: --bucket must be owner/name or owner/name/folder; got {a.bucket!r}", file=sys.stderr)
            sys.exit(2)
        a.bucket = "/".join(parts)
    else:
        a.dataset = repo_id(a.dataset or f"{a.space}-backup", "--dataset")
    return a


def repo_id(value, what):
    parts = value.split("/")
    if len(parts) != 2 or not all(NAME.match(p) for p in parts):
        print(f"deploy-space: {what} must be owner/name (letters, digits, '-', '_', '.'), e.g. alice/openclaw; got {value!r}", file=sys.stderr)
        sys.exit(2)
    return value


def app_url(space):
    """https://<owner>-<name>.hf.space: the Hub lowercases and turns `_` and `.` into `-`."""
    return "https://" + re.sub(r"[._]", "-", space.replace("/", "-").lower()) + ".hf.space"


def upload_plan(existing):
    """(path in repo, local path) to add, and repo paths to delete: one commit's worth."""
    adds = []
    for name in TOP_FILES:
        p = ROOT / name
        if not p.is_file():
            raise Fail(f"{p} is missing: run this from a complete checkout of openclaw-space")
        adds.append((name, p))
    for d in MANAGED_DIRS:
        for p in sorted((ROOT / d).rglob("*")):
            if p.is_file() and not p.name.endswith((".swp", "~")):
                adds.append((p.relative_to(ROOT).as_posix(), p))
    if not CARD.is_file():
        raise Fail(f"{CARD} is missing: run this from a complete checkout of openclaw-space")
    adds.append(("README.md", CARD))
    keep = {path for path, _ in adds}
    deletes = [f for f in existing if f.split("/")[0] in MANAGED_DIRS and f not in keep]
    return adds, deletes


def explain(err, what):
    """One line for an HTTP error of the Hub, naming what was being done."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return f"{what}: the Hub rejected the token (401); check HF_TOKEN or run `hf auth login` again"
    if status == 403:
        return f"{what}: the token has no write access there (403); use a token with write access to that namespace (https://huggingface.co/settings/tokens)"
    if status == 402:
        return f"{what}: creating a Docker Space needs a paid plan (PRO for a personal account: https://huggingface.co/subscribe/pro)"
    if status == 404:
        return f"{what}: not found (404); check the owner name, and that the token can see it"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{what}: {first}"


def ensure_private_store(api, a):
    """Create the backup dataset or bucket private if missing; refuse a public one."""
    from huggingface_hub.utils import HfHubHTTPError

    if a.bucket:
        what, flag = f"backup bucket {a.bucket_id}", "--bucket"
        create = lambda: api.create_bucket(a.bucket_id, private=True, exist_ok=True)  # noqa: E731
        info = lambda: api.bucket_info(a.bucket_id)  # noqa: E731
    else:
        what, flag = f"backup dataset {a.dataset}", "--dataset"
        create = lambda: api.create_repo(a.dataset, repo_type="dataset", private=True, exist_ok=True)  # noqa: E731
        info = lambda: api.dataset_info(a.dataset)  # noqa: E731
    try:
        create()
        private = info().private
    except HfHubHTTPError as e:
        raise Fail(explain(e, what))
    if not private:
        raise Fail(f"{what} is public and backups hold credentials: make it private in its settings, or pick another with {flag}")


def set_store_variable(api, a):
    """HF_DATASET or HF_BUCKET, and never both: the entrypoint refuses two stores."""
    name, value, other = ("HF_BUCKET", a.bucket, "HF_DATASET") if a.bucket else ("HF_DATASET", a.dataset, "HF_BUCKET")
    what = "backup bucket" if a.bucket else "backup dataset"
    api.add_space_variable(a.space, name, value, description=f"{what} (openclaw-space)")
    if other in api.get_space_variables(a.space):
        api.delete_space_variable(a.space, other)


def check_space(api, space, public):
    """The Space's info, or None if missing; refuses a public (unless asked) or non-Docker one.
    Read-only, so a refusal changes nothing."""
    from huggingface_hub.utils import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = api.space_info(space)
    except RepositoryNotFoundError:
        return None
    except HfHubHTTPError as e:
        raise Fail(explain(e, f"Space {space}"))
    if info.sdk not in (None, "docker"):
        raise Fail(f"Space {space} is a {info.sdk} Space; this needs a Docker Space: pick another name")
    if not info.private and not public:
        raise Fail(f"Space {space} is public; make it private in its settings, or pass --public to deploy to it anyway")
    return info


def create_space(api, space, public):
    from huggingface_hub.utils import HfHubHTTPError

    try:
        api.create_repo(space, repo_type="space", space_sdk="docker", private=not public)
    except HfHubHTTPError as e:
        raise Fail(explain(e, f"creating Space {space}"))


def set_settings(api, a, hf_token):
    """Secrets and the Variable; returns the generated gateway token or None."""
    from huggingface_hub.utils import HfHubHTTPError

    generated = None
    try:
        have = set(api.get_space_secrets(a.space))
        gateway = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "").strip()
        if not gateway and (a.new_gateway_token or "OPENCLAW_GATEWAY_TOKEN" not in have):
            gateway = generated = secrets.token_hex(32)
        if gateway:
            api.add_space_secret(a.space, "OPENCLAW_GATEWAY_TOKEN", gateway, description="Control UI / API token (openclaw-space)")
        if a.update_hf_token or "HF_TOKEN" not in have:
            space_token = os.environ.get("SPACE_HF_TOKEN", "").strip() or hf_token
            api.add_space_secret(a.space, "HF_TOKEN", space_token, description="backups, Inference Providers")
        set_store_variable(api, a)
    except HfHubHTTPError as e:
        raise Fail(explain(e, f"setting the secrets of Space {a.space}"))
    return generated


def upload(api, space):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.utils import HfHubHTTPError

    try:
        existing = api.list_repo_files(space, repo_type="space")
        adds, deletes = upload_plan(existing)
        ops = [CommitOperationAdd(path_in_repo=r, path_or_fileobj=str(p)) for r, p in adds]
        ops += [CommitOperationDelete(path_in_repo=r) for r in deletes]
        info = api.create_commit(space, repo_type="space", operations=ops, commit_message=f"Deploy openclaw-space ({len(adds)} files)")
    except HfHubHTTPError as e:
        raise Fail(explain(e, f"uploading to Space {space}"))
    return len(adds), len(deletes), info.oid


def deploy(a):
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError:
        raise Fail("the Python package huggingface_hub is missing: pip install huggingface_hub")
    hf_token = os.environ.get("HF_TOKEN", "").strip() or get_token()
    if not hf_token:
        raise Fail("no Hugging Face token: export HF_TOKEN=hf_... (write access) or run `hf auth login`")
    api = HfApi(token=hf_token)
    created = check_space(api, a.space, a.public) is None
    ensure_private_store(api, a)
    if created:
        create_space(api, a.space, a.public)
    generated = set_settings(api, a, hf_token)
    n_add, n_del, oid = upload(api, a.space)

    visibility = "public" if a.public else "private"
    print(f"Space {a.space}: {'created' if created else 'updated'} ({visibility}, Docker), {n_add} files uploaded in commit {oid[:12]}" + (f", {n_del} removed" if n_del else ""))
    if a.bucket:
        print(f"Backups: private Storage Bucket {a.bucket} (Variable HF_BUCKET)")
    else:
        print(f"Backups: private dataset {a.dataset} (Variable HF_DATASET)")
    if generated:
        print("OPENCLAW_GATEWAY_TOKEN (generated; shown only this once, keep it in a password manager):")
        print(f"  {generated}")
    elif os.environ.get("OPENCLAW_GATEWAY_TOKEN", "").strip():
        print("Secret OPENCLAW_GATEWAY_TOKEN: set from your environment")
    else:
        print("Secret OPENCLAW_GATEWAY_TOKEN: the Space's existing one was kept (--new-gateway-token replaces it)")
    print(f"App: {app_url(a.space)}")
    print("Next:")
    print(f"  1. Watch the build: https://huggingface.co/spaces/{a.space} -> Logs (the first build takes about 10 minutes).")
    print(f"  2. Open the Space's App tab, or {app_url(a.space)}, and paste the gateway token.")
    print("     Each new browser pairs itself automatically.")
    print("  3. To update later, pull this checkout and run the same command again.")


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        deploy(a)
    except Fail as e:
        print(f"deploy-space: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
