#!/usr/bin/env bash
# A Python venv with the Dockerfile parser (PyPI `dockerfile`, a wrapper around BuildKit's own
# parser) and PyYAML, for scripts/check-dockerfile.py and scripts/check-space-card.py.
# Idempotent: a finished venv is detected by a stamp naming the pinned versions. Prints the
# venv's python to use:
#
#   "$(scripts/docker-venv.sh)" scripts/check-dockerfile.py Dockerfile
set -euo pipefail

PINS="dockerfile==3.4.0 pyyaml==6.0.3"
VENV="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}/venv-docker"
STAMP="$VENV/.installed"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PINS" ]; then
  PYTHON="${PYTHON:-python3}"
  command -v "$PYTHON" >/dev/null || { echo "docker-venv: $PYTHON not found; install Python 3 (3.9+)" >&2; exit 1; }
  # Built in place (a venv can't be moved: its scripts name their path); the stamp, written
  # last, marks it complete, so a killed run is redone from scratch next time.
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  # --only-binary: the `dockerfile` sdist would need a Go toolchain; its wheels don't.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: $PINS >&2
  echo "$PINS" > "$STAMP"
fi
echo "$VENV/bin/python"
