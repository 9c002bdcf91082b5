#!/usr/bin/env bash
# Build the root Dockerfile, unmodified, with podman, then run the image and check what every
# user of it relies on. Part of scripts/test.sh (and so of .ci/run); needs root.
#
#   scripts/image-test.sh            # deps + stand-in base images (cached) + build + checks
#
# Docker Hub is not reachable from the test machines: scripts/image-standins.sh makes local
# images with exactly the names the Dockerfile uses (see there). Checks, each failing the run
# with one line:
#   - every process in the container runs as uid 1000, PID 1 is /app/entrypoint;
#   - the gateway answers /readyz 200 on 7860 (through the front door) with /data absent, read-only, root-owned and writable, and
#     the data dir chosen is logged as expected;
#   - `podman stop` -> exit 0 with a final backup in a mounted backup folder
#     (ENTRYPOINT_BACKUP_DIR); a second container on the same folder restores it;
#   - `IMAGE status --json`, `IMAGE --help`, `IMAGE backup` reach entrypoint (no node wrapper);
#   - without OPENCLAW_GATEWAY_TOKEN the container exits non-zero with the one-line message;
#   - the baked Node compile cache: start -> /healthz with it and without it (a tmpfs over
#     /tmp hides it), same run; the image size.
# If podman cannot run at all, it fails saying so (never a silent pass).
set -euo pipefail
cd "$(dirname "$0")/.."

export OPENCLAW_SPACE_CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}"
IMAGE="${OPENCLAW_SPACE_IMAGE:-localhost/openclaw-space:test}"
TOKEN=image-test-token-not-a-secret
DEADLINE=180 # seconds for a container to answer /healthz (2 loaded cores: ~10-20 s)

say() { echo "image-test: $*" >&2; }
die() { echo "image-test: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (rootful podman, debootstrap); run it as root or skip it"

say "setup: podman and the stand-in base images"
export CONTAINERS_CONF
CONTAINERS_CONF="$(scripts/image-deps.sh)" || die "podman is not usable on this machine (see above)"
scripts/image-standins.sh || die "could not make the stand-in base images (see above)"
read -r UL_N UL_U < "$OPENCLAW_SPACE_CACHE/image/ulimits"
ULIMITS=(--ulimit "nofile=$UL_N:$UL_N" --ulimit "nproc=$UL_U:$UL_U")

WORK="$(mktemp -d /tmp/image-test.XXXXXX)"
NAMES=()
declare -A STARTED
cleanup() {
  for n in "${NAMES[@]}"; do podman rm -f -t 0 "$n" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- build -----------------------------------------------------------------------------------
say "building $IMAGE from ./Dockerfile (log: $WORK/build.log)"
t0=$(date +%s)
if ! podman build --pull=never "${ULIMITS[@]}" -t "$IMAGE" -f Dockerfile . > "$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  die "podman build of ./Dockerfile failed (last lines above)"
fi
# Layers of earlier builds that no tag uses any more: they would fill the disk run after run.
podman image prune -f >/dev/null 2>&1 || true
say "built in $(( $(date +%s) - t0 )) s; image size $(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000 )) MB"

# --- helpers ---------------------------------------------------------------------------------
# start NAME [podman run args...]: a detached container of the image, offline, with the token.
start() {
  local name="$1"; shift
  NAMES+=("$name")
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  STARTED[$name]="$(date +%s.%N)"
  podman run -d --name "$name" --network=none "${ULIMITS[@]}" -e "OPENCLAW_GATEWAY_TOKEN=$TOKEN" "$@" "$IMAGE" >/dev/null \
    || die "$name: podman run failed"
}

# healthz NAME [PATH]: poll PATH inside the container until 200 (deadline); prints seconds
# since `podman run` was called. The default, /readyz, is the gateway's own answer through the
# front door (whose /healthz answers from its first second, before the gateway).
healthz() {
  local name="$1" path="${2:-/readyz}" t_start="${STARTED[$1]}" code
  while :; do
    code="$(podman exec "$name" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:7860$path" 2>/dev/null || true)"
    [ "$code" = 200 ] && break
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      podman logs "$name" 2>&1 | tail -20 >&2
      die "$name: the container exited before $path answered (logs above)"
    fi
    if awk -v s="$t_start" -v n="$(date +%s.%N)" -v d="$DEADLINE" 'BEGIN { exit !(n - s > d) }'; then
      podman logs "$name" 2>&1 | tail -20 >&2
      die "$name: $path on 7860 did not answer 200 within $DEADLINE s (last: $code)"
    fi
    sleep 0.2
  done
  awk -v s="$t_start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'
}

# processes NAME: every process uid 1000, PID 1 is /app/entrypoint.
processes() {
  local name="$1" ps pid1
  ps="$(podman exec "$name" ps -eo uid=,pid=,args=)"
  if echo "$ps" | awk '$1 != 1000 { bad = 1 } END { exit !bad }'; then
    echo "$ps" >&2
    die "$name: a process does not run as uid 1000 (above)"
  fi
  pid1="$(podman exec "$name" cat /proc/1/cmdline | tr '\0' ' ')"
  case "$pid1" in
    "/app/entrypoint run ") ;;
    *) die "$name: PID 1 is '$pid1', expected '/app/entrypoint run'" ;;
  esac
}

# logged NAME TEXT: the container's log has a line containing TEXT (poll: logs are async).
logged() {
  local name="$1" text="$2" i
  for i in $(seq 1 50); do
    podman logs "$name" 2>&1 | grep -qF -- "$text" && return 0
    sleep 0.2
  done
  podman logs "$name" 2>&1 | tail -20 >&2
  die "$name: no log line with '$text' (logs above)"
}

dir_for() { # dir_for NAME OWNER MODE: a host folder to mount
  mkdir -p "$WORK/$1"
  chown "$2" "$WORK/$1"
  chmod "$3" "$WORK/$1"
  echo "$WORK/$1"
}


# --- one-shot commands reach entrypoint -----------------------------------------------------
# oneshot [podman run args] -- [command args]
oneshot() {
  local opts=()
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  podman run --rm --network=none "${ULIMITS[@]}" "${opts[@]}" "$IMAGE" "$@"
}

say "docker run IMAGE --help / status --json / no token"
help="$(oneshot -- --help 2>&1)" || die "IMAGE --help exited non-zero: $(echo "$help" | head -3)"
echo "$help" | grep -q "Usage: entrypoint" || die "IMAGE --help is not entrypoint's help: $(echo "$help" | head -3)"
status="$(oneshot -e "OPENCLAW_GATEWAY_TOKEN=$TOKEN" -- status --json 2>"$WORK/status.err")" \
  || die "IMAGE status --json exited non-zero: $(head -3 "$WORK/status.err")"
echo "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["data_dir"]["root"] == "/home/user", d["data_dir"]' \
  || die "IMAGE status --json: not JSON with data_dir.root /home/user: $(echo "$status" | head -c 300)"
echo "$status" | grep -qF "$TOKEN" && die "IMAGE status --json shows the gateway token"
if out="$(oneshot 2>&1)"; then die "IMAGE without OPENCLAW_GATEWAY_TOKEN exited 0"; fi
[ "$(echo "$out" | grep -c .)" = 1 ] && echo "$out" | grep -q "OPENCLAW_GATEWAY_TOKEN: not set" \
  || die "IMAGE without OPENCLAW_GATEWAY_TOKEN: expected one line naming it, got: $out"

# --- the service: /data in its four states, compile cache warm and cold ----------------------
# absent: the default; it also backs up to a mounted folder and is stopped, then restored.
backups="$(dir_for backups 1000:1000 0755)"
start c-absent -v "$backups:/backups" -e ENTRYPOINT_BACKUP_DIR=/backups
warm1="$(healthz c-absent)"
processes c-absent
logged c-absent "data dir: /data is not usable"
podman exec c-absent sh -c 'echo image-test-marker > /home/user/.openclaw/image-test-marker' \
  || die "c-absent: cannot write into /home/user/.openclaw"
t0=$(date +%s)
podman stop -t 30 c-absent >/dev/null
code="$(podman inspect --format '{{.State.ExitCode}}' c-absent)"
[ "$code" = 0 ] || { podman logs c-absent 2>&1 | tail -20 >&2; die "c-absent: podman stop -> exit $code, expected 0"; }
say "podman stop -> exit 0 after $(( $(date +%s) - t0 )) s"
logged c-absent "final backup"
[ -s "$backups/latest_backup.tar.gz" ] && [ -s "$backups/latest_backup.sha256" ] \
  || die "no latest_backup.tar.gz + .sha256 in the mounted backup folder after podman stop"
tar -xzOf "$backups/latest_backup.tar.gz" .openclaw/image-test-marker 2>/dev/null | grep -q image-test-marker \
  || die "the final backup does not hold the file written just before podman stop"

start c-restore -v "$backups:/backups" -e ENTRYPOINT_BACKUP_DIR=/backups
warm2="$(healthz c-restore)"
logged c-restore "restored"
podman exec c-restore cat /home/user/.openclaw/image-test-marker | grep -q image-test-marker \
  || die "c-restore: the second container did not restore the first one's state"
podman rm -f -t 0 c-restore >/dev/null

ro="$(dir_for data-ro 1000:1000 0755)"
start c-readonly -v "$ro:/data:ro"
warm3="$(healthz c-readonly)"
processes c-readonly
logged c-readonly "data dir: /data is not usable"
podman rm -f -t 0 c-readonly >/dev/null

rootowned="$(dir_for data-root 0:0 0755)"
start c-rootowned -v "$rootowned:/data"
warm4="$(healthz c-rootowned)"
logged c-rootowned "data dir: /data is not usable"
podman rm -f -t 0 c-rootowned >/dev/null

writable="$(dir_for data-rw 1000:1000 0755)"
start c-writable -v "$writable:/data"
warm5="$(healthz c-writable)"
processes c-writable
logged c-writable "data dir: /data is writable"
podman stop -t 30 c-writable >/dev/null
[ -d "$writable/.openclaw" ] || die "c-writable: no state in the writable /data"

# `IMAGE backup` with a store, on the state the writable run left.
backups2="$(dir_for backups2 1000:1000 0755)"
out="$(oneshot -v "$writable:/data" -v "$backups2:/backups" -e ENTRYPOINT_BACKUP_DIR=/backups -- backup 2>&1)" \
  || die "IMAGE backup exited non-zero: $out"
[ -s "$backups2/latest_backup.tar.gz" ] || die "IMAGE backup wrote no latest_backup.tar.gz: $out"

# Cold: a tmpfs over /tmp hides the baked compile cache; two runs each way, interleaved.
podman run --rm --network=none "${ULIMITS[@]}" --entrypoint sh "$IMAGE" -c \
  'find /tmp/node-compile-cache -type f -size +0 | head -1 | grep -q .' \
  || die "the image has no baked Node compile cache under /tmp/node-compile-cache"
# /readyz too: it answers once the gateway loaded most of what it loads at start.
cold=() warm=()
for round in 1 2; do
  start "c-cold$round" --tmpfs /tmp:mode=1777
  cold+=("$(healthz "c-cold$round" /healthz)/$(healthz "c-cold$round" /readyz)")
  podman rm -f -t 0 "c-cold$round" >/dev/null
  start "c-warm$round"
  warm+=("$(healthz "c-warm$round" /healthz)/$(healthz "c-warm$round" /readyz)")
  podman rm -f -t 0 "c-warm$round" >/dev/null
done
say "start -> the gateway's /readyz (through the front door) with the warm compile cache, data-dir runs: $warm1 $warm2 $warm3 $warm4 $warm5 s"
say "start -> front door /healthz / gateway /readyz, same run, interleaved: warm cache ${warm[*]} s; cold (tmpfs over /tmp) ${cold[*]} s"
say "image size $(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000 )) MB"
say "ok"
