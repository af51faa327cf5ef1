"""Micro-benchmark helper for bench/: not a test, no printing; the caller reports."""

from __future__ import annotations

import hashlib
import random
import time

from gateway.transparency.merkle import MemoryNodeStore, inclusion_proof, verify_inclusion


def bench_proofs(n: int, samples: int = 2000, seed: int = 1) -> dict[str, float]:
    """Build ``n`` leaves in a MemoryNodeStore and time inclusion proofs at size ``n``.

    Returns seconds to build, microseconds per append, microseconds per proof and per
    verification, and node reads per proof (mean), so bench/ can print ratios.
    """
    if n < 1 or samples < 1:
        raise ValueError("n and samples must be positive")
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    store = MemoryNodeStore()
    t0 = time.perf_counter()
    for leaf in leaves:
        store.append(leaf)
    build = time.perf_counter() - t0

    reads = 0

    def counting_get(level: int, index: int) -> bytes:
        nonlocal reads
        reads += 1
        return store.get_node(level, index)

    rng = random.Random(seed)
    indices = [rng.randrange(n) for _ in range(samples)]
    root = store.root()
    t0 = time.perf_counter()
    proofs = [inclusion_proof(i, n, counting_get) for i in indices]
    prove = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok = all(verify_inclusion(leaves[i], i, n, p, root) for i, p in zip(indices, proofs,
                                                                          strict=True))
    check = time.perf_counter() - t0
    if not ok:
        raise AssertionError("a proof did not verify")
    return {
        "n": float(n),
        "build_s": build,
        "append_us": build / n * 1e6,
        "proof_us": prove / samples * 1e6,
        "verify_us": check / samples * 1e6,
        "reads_per_proof": reads / samples,
    }
