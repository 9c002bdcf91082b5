#!/usr/bin/env python3
"""A full-speed SQLite writer for the torture harness (tests/torture.rs).

usage: writer.py DB wal|rollback STOP_FILE [PREFILL_ROWS]

Writes until STOP_FILE exists, keeping an invariant `check.py` verifies:
- wal: tables `a` and `b` always hold the same ids and values (sum(a.v) = sum(b.v), equal
  counts); rows of `a` carry 4 KB random blobs. Inserts, deletes, growth and shrink, and every
  few dozen transactions `wal_checkpoint(RESTART)` or `(TRUNCATE)`, sometimes VACUUM.
- rollback: 50 accounts whose balances always sum to 0 (transfers), plus a `junk` table grown
  and shrunk with random blobs, and a VACUUM now and then.
Prints "ready" once it has committed 20 transactions, so the harness starts backups under load.
"""
import os
import random
import sqlite3
import sys

db, mode, stop = sys.argv[1], sys.argv[2], sys.argv[3]
prefill = int(sys.argv[4]) if len(sys.argv) > 4 else 0
rnd = random.Random(os.getpid())
c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute("PRAGMA busy_timeout = 30000")
if mode == "wal":
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.execute("CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY, v INTEGER, blob BLOB)")
    c.execute("CREATE TABLE IF NOT EXISTS b (id INTEGER PRIMARY KEY, v INTEGER)")
    c.execute("CREATE INDEX IF NOT EXISTS a_v ON a (v)")
    # A big database (PREFILL_ROWS x 4 KB), so a kill lands in the middle of its copy often.
    while c.execute("SELECT count(*) FROM a").fetchone()[0] < prefill:
        c.execute("BEGIN")
        for _ in range(500):
            v = rnd.randint(-1000, 1000)
            cur = c.execute("INSERT INTO a (v, blob) VALUES (?, ?)", (v, os.urandom(4096)))
            c.execute("INSERT INTO b (id, v) VALUES (?, ?)", (cur.lastrowid, v))
        c.execute("COMMIT")
else:
    c.execute("PRAGMA journal_mode=DELETE")
    c.execute("CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, bal INTEGER)")
    c.execute("CREATE TABLE IF NOT EXISTS junk (id INTEGER PRIMARY KEY, blob BLOB)")
    if c.execute("SELECT count(*) FROM acct").fetchone()[0] == 0:
        c.executemany("INSERT INTO acct VALUES (?, 0)", [(i,) for i in range(50)])


def wal_txn(n):
    c.execute("BEGIN IMMEDIATE")
    rows = c.execute("SELECT count(*) FROM a").fetchone()[0]
    # Grow to ~600 rows (~2.5 MB), then shrink hard, and again.
    shrinking = (n // 400) % 2 == 1
    if shrinking and rows > 20 + prefill:
        ids = [r[0] for r in c.execute("SELECT id FROM a ORDER BY random() LIMIT 15")]
        c.executemany("DELETE FROM a WHERE id = ?", [(i,) for i in ids])
        c.executemany("DELETE FROM b WHERE id = ?", [(i,) for i in ids])
    else:
        for _ in range(rnd.randint(1, 4)):
            v = rnd.randint(-1000, 1000)
            cur = c.execute("INSERT INTO a (v, blob) VALUES (?, ?)", (v, os.urandom(4096)))
            c.execute("INSERT INTO b (id, v) VALUES (?, ?)", (cur.lastrowid, v))
        if rows > 5 and rnd.random() < 0.3:
            (i,) = c.execute("SELECT id FROM a ORDER BY random() LIMIT 1").fetchone()
            c.execute("DELETE FROM a WHERE id = ?", (i,))
            c.execute("DELETE FROM b WHERE id = ?", (i,))
    c.execute("COMMIT")
    if n % 25 == 0:
        c.execute("PRAGMA wal_checkpoint(%s)" % rnd.choice(["RESTART", "TRUNCATE", "PASSIVE"]))
    if n % 300 == 299:
        c.execute("VACUUM")


def rollback_txn(n):
    c.execute("BEGIN IMMEDIATE")
    for _ in range(rnd.randint(1, 8)):
        x, y = rnd.sample(range(50), 2)
        amt = rnd.randint(1, 100)
        c.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (amt, x))
        c.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (amt, y))
    if (n // 200) % 2 == 0:
        c.execute("INSERT INTO junk (blob) VALUES (?)", (os.urandom(rnd.randint(500, 6000)),))
    else:
        c.execute("DELETE FROM junk WHERE id IN (SELECT id FROM junk ORDER BY random() LIMIT 2)")
    c.execute("COMMIT")
    if n % 150 == 149:
        c.execute("VACUUM")


txn = wal_txn if mode == "wal" else rollback_txn
n = 0
while not os.path.exists(stop):
    try:
        txn(n)
    except sqlite3.OperationalError as e:
        # "database is locked" past the busy timeout: roll back and go on; the invariant holds.
        if c.in_transaction:
            c.execute("ROLLBACK")
        print("writer: %s" % e, file=sys.stderr)
    n += 1
    if n == 20:
        print("ready", flush=True)
print("done %d" % n, flush=True)
