"""(b) Blob encryption MB/s vs raw AES-256-GCM on the same 64 KiB buffers, same process."""

from __future__ import annotations

import json
import os
import time
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import keys

TOTAL = int(os.environ.get("BENCH_CRYPTO_MB", "256")) * 1024 * 1024
SEGMENT = 64 * 1024


def _raw(buffers: list[bytes]) -> float:
    aead = AESGCM(AESGCM.generate_key(256))
    nonce = os.urandom(12)
    started = time.perf_counter()
    for buf in buffers:
        aead.encrypt(nonce, buf, None)  # nonce reuse is fine for a speed baseline only
    return time.perf_counter() - started


def _blob(buffers: list[bytes], ring: keys.TenantKeys) -> float:
    writer, _ = ring.new_blob(uuid.uuid4())
    started = time.perf_counter()
    for buf in buffers:
        writer.update(buf)
    writer.finalize()
    return time.perf_counter() - started


def run() -> dict[str, float]:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        root = keys.FileRootKeyProvider.create(os.path.join(d, "root.key"))
        tenant = uuid.uuid4()
        ring = keys.open_tenant_keys(root, tenant, keys.new_tenant_keys(root, tenant))
    block = os.urandom(SEGMENT)
    buffers = [block] * (TOTAL // SEGMENT)
    raw_times, blob_times = [], []
    for _ in range(5):  # interleaved, best of each: drift hits both alike
        raw_times.append(_raw(buffers))
        blob_times.append(_blob(buffers, ring))
    mb = TOTAL / 1e6
    raw, blob = mb / min(raw_times), mb / min(blob_times)
    return {"raw_aes_gcm_mb_s": raw, "blob_mb_s": blob, "ratio": blob / raw}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
