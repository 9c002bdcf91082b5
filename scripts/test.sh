#!/usr/bin/env bash
# The whole test suite on a fresh machine (Rust, Python 3.11, Node 20 + npm are assumed):
# installs what the tests need (pinned Node 24 + OpenClaw, Python venvs, Debian packages for the
# browser test), idempotently, then runs `cargo test`, then builds and runs the image
# (scripts/image-test.sh: podman, stand-in base images cached in $OPENCLAW_SPACE_CACHE/image).
#
#   scripts/test.sh            # everything
#   scripts/test.sh gateway    # extra args go to cargo test (the image test still runs)
#   OPENCLAW_SPACE_SKIP_IMAGE=1 scripts/test.sh   # everything but the image (said so at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/openclaw-space/target}"
export OPENCLAW_SPACE_CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}"

echo "== setup: Node 24 + OpenClaw" >&2
scripts/install-openclaw.sh >/dev/null
for setup in scripts/python-venv.sh scripts/docker-venv.sh scripts/e2e-deps.sh; do
  [ -x "$setup" ] || continue
  if [ "$setup" = scripts/e2e-deps.sh ] && [ "$(id -u)" != 0 ]; then
    echo "== setup: skipping $setup (not root: the namespace and browser tests will skip)" >&2
    continue
  fi
  echo "== setup: $setup" >&2
  PATH="$(scripts/install-openclaw.sh):$PATH" "$setup" >/dev/null
done

echo "== cargo test" >&2
# Tests that start the real gateway serialise themselves; two threads keep the 2 cores busy.
cargo test --locked "$@" -- --test-threads="${TEST_THREADS:-2}"

# The image: needs root (rootful podman). In CI it is never skipped; elsewhere a non-root run
# or OPENCLAW_SPACE_SKIP_IMAGE=1 skips it, and says so as the last line.
if [ "${OPENCLAW_SPACE_SKIP_IMAGE:-}" = 1 ] && [ "${CI:-}" != true ]; then
  echo "== image: SKIPPED (OPENCLAW_SPACE_SKIP_IMAGE=1): the Dockerfile was not built or run" >&2
elif [ "$(id -u)" != 0 ] && [ "${CI:-}" != true ]; then
  echo "== image: SKIPPED (not root): the Dockerfile was not built or run; run scripts/image-test.sh as root" >&2
else
  echo "== image: scripts/image-test.sh" >&2
  scripts/image-test.sh
fi
