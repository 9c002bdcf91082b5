#!/usr/bin/env bash
# Change detection against the real, idle OpenClaw gateway: start it on a fresh data dir, then
# run `entrypoint backup` (dir store) right away and every INTERVAL seconds for ROUNDS more
# rounds. Target: exactly one upload (the first); the lease heartbeat every 30 s and other
# idle chatter must not count as changes. Prints one line per round and a verdict.
#
#   bench/idle_gateway.sh                 # 10 rounds x 60 s (~11 min)
#   ROUNDS=3 INTERVAL=20 bench/idle_gateway.sh
#   REUSE=/tmp/oc-idle.XXXXXX bench/idle_gateway.sh   # restart on an existing state (+ meta)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
INTERVAL=${INTERVAL:-60}
BIN=${ENTRYPOINT_BIN:-${CARGO_TARGET_DIR:-target}/release/entrypoint}
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 1; }
OC_BIN=$(scripts/install-openclaw.sh)
DIR=${REUSE:-$(mktemp -d /tmp/oc-idle.XXXXXX)}
DATA=$DIR/data
mkdir -p "$DATA/.openclaw" "$DIR/home"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# (Rewriting the config on reuse changes it, like `run` does at every start.)
cat > "$DATA/.openclaw/openclaw.json" <<JSON
{"gateway":{"mode":"local","port":$PORT,"bind":"loopback","auth":{"mode":"token","token":"\${OPENCLAW_GATEWAY_TOKEN}"}},
 "plugins":{"entries":{"huggingface":{"config":{"discovery":{"enabled":false}}}}}}
JSON
env -i PATH="$OC_BIN:$PATH" HOME="$DIR/home" OPENCLAW_HOME="$DATA" OPENCLAW_GATEWAY_TOKEN=idle-token-1234 \
  setsid openclaw gateway > "$DIR/gateway.log" 2>&1 &
GW=$!
trap 'kill -TERM -- -$GW 2>/dev/null; wait $GW 2>/dev/null; echo "logs: $DIR"' EXIT
for _ in $(seq 1 360); do  # up to 3 min (slow under load)
  curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null && break
  kill -0 $GW 2>/dev/null || { echo "gateway died:"; tail -20 "$DIR/gateway.log"; exit 1; }
  sleep 0.5
done
curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null || { echo "gateway not healthy"; exit 1; }
echo "gateway healthy on port $PORT; backing up every ${INTERVAL}s, $ROUNDS rounds after the first"
export ENTRYPOINT_DATA_DIR=$DATA ENTRYPOINT_BACKUP_DIR=$DIR/store HOME=$DIR ENTRYPOINT_LOG=warn
uploads=0
for round in $(seq 0 "$ROUNDS"); do
  [ "$round" -gt 0 ] && sleep "$INTERVAL"
  start=$(date +%s.%N)
  out=$("$BIN" backup)
  printf 'round %2d  %5.2fs  %s\n' "$round" "$(echo "$(date +%s.%N) - $start" | bc)" "$out"
  case $out in *'"uploaded"'*) uploads=$((uploads + 1)) ;; esac
done
echo "uploads: $uploads (target: exactly 1)"
[ "$uploads" -eq 1 ]
