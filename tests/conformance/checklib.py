"""What the conformance scripts (hf_client_check.py, hf_bucket_check.py) share."""

import hashlib


def pseudo_random(n: int, seed: int) -> bytes:
    """Deterministic, incompressible bytes (a sha256 chain from `seed`)."""
    out = bytearray()
    block = seed.to_bytes(8, "little")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def step(name: str) -> None:
    """One `ok <step>` line: the Rust side looks for these."""
    print(f"ok {name}", flush=True)
