#!/usr/bin/env bash
# Backup/restore benchmark: `entrypoint backup|restore` (dir store) against the seed method
# (`tar czf` + `sha256sum`; restore = `sha256sum -c` + `tar xzf`), in one run, on a synthetic
# ~500 MB / ~17k-file state dir (bench/gen_state.py), and full backups of an ~86 MB adversarial
# one (bench/gen_adversarial.py: redundancy a sample cannot see). Prints a table.
#
#   bench/backup.sh                     # uses $CARGO_TARGET_DIR/release/entrypoint (or target/)
#   BENCH_DIR=/tmp/x ENTRYPOINT_BIN=... bench/backup.sh
#
# Warm page cache throughout (the data is read once before timing). Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-/tmp/openclaw-bench}
BIN=${ENTRYPOINT_BIN:-${CARGO_TARGET_DIR:-target}/release/entrypoint}
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 1; }
TIME=/usr/bin/time

DATA=$DIR/data
if [ ! -f "$DIR/.generated" ]; then
  rm -rf "$DIR"; mkdir -p "$DATA"
  echo "generating the state dir in $DATA/.openclaw ..." >&2
  python3 bench/gen_state.py "$DATA/.openclaw"
  touch "$DIR/.generated"
fi
# Fresh bookkeeping and stores for every run; the generated tree is reused.
rm -rf "$DATA/.openclaw-space" "$DIR/store" "$DIR/base" "$DIR/r-base" "$DIR/r-ours" "$DIR"/*.time
mkdir -p "$DIR/base" "$DIR/r-base" "$DIR/r-ours"
find "$DATA/.openclaw" -type f -exec cat {} + > /dev/null   # warm the page cache

export ENTRYPOINT_DATA_DIR=$DATA ENTRYPOINT_BACKUP_DIR=$DIR/store HOME=$DIR ENTRYPOINT_LOG=warn
unset HF_DATASET HF_TOKEN || true

# t NAME CMD...: run under GNU time, keep wall seconds and max RSS (KB). Dirty pages of the
# step before are flushed first (`sync`), so no step pays for another's writeback (the seed
# method never fsyncs; ours does, inside its own time).
t() { local name=$1; shift; sync; $TIME -f "%e %M %U %S" -o "$DIR/$name.time" "$@" > "$DIR/$name.out"; }
# Steps run 3 times (NAME.1..3) are reported by their median wall time (and that run's CPU/RSS).
med() { for i in 1 2 3; do echo "$(cut -d' ' -f1 < "$DIR/$1.$i.time") $i"; done | sort -n | sed -n 2p | cut -d' ' -f2; }
pick() { cp "$DIR/$1.$(med "$1").time" "$DIR/$1.time"; cp "$DIR/$1.$(med "$1").out" "$DIR/$1.out"; }
wall() { cut -d' ' -f1 < "$DIR/$1.time"; }
cpu() { awk '{printf "%.2f", $3 + $4}' < "$DIR/$1.time"; }
rss() { echo $(( $(cut -d' ' -f2 < "$DIR/$1.time") / 1024 )); }

files=$(find "$DATA/.openclaw" -type f | wc -l)
mb=$(du -sm "$DATA/.openclaw" | cut -f1)


# change N: a small change (a few files + a few SQLite rows, different for each N).
change() {
python3 - "$DATA/.openclaw" "$1" <<'PY'
import json, os, sqlite3, sys
root, i = sys.argv[1], int(sys.argv[2])
with open(os.path.join(root, f"agents/main/sessions/s{7 * i:05d}.jsonl"), "a") as f:
    for j in range(3):
        f.write(json.dumps({"role": "user", "content": f"three more messages {i}.{j}"}) + "\n")
with open(os.path.join(root, f"agents/main/sessions/s9999{i}.jsonl"), "w") as f:
    f.write((json.dumps({"role": "assistant", "content": f"new transcript {i} " * 20}) + "\n") * 60)
p = os.path.join(root, "openclaw.json")
cfg = json.load(open(p)); cfg["gateway"]["port"] = 7860 + i; json.dump(cfg, open(p, "w"), indent=2)
c = sqlite3.connect(os.path.join(root, "state/openclaw.sqlite"))
c.executemany("INSERT INTO memory (body, embedding) VALUES (?, ?)", [("new row", os.urandom(1536)) for _ in range(50)])
c.executemany("UPDATE memory SET body = ? WHERE id = ?", [(f"updated {i}", j * 997 + i) for j in range(1, 21)])
c.commit(); c.close()
PY
}

# 3 rounds of: the seed method (the baseline, measured beside ours so both see the same
# machine: a VM's speed drifts), then ours from scratch (no member cache, empty store): a full
# backup, then a small change and the backup right after it (the store then holds one version).
for i in 1 2 3; do
  t base_backup.$i sh -c "cd '$DATA' && tar czf '$DIR/base/latest_backup.tar.gz' .openclaw && cd '$DIR/base' && sha256sum latest_backup.tar.gz > latest_backup.sha256"
  base_size=$(stat -c %s "$DIR/base/latest_backup.tar.gz")
  rm -rf "$DATA/.openclaw-space" "$DIR/store"
  t full.$i "$BIN" backup
  full_size=$(stat -L -c %s "$DIR/store/latest_backup.tar.gz")
  cp "$DATA/.openclaw-space/members.json" "$DIR/members-v1.json"
  change "$i"
  t small_first.$i "$BIN" backup
  cp "$DATA/.openclaw-space/members.json" "$DIR/members-v2.json"
done
pick base_backup
pick full
pick small_first
for i in 1 2 3; do t nochange.$i "$BIN" backup; done
pick nochange
# Then 3 more small changes in a row: the steady state of a running Space.
for i in 1 2 3; do
  change $((3 + i))
  t small.$i "$BIN" backup
done
pick small
small_size=$(stat -L -c %s "$DIR/store/latest_backup.tar.gz")
# Re-upload estimate at member granularity, for the first small change: bytes of new members
# not present before.
reup=$(python3 - "$DIR/members-v1.json" "$DIR/members-v2.json" <<'PY'
import json, sys
a = {m["ukey"] for m in json.load(open(sys.argv[1]))["members"]}
b = json.load(open(sys.argv[2]))["members"]
new = sum(m["clen"] for m in b if m["ukey"] not in a); tot = sum(m["clen"] for m in b)
print(f"{new / 1e6:.2f} MB = {100 * new / tot:.2f} %")
PY
)
# Restores, alternating seed and ours, 3 rounds each. Creating 17k files right after others
# were deleted is slow on ext4 (its inode allocator skips recently freed inodes) by an amount
# that varies run to run; alternating gives both methods the same conditions.
for i in 1 2 3; do
  mkdir -p "$DIR/r-base/$i" "$DIR/r-ours/$i"
  t base_restore.$i sh -c "cd '$DIR/base' && sha256sum -c --quiet latest_backup.sha256 && cd '$DIR/r-base/$i' && tar xzf '$DIR/base/latest_backup.tar.gz'"
  ENTRYPOINT_DATA_DIR=$DIR/r-ours/$i t restore.$i "$BIN" restore
done
pick base_restore
pick restore

# The adversarial tree (bench/gen_adversarial.py: redundancy no sample can see): a full backup
# from scratch beside the seed's, 3 rounds; the archive must stay within 1.10x of `tar czf`.
ADV=$DIR/adv
if [ ! -f "$ADV/.generated" ]; then
  rm -rf "$ADV"; mkdir -p "$ADV/data"
  echo "generating the adversarial state dir in $ADV/data/.openclaw ..." >&2
  python3 bench/gen_adversarial.py "$ADV/data/.openclaw"
  touch "$ADV/.generated"
fi
rm -rf "$ADV/data/.openclaw-space" "$ADV/store" "$ADV/base"; mkdir -p "$ADV/base"
find "$ADV/data/.openclaw" -type f -exec cat {} + > /dev/null
for i in 1 2 3; do
  t adv_base.$i sh -c "cd '$ADV/data' && tar czf '$ADV/base/latest_backup.tar.gz' .openclaw && cd '$ADV/base' && sha256sum latest_backup.tar.gz > latest_backup.sha256"
  rm -rf "$ADV/data/.openclaw-space" "$ADV/store"
  ENTRYPOINT_DATA_DIR=$ADV/data ENTRYPOINT_BACKUP_DIR=$ADV/store t adv_full.$i "$BIN" backup
done
pick adv_base
pick adv_full
adv_base_size=$(stat -c %s "$ADV/base/latest_backup.tar.gz")
adv_size=$(stat -L -c %s "$ADV/store/latest_backup.tar.gz")
adv_mb=$(du -sm "$ADV/data/.openclaw" | cut -f1)

grep -q '"uploaded"' "$DIR/full.out" && grep -q '"uploaded"' "$DIR/adv_full.out" && grep -q '"skipped"' "$DIR/nochange.out" && grep -q '"uploaded"' "$DIR/small.out" \
  && grep -q '"uploaded"' "$DIR/small_first.out" \
  && grep -q '"restored"' "$DIR/restore.out" || { echo "unexpected outcome:"; cat "$DIR"/*.out; exit 1; }

bw=$(wall base_backup); rw=$(wall base_restore)
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }
printf '\nstate dir: %s MB in %s files; %s; load %s\n\n' "$mb" "$files" "$(nproc) cores" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-38s %9s %7s %8s %12s %10s %s\n' operation "wall s" "CPU s" "RSS MB" "output MB" "vs base" target
printf '%-38s %9s %7s %8s %12s %10s %s\n' "seed: tar czf + sha256sum (med 3)" "$bw" "$(cpu base_backup)" "$(rss base_backup)" "$(python3 -c "print(f'{$base_size/1e6:.1f}')")" 1 -
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: full backup (no cache, med 3)" "$(wall full)" "$(cpu full)" "$(rss full)" "$(python3 -c "print(f'{$full_size/1e6:.1f}')")" "$(ratio "$(wall full)" "$bw")" "<= 0.125, size <= 1.10x ($(ratio "$full_size" "$base_size")x)"
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: nothing changed (med 3)" "$(wall nochange)" "$(cpu nochange)" "$(rss nochange)" - "$(ratio "$(wall nochange)" "$bw")" "<= 0.1 s"
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: small change after full (med 3)" "$(wall small_first)" "$(cpu small_first)" "$(rss small_first)" - "$(ratio "$(wall small_first)" "$bw")" "<= 0.025; new bytes $reup (<= 3 %)"
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: small change (med 3 in a row)" "$(wall small)" "$(cpu small)" "$(rss small)" "$(python3 -c "print(f'{$small_size/1e6:.1f}')")" "$(ratio "$(wall small)" "$bw")" "<= 0.025"
printf '%-38s %9s %7s %8s %12s %10s %s\n' "seed: adversarial ${adv_mb} MB (med 3)" "$(wall adv_base)" "$(cpu adv_base)" "$(rss adv_base)" "$(python3 -c "print(f'{$adv_base_size/1e6:.1f}')")" 1 -
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: full backup, adversarial (med 3)" "$(wall adv_full)" "$(cpu adv_full)" "$(rss adv_full)" "$(python3 -c "print(f'{$adv_size/1e6:.1f}')")" "$(ratio "$(wall adv_full)" "$(wall adv_base)")" "<= 0.125, size <= 1.10x ($(ratio "$adv_size" "$adv_base_size")x)"
printf '%-38s %9s %7s %8s %12s %10s %s\n' "seed: sha256sum -c + tar xzf (med 3)" "$rw" "$(cpu base_restore)" "$(rss base_restore)" - 1 -
printf '%-38s %9s %7s %8s %12s %10s %s\n' "ours: restore (med 3)" "$(wall restore)" "$(cpu restore)" "$(rss restore)" - "$(ratio "$(wall restore)" "$rw")" "<= 0.8"
