#!/usr/bin/env bash
# Supervisor numbers (release build; not run in CI):
#   - idle RSS and CPU of the entrypoint while its child sleeps (the loop must not spin);
#   - exec-to-child time: from exec of `entrypoint run -- bash -c ...` to the child's first
#     action, vs exec of the same `bash -c` directly (baseline), mean of RUNS runs.
# Runs the entrypoint directly (subreaper mode); with root it also runs it as PID 1 of a new
# PID namespace. Usage: bench/supervisor.sh   (RUNS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/entrypoint
RUNS=${RUNS:-20}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/data"
# A clean environment: no store, quiet logs.
ENV=(env -i PATH="$PATH" HOME="$work/home" ENTRYPOINT_DATA_DIR="$work/data" ENTRYPOINT_LOG=warn)

# --- idle RSS / CPU -------------------------------------------------------------------------
"${ENV[@]}" "$BIN" run -- sleep 1000 &
ep=$!
child=""
for _ in $(seq 200); do # wait (bounded) for the child to be spawned
    child=$(cat /proc/$ep/task/*/children 2>/dev/null | awk '{print $1; exit}')
    [ -n "$child" ] && [ "$(cat /proc/$child/comm 2>/dev/null)" = sleep ] && break
    sleep 0.05
done
[ -n "$child" ] || { echo "the child did not start" >&2; kill -KILL $ep; exit 1; }
cpu() { awk '{print $14 + $15}' /proc/$ep/stat; } # utime + stime, clock ticks
c0=$(cpu)
sleep 5 # measuring an idle period is the point here
c1=$(cpu)
rss=$(awk '/^VmRSS/{print $2}' /proc/$ep/status)
hwm=$(awk '/^VmHWM/{print $2}' /proc/$ep/status)
threads=$(awk '/^Threads/{print $2}' /proc/$ep/status)
kill -TERM $ep
wait $ep || true

# --- exec -> child's first action -----------------------------------------------------------
# Prints the microseconds between the outer shell's exec of "$@" and the child's echo.
one() {
    bash -c 'echo "$EPOCHREALTIME"; exec "$@"' _ "$@" |
        { read -r t0; read -r t1; awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%d\n", (b-a)*1e6}'; }
}
mean_ms() { # command... ; mean over RUNS runs, in ms
    local sum=0 us
    for _ in $(seq "$RUNS"); do
        us=$("$@")
        sum=$((sum + us))
    done
    awk -v s="$sum" -v n="$RUNS" 'BEGIN{printf "%.2f", s/n/1000}'
}
CHILD=(bash -c 'echo "$EPOCHREALTIME"')
base=$(mean_ms one "${ENV[@]}" "${CHILD[@]}")
via=$(mean_ms one "${ENV[@]}" "$BIN" run -- "${CHILD[@]}")
ns=""
if [ "$(id -u)" = 0 ] && unshare --pid --fork --mount-proc true 2>/dev/null; then
    ns=$(mean_ms one unshare --pid --fork --mount-proc "${ENV[@]}" "$BIN" run -- "${CHILD[@]}")
    ns_base=$(mean_ms one unshare --pid --fork --mount-proc "${ENV[@]}" "${CHILD[@]}")
fi

printf '| %-58s | %12s |\n' metric value
printf '| %-58s | %12s |\n' "$(printf -- '-%.0s' {1..58})" "------------"
printf '| %-58s | %9s kB |\n' "idle VmRSS, entrypoint with a sleeping child" "$rss"
printf '| %-58s | %9s kB |\n' "peak VmHWM (startup included)" "$hwm"
printf '| %-58s | %12s |\n' "threads" "$threads"
printf '| %-58s | %8s ticks |\n' "CPU used while idle for 5 s (utime+stime)" "$((c1 - c0))"
printf '| %-58s | %9s ms |\n' "exec -> child's first action: bash directly (mean of $RUNS)" "$base"
printf '| %-58s | %9s ms |\n' "exec -> child's first action: via entrypoint (mean of $RUNS)" "$via"
if [ -n "$ns" ]; then
    printf '| %-58s | %9s ms |\n' "same in a new PID namespace: bash directly" "$ns_base"
    printf '| %-58s | %9s ms |\n' "same in a new PID namespace: via entrypoint as PID 1" "$ns"
fi
