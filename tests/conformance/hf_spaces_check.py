"""Check the fake Hub's Space endpoints with the official huggingface_hub client.

Run by tests/deploy_space.rs against a running fake:

    HF_ENDPOINT=http://127.0.0.1:PORT HF_TOKEN=... HF_READ_TOKEN=... HF_FREE_TOKEN=... \
        python hf_spaces_check.py --space me/app

Covers what scripts/deploy-space.py uses: create_repo(space_sdk="docker") (and its 409 and 402
paths), space_info, create_commit to a Space, add/get/delete_space_secret, add/get/
delete_space_variable, and the 403 of a read-only token. Prints one `ok <step>` line per
check and ends with `CHECK PASSED`; any failure raises.
"""

import os
import sys

if not os.environ.get("HF_ENDPOINT"):
    sys.exit("hf_spaces_check.py: set HF_ENDPOINT to the fake hub's endpoint before running")

import argparse  # noqa: E402

import huggingface_hub  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402


def step(name: str) -> None:
    print(f"ok {name}", flush=True)


def expect_status(status, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except HfHubHTTPError as e:
        assert e.response.status_code == status, (status, e)
        return
    raise AssertionError(f"expected HTTP {status} from {fn.__name__}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", required=True, help="owner/name of a Space to create")
    space = ap.parse_args().space
    endpoint = os.environ["HF_ENDPOINT"]
    assert huggingface_hub.__version__ == "2.4.0", huggingface_hub.__version__
    api = HfApi(endpoint=endpoint, token=os.environ["HF_TOKEN"])
    reader = HfApi(endpoint=endpoint, token=os.environ["HF_READ_TOKEN"])
    free = HfApi(endpoint=endpoint, token=os.environ["HF_FREE_TOKEN"])

    url = api.create_repo(space, repo_type="space", space_sdk="docker", private=True)
    assert str(url).endswith(f"/spaces/{space}"), url
    step("create_repo space_sdk=docker")
    api.create_repo(space, repo_type="space", space_sdk="docker", private=True, exist_ok=True)
    step("create_repo exist_ok (409 path)")
    info = api.space_info(space)
    assert info.sdk == "docker" and info.private is True, (info.sdk, info.private)
    step("space_info sdk + private")
    expect_status(402, free.create_repo, f"{space}-free", repo_type="space", space_sdk="docker", private=True)
    step("create_repo docker on a free account -> 402")

    ops = [
        CommitOperationAdd(path_in_repo="Dockerfile", path_or_fileobj=b"FROM scratch\n"),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=b"---\nsdk: docker\napp_port: 7860\n---\n"),
        CommitOperationAdd(path_in_repo="src/main.rs", path_or_fileobj=b"fn main() {}\n"),
    ]
    commit = api.create_commit(space, repo_type="space", operations=ops, commit_message="deploy")
    assert commit.oid and len(commit.oid) == 40, commit
    files = set(api.list_repo_files(space, repo_type="space"))
    assert {"Dockerfile", "README.md", "src/main.rs"} <= files, files
    step("create_commit to a Space (one commit, three files)")

    api.add_space_secret(space, "OPENCLAW_GATEWAY_TOKEN", "s3cret-value", description="gateway")
    api.add_space_secret(space, "HF_TOKEN", "hf_other")
    got = api.get_space_secrets(space)
    assert set(got) == {"OPENCLAW_GATEWAY_TOKEN", "HF_TOKEN"}, got
    assert got["OPENCLAW_GATEWAY_TOKEN"].description == "gateway", got
    assert not hasattr(got["HF_TOKEN"], "value"), "secret values must never be listed"
    step("add_space_secret + get_space_secrets (no values)")
    api.delete_space_secret(space, "HF_TOKEN")
    assert set(api.get_space_secrets(space)) == {"OPENCLAW_GATEWAY_TOKEN"}
    step("delete_space_secret")

    after_add = api.add_space_variable(space, "HF_DATASET", "me/app-backup", description="backups")
    assert after_add["HF_DATASET"].value == "me/app-backup", after_add
    api.add_space_variable(space, "HF_DATASET", "me/other")
    variables = api.get_space_variables(space)
    assert variables["HF_DATASET"].value == "me/other", variables
    step("add_space_variable (upsert) + get_space_variables")
    api.add_space_variable(space, "EXTRA", "1")
    left = api.delete_space_variable(space, "EXTRA")
    assert set(left) == {"HF_DATASET"}, left
    step("delete_space_variable")

    expect_status(403, reader.add_space_secret, space, "X", "y")
    expect_status(403, reader.get_space_secrets, space)
    expect_status(403, reader.add_space_variable, space, "X", "y")
    step("read-only token: secrets and variables -> 403")
    expect_status(401, HfApi(endpoint=endpoint, token="hf_unknown").add_space_secret, space, "X", "y")
    step("unknown token -> 401")
    print("CHECK PASSED", flush=True)


if __name__ == "__main__":
    main()
