"""Audit log: appends/s for one tenant's log with periodic checkpoints, and inclusion-proof
latency at 1 M entries, through `gateway.audit.AuditLog` on a real SQLite file (WAL,
synchronous=FULL, the gateway's group-commit writer).

Appends are measured three ways, each against a baseline from the same run on the same
database: bare INSERTs of the same entry bytes into a table with the same key, through the
same writer, at the same batching and concurrency (so the ratio is the cost of the Merkle
bookkeeping: head row, node reads and writes, canonical encoding):

* `single_ms`: one durable append at a time (every append waits for its own fsync);
* `concurrent`: 64 appends in flight, sharing group commits (the API's shape);
* `batched`: `append_many` of 100 entries, 8 in flight (a retention sweep's shape).

Checkpoints are signed every 1000 appends by the AuditLog's background task, as in the
gateway. Proofs: 1 M leaves are bulk-loaded into the node table with
`merkle.append_leaves` in large transactions (set-up, not measured), then
`AuditLog.inclusion_proof` (one node query per proof, on the gateway's reader connection)
is timed at random indices and each proof is verified.

Sizes: AUDIT_BENCH_PROOF_N (default 1_000_000), AUDIT_BENCH_APPENDS (default 20_000).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import keys
from gateway.core.clock import SystemClock
from gateway.store.sqlite import Database
from gateway.transparency import merkle
from gateway.transparency.entries import encode_entry
from gateway.transparency.log import AuditLog

PROOF_N = int(os.environ.get("AUDIT_BENCH_PROOF_N", "1000000"))
APPENDS = int(os.environ.get("AUDIT_BENCH_APPENDS", "20000"))
SINGLE = 200
CONCURRENCY = 64
BATCH = 100
BATCH_CONCURRENCY = 8
PROOF_SAMPLES = 2000

# A realistic entry: a diagnostic read with a staff actor, scope and details (~480 bytes).
ENTRY = {"kind": "diagnostic_read",
         "actor": {"type": "staff", "id": "staff-3fa9c2d81b04", "employer": "Example Ops GmbH",
                   "country": "DE"},
         "purpose": "fault_diagnostics", "reference": "OPS-4711",
         "scope": {"calls": ["0b7e0c2c-1f1c-4a9e-8d43-3c2b9f1a7e55"], "level": "technical"},
         "grant_id": "c1d2e3f4-0000-4000-8000-00000000abcd", "outcome": "served",
         "details": {"endpoint": "technical_view"}}
BARE_TABLE = ("CREATE TABLE IF NOT EXISTS bare_entries (tenant_id TEXT NOT NULL, seq INTEGER"
              " NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (tenant_id, seq)) WITHOUT ROWID")


async def _timed(coro_factory, n: int) -> float:
    started = time.perf_counter()
    await coro_factory()
    return n / (time.perf_counter() - started)


async def _appends(tmp: Path) -> dict[str, float]:
    db = await Database(tmp / "appends.sqlite3").open()
    await db.write(lambda tx: tx.execute(BARE_TABLE))
    key = keys.OperatorSigningKey.create(tmp / "signing.key")
    audit = AuditLog(db, key, SystemClock(), origin_prefix="bench.example.com",
                     checkpoint_every=1000)
    await audit.start()
    tenant = str(uuid.uuid4())
    bare_tenant = str(uuid.uuid4())
    data = encode_entry({**ENTRY, "seq": 0, "time": "2026-01-01T00:00:00.000000Z"})
    bare_seq = 0

    def next_bare(n: int) -> list[tuple[str, int, bytes]]:
        nonlocal bare_seq
        rows = [(bare_tenant, bare_seq + i, data) for i in range(n)]
        bare_seq += n
        return rows

    async def bare_insert(n: int) -> None:
        rows = next_bare(n)
        await db.write(lambda tx: tx.executemany(
            "INSERT INTO bare_entries (tenant_id, seq, entry) VALUES (?, ?, ?)", rows))

    async def workers(count: int, total: int, fn) -> None:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await fn()
        await asyncio.gather(*(worker() for _ in range(count)))

    out: dict[str, float] = {}
    try:
        # 1. One durable append at a time.
        started = time.perf_counter()
        for _ in range(SINGLE):
            await audit.append(tenant, ENTRY)
        out["single_ms"] = (time.perf_counter() - started) / SINGLE * 1000
        started = time.perf_counter()
        for _ in range(SINGLE):
            await bare_insert(1)
        out["bare_single_ms"] = (time.perf_counter() - started) / SINGLE * 1000

        # 2. Concurrent single appends sharing group commits.
        out["concurrent_per_s"] = await _timed(
            lambda: workers(CONCURRENCY, APPENDS, lambda: audit.append(tenant, ENTRY)), APPENDS)
        out["bare_concurrent_per_s"] = await _timed(
            lambda: workers(CONCURRENCY, APPENDS, lambda: bare_insert(1)), APPENDS)

        # 3. Batched appends.
        batches = APPENDS * 2 // BATCH
        out["batched_per_s"] = await _timed(
            lambda: workers(BATCH_CONCURRENCY, batches,
                            lambda: audit.append_many(tenant, [ENTRY] * BATCH)),
            batches * BATCH)
        out["bare_batched_per_s"] = await _timed(
            lambda: workers(BATCH_CONCURRENCY, batches, lambda: bare_insert(BATCH)),
            batches * BATCH)
        await audit.sign_due()
        size = await audit.size(tenant)
        checkpoints = await db.fetchone(
            "SELECT COUNT(*) AS n, MAX(size) AS top FROM audit_checkpoints WHERE tenant_id = ?",
            (tenant,))
        out["log_size"] = float(size)
        out["checkpoints"] = float(checkpoints["n"])
        if checkpoints["top"] != size:
            raise AssertionError("the last checkpoint does not cover the log")
    finally:
        await audit.stop()
        await db.close()
    return out


def _bulk_load(path: Path, tenant: str, n: int) -> float:
    """n leaves into audit_nodes via merkle.append_leaves, 100k per transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # set-up only; nothing is measured here

    def get_node(level: int, index: int) -> bytes:
        row = conn.execute("SELECT hash FROM audit_nodes WHERE tenant_id = ? AND level = ?"
                           " AND idx = ?", (tenant, level, index)).fetchone()
        return bytes(row[0])

    started = time.perf_counter()
    size, step = 0, 100_000
    while size < n:
        count = min(step, n - size)
        leaves = [hashlib.sha256(b"\x00" + (size + i).to_bytes(8, "big")).digest()
                  for i in range(count)]
        nodes = merkle.append_leaves(size, leaves, get_node)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO audit_nodes (tenant_id, level, idx, hash) VALUES"
                         " (?, ?, ?, ?)", [(tenant, lv, ix, h) for lv, ix, h in nodes])
        conn.execute("COMMIT")
        size += count
    conn.execute("INSERT INTO audit_heads (tenant_id, origin, size, last_time) VALUES"
                 " (?, ?, ?, ?)", (tenant, f"bench.example.com/tenants/{tenant}", n,
                                   "2026-01-01T00:00:00.000000Z"))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


async def _proofs(tmp: Path) -> dict[str, float]:
    path = tmp / "proofs.sqlite3"
    db = await Database(path).open()
    await db.close()
    tenant = str(uuid.uuid4())
    load_s = await asyncio.to_thread(_bulk_load, path, tenant, PROOF_N)
    db = await Database(path).open()
    key = keys.OperatorSigningKey.create(tmp / "proof-signing.key")
    audit = AuditLog(db, key, SystemClock(), origin_prefix="bench.example.com")
    try:
        rng = random.Random(1)
        root = await audit.root(tenant, PROOF_N)
        indices = [rng.randrange(PROOF_N) for _ in range(PROOF_SAMPLES)]
        for index in indices[:50]:  # warm the page cache as a serving gateway would be
            await audit.inclusion_proof(tenant, index, PROOF_N)
        times = []
        proofs = []
        for index in indices:
            started = time.perf_counter()
            proofs.append(await audit.inclusion_proof(tenant, index, PROOF_N))
            times.append(time.perf_counter() - started)
        for index, proof in zip(indices, proofs, strict=True):
            leaf = hashlib.sha256(b"\x00" + index.to_bytes(8, "big")).digest()
            if not merkle.verify_inclusion(leaf, index, PROOF_N, proof, root):
                raise AssertionError("a proof did not verify")
        ctimes = []
        for _ in range(200):
            old = rng.randrange(1, PROOF_N)
            started = time.perf_counter()
            await audit.consistency_proof(tenant, old, PROOF_N)
            ctimes.append(time.perf_counter() - started)
        # Baseline: the same proofs from an in-memory node store (no database at all).
        store = merkle.MemoryNodeStore()
        rows = await db.fetchall("SELECT level, idx, hash FROM audit_nodes WHERE tenant_id = ?"
                                 " AND level >= 0", (tenant,))
        store.put((r["level"], r["idx"], bytes(r["hash"])) for r in rows)
        store.size = PROOF_N
        started = time.perf_counter()
        for index in indices:
            store.inclusion_proof(index, PROOF_N)
        memory_us = (time.perf_counter() - started) / len(indices) * 1e6
    finally:
        await db.close()
    times.sort()
    ctimes.sort()
    return {"proof_n": float(PROOF_N), "bulk_load_s": load_s,
            "proof_ms_p50": statistics.median(times) * 1000,
            "proof_ms_p99": times[int(len(times) * 0.99)] * 1000,
            "proof_ms_max": times[-1] * 1000,
            "consistency_ms_p50": statistics.median(ctimes) * 1000,
            "memory_proof_us": memory_us,
            "proof_len": float(len(proofs[0]))}


def _encode_us() -> float:
    """Validating and encoding one entry (canonical JSON + the phone-number scan), the part
    of an append that runs before the writer: the floor under every append figure."""
    from gateway.transparency.log import _prepare
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        _prepare(ENTRY)
    return (time.perf_counter() - started) / n * 1e6


def target(result: dict[str, float]) -> tuple[str, bool]:
    """Issue 5: >= 5,000 appends/s (with batching where the API allows) and proofs < 5 ms."""
    appends = max(result["concurrent_per_s"], result["batched_per_s"])
    return ">= 5000 appends/s and p99 proof < 5 ms", (appends >= 5000
                                                        and result["proof_ms_p99"] < 5)


def run() -> dict[str, float]:
    encode = _encode_us()
    with tempfile.TemporaryDirectory(prefix="vgw-audit-bench-") as tmp:
        appends = asyncio.run(_appends(Path(tmp)))
        proofs = asyncio.run(_proofs(Path(tmp)))
    result = {**appends, "encode_us": encode, **proofs}
    result["concurrent_vs_bare"] = appends["concurrent_per_s"] / appends["bare_concurrent_per_s"]
    result["batched_vs_bare"] = appends["batched_per_s"] / appends["bare_batched_per_s"]
    result["proof_vs_memory"] = proofs["proof_ms_p50"] * 1000 / proofs["memory_proof_us"]
    return result

if __name__ == "__main__":
    figures = run()
    for k, v in figures.items():
        print(f"{k}: {v:.3f}")
    what, met = target(figures)
    print(f"target {what}: {'met' if met else 'NOT met'}")
