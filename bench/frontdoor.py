#!/usr/bin/env python3
"""Front door overhead, direct vs through it, in one run against the real gateway.

    bench/frontdoor.py ENTRYPOINT_BIN OPENCLAW_BIN_DIR

Starts `entrypoint run` (front door on PORT, gateway on loopback GW_PORT), then measures:
exec -> first answer on PORT; HTTP GET /healthz latency (keep-alive) direct vs door; WebSocket
ping -> pong round trips direct vs door; the entrypoint's RSS with 200 WebSockets held open
through the door. Prints a table with the targets of issue 17. Stdlib only.
"""

import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOKEN = "bench-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(port, path, timeout=2):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return None
    finally:
        c.close()


def http_latencies(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        out.append(time.perf_counter() - t)
    c.close()
    return out


def ws_open(port, auth=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise OSError(head.split(b"\r\n")[0].decode())
    rest = head.split(b"\r\n\r\n", 1)[1]
    read_frame(s, rest)  # the gateway's connect.challenge
    if auth:
        # A backend client's `connect` with the token (as src/pairing.rs does): an
        # authenticated socket, which the gateway's limit on unauthenticated ones does not count.
        connect = json.dumps({
            "type": "req", "id": "connect", "method": "connect",
            "params": {
                "minProtocol": 4, "maxProtocol": 4,
                "client": {"id": "gateway-client", "mode": "backend", "platform": "linux",
                           "version": "bench", "displayName": "front door bench"},
                "role": "operator", "scopes": ["operator.read"], "caps": [],
                "auth": {"token": TOKEN},
            },
        }).encode()
        send_frame(s, 0x1, connect)
        while True:
            op, data = read_frame(s)
            if op == 0x8:
                raise OSError("closed by the gateway")
            if op == 0x1:
                msg = json.loads(data)
                if msg.get("type") == "res" and msg.get("id") == "connect":
                    if not msg.get("ok"):
                        raise OSError(f"connect refused: {msg.get('error')}")
                    break
    return s


def send_frame(s, op, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | op, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | op, 0x80 | 127]) + n.to_bytes(8, "big")
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read_frame(s, buf=b""):
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk

    need(2)
    op, ln = buf[0] & 0x0F, buf[1] & 0x7F
    off = 2
    if ln == 126:
        need(4)
        ln, off = int.from_bytes(buf[2:4], "big"), 4
    elif ln == 127:
        need(10)
        ln, off = int.from_bytes(buf[2:10], "big"), 10
    need(off + ln)
    return op, buf[off : off + ln]


def ws_ping_rtts(s, n):
    out = []
    mask = b"\x01\x02\x03\x04"
    for i in range(n):
        payload = i.to_bytes(4, "big")
        frame = bytes([0x89, 0x80 | 4]) + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(payload))
        t = time.perf_counter()
        s.sendall(frame)
        while True:
            op, data = read_frame(s)
            if op == 0xA and data == payload:
                break
        out.append(time.perf_counter() - t)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    bin_path, oc_dir = sys.argv[1], sys.argv[2]
    port, gw = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="frontdoor-bench-")
    env = {
        "PATH": f"{oc_dir}:{os.environ.get('PATH', '')}",
        "HOME": tmp,
        "ENTRYPOINT_DATA_DIR": os.path.join(tmp, "data"),
        "PORT": str(port),
        "ENTRYPOINT_GATEWAY_PORT": str(gw),
        "OPENCLAW_GATEWAY_TOKEN": TOKEN,
        "OPENCLAW_HANDSHAKE_TIMEOUT_MS": "120000",
        "OPENCLAW_CONFIG_PATCH": '{"plugins":{"entries":{"huggingface":{"config":{"discovery":{"enabled":false}}}}}}',
        "ENTRYPOINT_AUTO_PAIR": "false",
        "ENTRYPOINT_LOG": "warn",
    }
    os.makedirs(env["ENTRYPOINT_DATA_DIR"])
    t0 = time.perf_counter()
    p = subprocess.Popen([bin_path, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while first is None:
        if get(port, "/healthz", timeout=0.5) is not None:
            first = time.perf_counter() - t0
        elif time.perf_counter() - t0 > 10:
            sys.exit("no answer on PORT within 10 s")
        else:
            time.sleep(0.002)
    deadline = time.time() + 180
    while get(port, "/") != 200:
        if time.time() > deadline or p.poll() is not None:
            sys.exit("the gateway did not come up through the front door")
        time.sleep(0.5)
    time.sleep(5)  # let the gateway's start-up work settle
    try:
        rows = []
        direct, door = [], []
        for _ in range(5):
            direct += http_latencies(gw, 400)
            door += http_latencies(port, 400)
        for name, p_ in (("p50", 0.5), ("p99", 0.99)):
            d, f = pct(direct, p_) * 1e3, pct(door, p_) * 1e3
            target = "<= 1 ms" if name == "p50" else "<= 5 ms"
            rows.append((f"HTTP GET /healthz {name}", d, f, f - d, target))
        ws_d, ws_f = ws_open(gw), ws_open(port)
        rd, rf = [], []
        for _ in range(5):
            rd += ws_ping_rtts(ws_d, 200)
            rf += ws_ping_rtts(ws_f, 200)
        d, f = pct(rd, 0.5) * 1e3, pct(rf, 0.5) * 1e3
        rows.append(("WebSocket ping RTT p50", d, f, f - d, "<= 0.5 ms"))
        ws_d.close()
        ws_f.close()
        before = rss_kb(p.pid)
        held, refused = [], []
        for _ in range(200):
            try:
                held.append(ws_open(port, auth=True))
            except OSError as e:
                refused.append(str(e))
        if refused:
            print(f"{len(refused)} of 200 WebSockets through the door refused, first: {refused[0]}")
            for s in held:
                s.close()
            direct_held, direct_refused = [], 0
            for _ in range(200):
                try:
                    direct_held.append(ws_open(gw, auth=True))
                except OSError:
                    direct_refused += 1
            print(f"{direct_refused} of 200 refused by the gateway directly (its own limit)")
            for s in direct_held:
                s.close()
            held = []
        time.sleep(1)
        after = rss_kb(p.pid)
        print(f"\nentrypoint {bin_path}; gateway on 127.0.0.1:{gw}, front door on :{port}\n")
        print(f"{'measure':34} {'direct ms':>10} {'door ms':>10} {'overhead':>10}  target")
        for name, d, f, o, t in rows:
            print(f"{name:34} {d:10.3f} {f:10.3f} {o:10.3f}  {t}")
        print(f"{'200 WebSockets held: extra RSS':34} {'':>10} {'':>10} {(after - before) / 1024:9.1f}M  <= 20 MB (entrypoint {before // 1024} -> {after // 1024} MB)")
        print(f"{'exec -> first answer on PORT':34} {'':>10} {first * 1e3:10.1f} {'':>10}  <= 100 ms")
        for s in held:
            s.close()
    finally:
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    main()
