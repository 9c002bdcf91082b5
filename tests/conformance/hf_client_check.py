"""Check the fake Hub (tests/support/fakehub) with the official huggingface_hub client.

Run by tests/fakehub_conformance.rs against a running fake:

    HF_ENDPOINT=http://127.0.0.1:PORT HF_TOKEN=... [HF_READ_TOKEN=...] \
        python hf_client_check.py --repo me/check --expect xet|lfs

`--expect xet` needs hf_xet importable and xet enabled; `--expect lfs` needs HF_HUB_DISABLE_XET=1
(legacy LFS: batch -> PUT -> verify). Prints one `ok <step>` line per check and ends with
`CHECK PASSED`; any failure raises (non-zero exit with a traceback naming the step).
"""

import argparse
import hashlib
import os
import sys
import tempfile

if not os.environ.get("HF_ENDPOINT"):
    sys.exit("hf_client_check.py: set HF_ENDPOINT to the fake hub's endpoint before running")

# huggingface_hub reads HF_ENDPOINT at import time: import only after the check above.
import huggingface_hub  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # noqa: E402
from huggingface_hub.utils._runtime import is_xet_available  # noqa: E402

from checklib import pseudo_random, step  # noqa: E402 (next to this script)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, help="owner/name of a dataset repo to create")
    ap.add_argument("--expect", choices=["xet", "lfs"], required=True)
    args = ap.parse_args()
    endpoint = os.environ["HF_ENDPOINT"]
    token = os.environ.get("HF_TOKEN")
    assert token, "set HF_TOKEN to a write token of the fake hub"
    assert huggingface_hub.__version__ == "2.4.0", huggingface_hub.__version__
    if args.expect == "xet":
        assert is_xet_available(), "hf_xet must be installed and HF_HUB_DISABLE_XET unset"
    else:
        assert not is_xet_available(), "legacy LFS check needs HF_HUB_DISABLE_XET=1"
    api = HfApi(endpoint=endpoint, token=token)
    repo = args.repo
    cache = tempfile.mkdtemp(prefix="hf-check-cache-")

    url = api.create_repo(repo, repo_type="dataset", private=True)
    assert str(url).endswith(f"/datasets/{repo}"), url
    step("create_repo")
    api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
    step("create_repo exist_ok (409 path)")
    try:
        api.create_repo(repo, repo_type="dataset", private=True)
        raise AssertionError("second create_repo without exist_ok did not fail")
    except HfHubHTTPError as e:
        assert e.response.status_code == 409, e
    step("create_repo conflict")
    assert api.repo_info(repo, repo_type="dataset").private is True
    step("repo_info private")

    archive = pseudo_random(300_000, 1)
    info = api.upload_file(
        path_or_fileobj=archive, path_in_repo="latest_backup.tar.gz", repo_id=repo, repo_type="dataset"
    )
    assert info.oid and len(info.oid) == 40, info
    step("upload_file (lfs)")

    blob = pseudo_random(150_000, 2)
    sidecar = (hashlib.sha256(archive).hexdigest() + "\n").encode()
    commit = api.create_commit(
        repo_id=repo,
        repo_type="dataset",
        operations=[
            CommitOperationAdd(path_in_repo="dir/state.bin", path_or_fileobj=blob),
            CommitOperationAdd(path_in_repo="latest_backup.sha256", path_or_fileobj=sidecar),
        ],
        commit_message="two files",
    )
    assert commit.oid == api.repo_info(repo, repo_type="dataset").sha, commit
    step("create_commit two files")
    try:
        api.create_commit(
            repo_id=repo,
            repo_type="dataset",
            operations=[CommitOperationAdd(path_in_repo="stale.txt", path_or_fileobj=b"x")],
            commit_message="stale parent",
            parent_commit=info.oid,
        )
        raise AssertionError("a commit on a stale parent was accepted")
    except HfHubHTTPError as e:
        assert e.response.status_code == 412, e
    step("create_commit stale parent_commit -> 412")

    for path, want in [("latest_backup.tar.gz", archive), ("dir/state.bin", blob), ("latest_backup.sha256", sidecar)]:
        got_path = hf_hub_download(repo, path, repo_type="dataset", cache_dir=cache, token=token)
        with open(got_path, "rb") as f:
            assert f.read() == want, f"{path}: downloaded bytes differ"
    step("hf_hub_download byte-identical")

    assert api.file_exists(repo, "latest_backup.tar.gz", repo_type="dataset")
    assert not api.file_exists(repo, "nope.tar.gz", repo_type="dataset")
    step("file_exists true/false")
    files = sorted(api.list_repo_files(repo, repo_type="dataset"))
    assert files == [".gitattributes", "dir/state.bin", "latest_backup.sha256", "latest_backup.tar.gz"], files
    step("list_repo_files")
    infos = api.get_paths_info(repo, ["latest_backup.tar.gz", "latest_backup.sha256", "missing"], repo_type="dataset")
    by_path = {i.path: i for i in infos}
    assert set(by_path) == {"latest_backup.tar.gz", "latest_backup.sha256"}, by_path
    lfs = by_path["latest_backup.tar.gz"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(archive).hexdigest(), lfs
    assert by_path["latest_backup.sha256"].lfs is None
    if args.expect == "xet":
        assert by_path["latest_backup.tar.gz"].xet_hash, "an xet upload should report a xetHash"
    expanded = api.get_paths_info(repo, ["latest_backup.tar.gz"], expand=True, repo_type="dataset")
    assert expanded[0].last_commit is not None and expanded[0].last_commit.oid == info.oid, expanded
    step("get_paths_info")

    # Overwrite: the history holds every version, newest first, each downloadable at its commit.
    api.upload_file(
        path_or_fileobj=pseudo_random(300_000, 3), path_in_repo="latest_backup.tar.gz", repo_id=repo, repo_type="dataset"
    )
    commits = api.list_repo_commits(repo, repo_type="dataset")
    ids = [c.commit_id for c in commits]
    assert len(ids) == 4 and len(set(ids)) == 4, ids  # initial + 3 uploads
    assert ids[0] == api.repo_info(repo, repo_type="dataset").sha, ids
    assert ids[1] == commit.oid and ids[2] == info.oid, ids
    for c in commits:
        assert len(c.commit_id) == 40 and isinstance(c.title, str) and isinstance(c.message, str), c
        assert c.created_at.tzinfo is not None and c.authors, c
        assert c.formatted_title is None, c
    assert commits[1].title == "two files", commits[1]
    formatted = api.list_repo_commits(repo, repo_type="dataset", formatted=True)
    assert [c.commit_id for c in formatted] == ids and all(c.formatted_title for c in formatted), formatted
    older = api.list_repo_commits(repo, repo_type="dataset", revision=info.oid)
    assert [c.commit_id for c in older] == ids[2:], older
    old_path = hf_hub_download(
        repo, "latest_backup.tar.gz", repo_type="dataset", revision=info.oid, cache_dir=cache, token=token
    )
    with open(old_path, "rb") as f:
        assert f.read() == archive, "the archive at an older commit differs"
    new_path = hf_hub_download(repo, "latest_backup.tar.gz", repo_type="dataset", cache_dir=cache, token=token)
    with open(new_path, "rb") as f:
        assert f.read() == pseudo_random(300_000, 3), "the archive at the head differs"
    step("list_repo_commits and download at an older commit")

    # Squash: history becomes one commit with the same files.
    api.super_squash_history(repo, repo_type="dataset")
    assert sorted(api.list_repo_files(repo, repo_type="dataset")) == files
    assert len(api.list_repo_commits(repo, repo_type="dataset")) == 1
    step("super_squash_history")

    api.delete_file("dir/state.bin", repo, repo_type="dataset")
    assert not api.file_exists(repo, "dir/state.bin", repo_type="dataset")
    step("delete_file")

    # Without a token a private repo is "not found", not "forbidden".
    anon = HfApi(endpoint=endpoint, token=False)
    assert not anon.repo_exists(repo, repo_type="dataset")
    try:
        # A fresh cache: with a cached copy the client would fall back to it on errors.
        fresh = tempfile.mkdtemp(prefix="hf-check-anon-")
        hf_hub_download(repo, "latest_backup.sha256", repo_type="dataset", cache_dir=fresh, token=False)
        raise AssertionError("anonymous download of a private repo succeeded")
    except RepositoryNotFoundError:
        pass
    step("private repo hidden without token")
    # A read-only token reads but cannot write (403), like a fine-grained read token.
    read_token = os.environ.get("HF_READ_TOKEN")
    if read_token:
        reader = HfApi(endpoint=endpoint, token=read_token)
        assert reader.file_exists(repo, "latest_backup.sha256", repo_type="dataset")
        try:
            reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo, repo_type="dataset")
            raise AssertionError("a read-only token could commit")
        except HfHubHTTPError as e:
            assert e.response.status_code == 403, e
        step("read-only token: read ok, write 403")
    print("CHECK PASSED", flush=True)


if __name__ == "__main__":
    main()
