#!/usr/bin/env bash
# Front door overhead against the real gateway (bench/frontdoor.py prints the table).
#
#   cargo build --release && bench/frontdoor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${ENTRYPOINT_BIN:-${CARGO_TARGET_DIR:-target}/release/entrypoint}
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 1; }
exec python3 bench/frontdoor.py "$BIN" "$(scripts/install-openclaw.sh)"
