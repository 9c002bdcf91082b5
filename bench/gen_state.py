#!/usr/bin/env python3
"""Generate a synthetic OpenClaw state dir shaped like facts/backup.md section 3:
~500 MB in ~17k files: 15,000 small workspace text/code files, 2,000 JSONL transcripts,
config JSON, a ~100 MB WAL-mode SQLite DB (text rows + incompressible 1.5 KB "embeddings"),
4 x 55 MB binaries (half random, half repetitive). Seeded: the same tree every time.

usage: gen_state.py STATE_DIR
"""
import json, os, random, sqlite3, sys

root = sys.argv[1]
rnd = random.Random(20261121)
words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(4000)]
lines = [" ".join(rnd.choice(words) for _ in range(rnd.randint(4, 16))) for _ in range(20000)]

def text(n):
    out, size = [], 0
    while size < n:
        l = lines[rnd.randrange(len(lines))]
        out.append(l)
        size += len(l) + 1
    return "\n".join(out) + "\n"

def put(rel, data, mode="w"):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, mode) as f:
        f.write(data)

put("openclaw.json", json.dumps({"gateway": {"mode": "local", "port": 7860}, "agents": {"defaults": {"model": "x"}}}, indent=2))
put("config-journal-fingerprint.key", os.urandom(32), "wb")
for i in range(15000):
    ext = [".md", ".py", ".ts", ".json", ".txt"][i % 5]
    put(f"workspace/proj{i % 40:02d}/dir{i % 7}/file{i:05d}{ext}", text(rnd.randint(1500, 11000)))
for i in range(2000):
    msgs = []
    size, target = 0, rnd.randint(15000, 52000)
    while size < target:
        m = json.dumps({"role": rnd.choice(["user", "assistant"]), "content": text(rnd.randint(100, 900)), "ts": 1790000000 + size})
        msgs.append(m)
        size += len(m) + 1
    put(f"agents/main/sessions/s{i:05d}.jsonl", "\n".join(msgs) + "\n")
for i in range(4):
    half = 55 * 1000 * 1000 // 2
    pattern = (bytes(range(256)) * 64 + os.urandom(64)) * (half // (256 * 64 + 64) + 1)
    put(f"media/blob{i}.bin", os.urandom(half) + pattern[:half], "wb")

db = os.path.join(root, "state/openclaw.sqlite")
os.makedirs(os.path.dirname(db), exist_ok=True)
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
c.execute("""CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL,
  expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT""")
c.execute("INSERT INTO state_leases VALUES ('gateway-owner','global','o',1,1,'{}',1,1)")
c.execute("CREATE TABLE memory (id INTEGER PRIMARY KEY, body TEXT, embedding BLOB)")
for chunk in range(50):
    c.executemany("INSERT INTO memory (body, embedding) VALUES (?, ?)",
                  [(text(400), os.urandom(1536)) for _ in range(1000)])
    c.commit()
c.close()
