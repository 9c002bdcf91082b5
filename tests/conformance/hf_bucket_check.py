"""Check the fake Hub's Storage Buckets (tests/support/fakehub/buckets.rs) with the official
huggingface_hub client (2.4.0, with hf_xet: buckets are xet-only).

Run by tests/fakehub_conformance.rs against a running fake:

    HF_ENDPOINT=http://127.0.0.1:PORT HF_TOKEN=... HF_READ_TOKEN=... \
        python hf_bucket_check.py --bucket me/check-bucket [--store me/b/prefix]

Checks create_bucket, bucket_info, batch_bucket_files (adds, deletes, and a partial failure
reported inside a 200), list_bucket_tree, get_bucket_paths_info and download_bucket_files.
With `--store owner/name/prefix`, also reads a backup the Rust bucket store published there:
the pointer (`latest.sha256`), then the archive it names, whose sha256 must match. Prints one
`ok <step>` line per check and ends with `CHECK PASSED`; any failure raises.
"""

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

if not os.environ.get("HF_ENDPOINT"):
    sys.exit("hf_bucket_check.py: set HF_ENDPOINT to the fake hub's endpoint before running")

# huggingface_hub reads HF_ENDPOINT at import time: import only after the check above.
import huggingface_hub  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    BucketBatchError,
    BucketNotFoundError,
    HfHubHTTPError,
)
from huggingface_hub.utils._runtime import is_xet_available  # noqa: E402

from checklib import pseudo_random, step  # noqa: E402 (next to this script)


def check_create(api: HfApi, bucket: str) -> None:
    url = api.create_bucket(bucket, private=True)
    assert url.bucket_id == bucket, url
    api.create_bucket(bucket, private=True, exist_ok=True)
    try:
        api.create_bucket(bucket, private=True)
        raise AssertionError("creating an existing bucket must fail")
    except HfHubHTTPError as e:
        assert e.response.status_code == 409, e
    info = api.bucket_info(bucket)
    assert info.id == bucket and info.private is True and info.total_files == 0, info
    step("create_bucket / bucket_info")


def check_files(api: HfApi, bucket: str, tmp: Path) -> dict:
    small = b"hello bucket\n"
    big = pseudo_random(300_000, 1)
    local = tmp / "big.bin"
    local.write_bytes(big)
    api.batch_bucket_files(bucket, add=[(small, "dir/a.txt"), (local, "dir/sub/b.bin")])
    step("batch_bucket_files add")

    files = {f.path: f for f in api.list_bucket_tree(bucket, prefix="dir", recursive=True)}
    assert set(files) == {"dir/a.txt", "dir/sub/b.bin"}, files
    assert files["dir/a.txt"].size == len(small) and files["dir/sub/b.bin"].size == len(big)
    assert all(len(f.xet_hash) == 64 for f in files.values()), files
    # The client sends mtime in milliseconds; the tree gives it back as a date near now.
    assert all(f.mtime is not None and f.mtime.year >= 2024 for f in files.values()), files
    top = list(api.list_bucket_tree(bucket, prefix="dir"))
    kinds = sorted((type(e).__name__, e.path) for e in top)
    assert kinds == [("BucketFile", "dir/a.txt"), ("BucketFolder", "dir/sub")], kinds
    step("list_bucket_tree")

    info = list(api.get_bucket_paths_info(bucket, ["dir/a.txt", "dir/missing"]))
    assert [i.path for i in info] == ["dir/a.txt"], info
    step("get_bucket_paths_info")

    out = tmp / "out"
    api.download_bucket_files(
        bucket, [("dir/a.txt", out / "a.txt"), ("dir/sub/b.bin", out / "b.bin")]
    )
    assert (out / "a.txt").read_bytes() == small
    assert (out / "b.bin").read_bytes() == big
    step("download_bucket_files")
    return files


def check_delete_and_partial_failure(api: HfApi, bucket: str, files: dict) -> None:
    api.batch_bucket_files(bucket, delete=["dir/a.txt"])
    left = [f.path for f in api.list_bucket_tree(bucket, recursive=True)]
    assert left == ["dir/sub/b.bin"], left
    step("batch_bucket_files delete")

    # One good copy and one delete of a missing file: 200 with the failure listed.
    good = files["dir/sub/b.bin"].xet_hash
    try:
        api.batch_bucket_files(
            bucket, copy=[("bucket", bucket, good, "copy.bin")], delete=["nope.txt"]
        )
        raise AssertionError("a partial failure must raise BucketBatchError")
    except BucketBatchError as e:
        assert e.response.status_code == 200, e.response.status_code
        assert [f["path"] for f in e.failures] == ["nope.txt"], e.failures
    assert [i.path for i in api.get_bucket_paths_info(bucket, ["copy.bin"])] == ["copy.bin"]
    # Every operation failing: 422, still with the list.
    try:
        api.batch_bucket_files(bucket, delete=["nope.txt"])
        raise AssertionError("an all-failed batch must raise")
    except BucketBatchError as e:
        assert e.response.status_code == 422 and len(e.failures) == 1, e
    step("batch_bucket_files partial failure")


def check_auth(endpoint: str, bucket: str) -> None:
    anon = HfApi(endpoint=endpoint, token=False)
    try:
        anon.bucket_info(bucket)
        raise AssertionError("a private bucket must look missing without a token")
    except BucketNotFoundError:
        pass
    reader = HfApi(endpoint=endpoint, token=os.environ["HF_READ_TOKEN"])
    assert reader.bucket_info(bucket).private is True
    try:
        reader.batch_bucket_files(bucket, delete=["dir/sub/b.bin"])
        raise AssertionError("a read-only token must not write")
    except HfHubHTTPError as e:
        assert e.response.status_code == 403, e
    step("auth")


def check_store(api: HfApi, store: str, tmp: Path) -> None:
    owner, name, prefix = store.split("/", 2)
    bucket = f"{owner}/{name}"
    out = tmp / "store"
    api.download_bucket_files(bucket, [(f"{prefix}/latest.sha256", out / "latest.sha256")])
    sha, target = (out / "latest.sha256").read_text().split()
    assert target.startswith("versions/") and target.endswith(f"-{sha}.tar.gz"), target
    api.download_bucket_files(bucket, [(f"{prefix}/{target}", out / "archive.tar.gz")])
    assert hashlib.sha256((out / "archive.tar.gz").read_bytes()).hexdigest() == sha
    names = [f.path for f in api.list_bucket_tree(bucket, prefix=f"{prefix}/versions")]
    assert f"{prefix}/{target}" in names, names
    step("the Rust store's backup")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", required=True, help="owner/name of a bucket to create")
    ap.add_argument("--store", help="owner/name/prefix where the Rust store published")
    args = ap.parse_args()
    endpoint = os.environ["HF_ENDPOINT"]
    assert huggingface_hub.__version__ == "2.4.0", huggingface_hub.__version__
    assert is_xet_available(), "buckets are xet-only: hf_xet must be installed"
    api = HfApi(endpoint=endpoint, token=os.environ["HF_TOKEN"])
    tmp = Path(tempfile.mkdtemp(prefix="hf-bucket-check-"))
    check_create(api, args.bucket)
    files = check_files(api, args.bucket, tmp)
    check_delete_and_partial_failure(api, args.bucket, files)
    check_auth(endpoint, args.bucket)
    if args.store:
        check_store(api, args.store, tmp)
    print("CHECK PASSED", flush=True)


if __name__ == "__main__":
    main()
