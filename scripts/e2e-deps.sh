#!/usr/bin/env bash
# Install what the end-to-end test (tests/e2e_space.rs) needs, idempotently:
#   - Debian packages nginx, chromium, iproute2, bindfs (the FUSE mount of tests/netfs_datadir.rs);
#     apt-get update runs once, only if one is missing;
#   - playwright-core (the driver only; the browser is Debian's /usr/bin/chromium, so never
#     `npx playwright install`) into $HOME/.cache/openclaw-space/e2e-node.
# Prints the node_modules dir to use as NODE_PATH for tests/e2e/browser.mjs.
set -euo pipefail

CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}"
NODE_DIR="$CACHE/e2e-node"
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.1}"

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v bindfs >/dev/null || missing+=(bindfs)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "e2e-deps: need root to apt-get install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
  command -v npm >/dev/null || { echo "e2e-deps: npm not found; run scripts/install-openclaw.sh and put its bin dir on PATH" >&2; exit 1; }
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"private":true}' > "$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2)
fi
echo "$NODE_DIR/node_modules"
