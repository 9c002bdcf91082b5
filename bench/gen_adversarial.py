#!/usr/bin/env python3
"""Generate an adversarial state dir for the archive's store-or-compress decision (issue 13):
data whose redundancy a small sample cannot see. Seeded: the same tree every time.

- media/repeat4k.bin: one random 4 KiB block repeated to 40 MiB (every 4 KiB window looks
  random; gzip -6 shrinks the file ~150x);
- notes/big.txt: 12 MiB of text whose first 256 KiB are random;
- media/blocks.bin: 32 MiB of 64 KiB blocks, 30 % of them random, the others one 8 KiB
  random block repeated;
- a little ordinary text and config, so the tree looks like a state dir.

usage: gen_adversarial.py STATE_DIR
"""
import json, os, random, sys

root = sys.argv[1]
rnd = random.Random(20261313)


def noise(n):
    return rnd.getrandbits(8 * n).to_bytes(n, "little")


words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(4000)]
lines = [" ".join(rnd.choice(words) for _ in range(rnd.randint(4, 16))) for _ in range(20000)]


def text(n):
    out, size = [], 0
    while size < n:
        l = lines[rnd.randrange(len(lines))]
        out.append(l)
        size += len(l) + 1
    return ("\n".join(out) + "\n").encode()[:n]


def put(rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


MiB, KiB = 1 << 20, 1 << 10
put("openclaw.json", json.dumps({"gateway": {"mode": "local", "port": 7860}}, indent=2).encode())
put("media/repeat4k.bin", noise(4 * KiB) * (40 * MiB // (4 * KiB)))
put("notes/big.txt", noise(256 * KiB) + text(12 * MiB - 256 * KiB))
block = noise(8 * KiB) * 8
put("media/blocks.bin", b"".join(noise(64 * KiB) if rnd.random() < 0.3 else block for _ in range(32 * MiB // (64 * KiB))))
for i in range(200):
    put(f"workspace/notes/n{i:03d}.md", text(rnd.randint(1500, 11000)))
