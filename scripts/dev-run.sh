#!/usr/bin/env bash
# Run the main job locally with no HF account: the pinned OpenClaw behind `entrypoint`, state in
# ./.local/data, backups to the local folder ./.local/backups, on http://127.0.0.1:7860.
#
#   OPENCLAW_GATEWAY_TOKEN=my-secret scripts/dev-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/openclaw-space/target}"
PATH="$(scripts/install-openclaw.sh):$PATH"
cargo build --release --locked
mkdir -p .local/data .local/home .local/backups

if [ -z "${OPENCLAW_GATEWAY_TOKEN:-}" ]; then
  OPENCLAW_GATEWAY_TOKEN="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  echo "OPENCLAW_GATEWAY_TOKEN was not set; using a fresh one for this run: $OPENCLAW_GATEWAY_TOKEN" >&2
fi
export OPENCLAW_GATEWAY_TOKEN
export HOME="$PWD/.local/home"
export ENTRYPOINT_DATA_DIR="${ENTRYPOINT_DATA_DIR:-$PWD/.local/data}"
export ENTRYPOINT_BACKUP_DIR="${ENTRYPOINT_BACKUP_DIR:-$PWD/.local/backups}"
export ENTRYPOINT_BACKUP_INTERVAL="${ENTRYPOINT_BACKUP_INTERVAL:-60s}"
echo "open http://127.0.0.1:${PORT:-7860}/ and paste the token" >&2
exec "$CARGO_TARGET_DIR/release/entrypoint" run "$@"
