"""AuditLog, the service other features write through: durable appends, O(log n) work per
append, atomic with the caller's unit, serialised per tenant so processes sharing the
database cannot fork a log."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keys
from gateway.core.clock import ManualClock
from gateway.store.database import IntegrityError
from gateway.store.sqlite import Database, SqliteDatabase
from gateway.transparency import EntryError, merkle, verify_bundle
from gateway.transparency.log import AuditLog, verify_stored_log

ROOT = Path(__file__).resolve().parents[2]
ENTRY = {"kind": "key_event", "actor": {"type": "system", "id": "key-rotation"}}


@pytest.fixture
async def log(tmp_path):
    db = await Database(tmp_path / "audit.sqlite3").open()
    key = keys.OperatorSigningKey.create(tmp_path / "signing.key")
    audit = AuditLog(db, key, ManualClock(), origin_prefix="gateway.example.com")
    yield audit
    await audit.stop()
    await db.close()


class CountingTx:
    """A WriteTx that counts the statements a unit runs against the node table."""

    def __init__(self, tx):
        self.tx = tx
        self.node_reads = 0
        self.statements = 0
        self.after_commit = tx.after_commit

    def fetchone(self, sql, params=(), *, for_update=False):
        self.statements += 1
        self.node_reads += "FROM audit_nodes" in sql
        return self.tx.fetchone(sql, params, for_update=for_update)

    def fetchall(self, sql, params=(), *, for_update=False):
        self.statements += 1
        return self.tx.fetchall(sql, params, for_update=for_update)

    def execute(self, sql, params=()):
        self.statements += 1
        return self.tx.execute(sql, params)

    def executemany(self, sql, rows):
        self.statements += 1
        return self.tx.executemany(sql, rows)


async def test_appends_are_durable_contiguous_and_verify(log):
    tenant = str(uuid.uuid4())
    seqs = await asyncio.gather(*(log.append(tenant, ENTRY) for _ in range(50)))
    assert sorted(seqs) == list(range(50))
    assert await log.append_many(tenant, [ENTRY] * 3) == [50, 51, 52]
    cp = await log.checkpoint(tenant)
    assert cp.size == 53
    bundle = await log.bundle(tenant)
    report = verify_bundle(bundle, trusted_key=await log.verifier_key(tenant))
    assert report.ok, report.problems
    # Another tenant's log is separate and starts at 0.
    assert await log.append(str(uuid.uuid4()), ENTRY) == 0


async def test_append_is_o_log_n(log):
    tenant = str(uuid.uuid4())
    for _ in range(4):
        await log.append_many(tenant, [ENTRY] * 1000)
    worst_reads = worst_statements = 0
    for _ in range(64):
        def unit(tx):
            counting = CountingTx(tx)
            log.append_in_tx(counting, tenant, ENTRY)
            return counting
        counted = await log.db.write(unit)
        worst_reads = max(worst_reads, counted.node_reads)
        worst_statements = max(worst_statements, counted.statements)
    n = await log.size(tenant)
    assert n == 4064
    # One left sibling per trailing 1-bit of the index: at most log2(n) node reads, and a
    # constant number of other statements (head read, entry insert, nodes insert, head).
    assert worst_reads <= math.ceil(math.log2(n))
    assert worst_statements <= worst_reads + 4
    # Proofs fetch their O(log n) nodes in one round trip and are right.
    root = await log.root(tenant, n)
    [entry] = await log.entries(tenant, 1234, 1235)
    proof = await log.inclusion_proof(tenant, 1234, n)
    assert len(proof) <= 2 * math.ceil(math.log2(n))
    assert merkle.verify_inclusion(merkle.hash_leaf(entry), 1234, n, proof, root)


async def test_append_in_tx_is_atomic_with_the_callers_writes(log):
    tenant = str(uuid.uuid4())
    await log.append(tenant, ENTRY)

    def failing(tx):
        seq = log.append_in_tx(tx, tenant, {**ENTRY, "kind": "deletion_receipt",
                                            "details": {"deleted": 3}})
        assert seq == 1
        raise RuntimeError("the caller's own write failed")
    with pytest.raises(RuntimeError):
        await log.db.write(failing)
    assert await log.size(tenant) == 1
    assert len(await log.entries(tenant, 0, 10)) == 1

    def ok(tx):
        return [log.append_in_tx(tx, tenant, ENTRY), log.append_in_tx(tx, tenant, ENTRY)]
    assert await log.db.write(ok) == [1, 2]
    assert (await log.checkpoint(tenant)).size == 3


async def test_invalid_entries_are_refused_before_anything_is_written(log):
    tenant = str(uuid.uuid4())
    for bad in ({**ENTRY, "details": {"caller": "+1 415 555 0100"}},
                {**ENTRY, "reference": "4155550100"},
                {**ENTRY, "kind": "gossip"},
                {**ENTRY, "details": {"ratio": 0.5}},
                {**ENTRY, "transcript": "hello"}):
        with pytest.raises(EntryError):
            await log.append(tenant, bad)
    assert await log.size(tenant) == 0


async def test_entry_times_never_go_backwards(log):
    tenant = str(uuid.uuid4())
    clock = log.clock
    await log.append(tenant, ENTRY)
    clock.advance(seconds=-3600)  # another process's clock lags
    await log.append(tenant, ENTRY)
    first, second = [e for e in await log.entries(tenant, 0, 2)]
    assert first.split(b'"time":')[1] == second.split(b'"time":')[1]


async def test_a_second_entry_at_a_seq_is_impossible(log):
    tenant = str(uuid.uuid4())
    await log.append_many(tenant, [ENTRY] * 3)
    with pytest.raises(IntegrityError):  # the store's portable error, any backend
        await log.db.write(lambda tx: tx.execute(
            "INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, 1, x'00')", (tenant,)))
    with pytest.raises(IntegrityError):
        await log.db.write(lambda tx: tx.execute(
            "UPDATE audit_entries SET entry = x'00' WHERE tenant_id = ? AND seq = 1", (tenant,)))


WORKER = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    import keys
    from gateway.transparency.log import AuditLog
    from gateway.core.clock import SystemClock
    from gateway.store.sqlite import Database

    async def main(path, key_path, tenant, n, name, barrier_dir):
        db = await Database(path).open()
        log = AuditLog(db, keys.OperatorSigningKey.load(key_path), SystemClock(),
                       origin_prefix="gateway.example.com")
        entry = {"kind": "key_event", "actor": {"type": "system", "id": name}}
        # Start together: announce readiness, wait for the other worker.
        barrier = Path(barrier_dir)
        (barrier / name).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for i in range(0, n, 10):
            await asyncio.gather(*(log.append(tenant, entry) for _ in range(10)))
            if i % 50 == 0:
                await log.checkpoint(tenant)
        await log.checkpoint(tenant)
        await db.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5],
                     sys.argv[6]))
""")


async def test_two_processes_sharing_the_database_cannot_fork_a_log(tmp_path):
    path = tmp_path / "shared.sqlite3"
    key_path = tmp_path / "signing.key"
    keys.OperatorSigningKey.create(key_path)
    db = await Database(path).open()  # migrate once, as `gateway init` would
    await db.close()
    tenant = str(uuid.uuid4())
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, str(path), str(key_path), tenant, "300", name,
        str(barrier), cwd=ROOT) for name in ("worker-a", "worker-b")]
    assert [await p.wait() for p in procs] == [0, 0]
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, entry FROM audit_entries WHERE tenant_id = ? ORDER BY seq",
                        (tenant,)).fetchall()
    seqs = [r[0] for r in rows]
    writers = [b"worker-a" in bytes(r[1]) for r in rows]
    # Both wrote while the other did (the runs interleave), and neither forked the log.
    switches = sum(1 for a, b in zip(writers, writers[1:], strict=False) if a != b)
    assert switches >= 2, switches
    sizes = [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints WHERE"
                                        " tenant_id = ? ORDER BY size", (tenant,))]
    conn.close()
    assert seqs == list(range(600))
    assert sizes[-1] == 600 and len(sizes) >= 4
    from gateway.transparency import verifier_key_string
    vkey = verifier_key_string(f"gateway.example.com/tenants/{tenant}",
                               keys.OperatorSigningKey.load(key_path).public_key_raw())
    db = await SqliteDatabase(path).open()
    try:
        report = await verify_stored_log(db, tenant, vkey)
    finally:
        await db.close()
    assert report.ok, report.problems  # every checkpoint of both processes: one history


async def test_checkpoints_are_signed_every_n_appends_in_the_background(tmp_path):
    db = await Database(tmp_path / "a.sqlite3").open()
    audit = AuditLog(db, keys.OperatorSigningKey.create(tmp_path / "k"), ManualClock(),
                     origin_prefix="gateway.example.com", checkpoint_every=10,
                     checkpoint_interval=3600)
    await audit.start()
    try:
        tenant = str(uuid.uuid4())
        for _ in range(25):
            await audit.append(tenant, ENTRY)
        for _ in range(100):
            latest = await audit.latest_checkpoint(tenant)
            if latest is not None and latest.size >= 20:
                break
            await asyncio.sleep(0.02)
        assert latest is not None and latest.size >= 20
        # checkpoint() signs only if the tree grew.
        cp = await audit.checkpoint(tenant)
        assert cp.size == 25 and (await audit.checkpoint(tenant)) == cp
        assert await audit.sign_due() == 0
    finally:
        await audit.stop()
        await db.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6),
       probes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=5))
def test_proofs_match_a_memory_tree_for_any_batching(tmp_path_factory, batches, probes):
    """However appends are batched, the stored tree equals an in-memory one, and every
    proof the store serves verifies."""
    async def run():
        tmp = tmp_path_factory.mktemp("prop")
        db = await Database(tmp / "p.sqlite3").open()
        audit = AuditLog(db, keys.OperatorSigningKey.create(tmp / "k"), ManualClock(),
                         origin_prefix="gateway.example.com")
        tenant = str(uuid.uuid4())
        memory = merkle.MemoryNodeStore()
        try:
            for i, count in enumerate(batches):
                audit.clock.advance(timedelta(seconds=1).total_seconds())
                await audit.append_many(tenant, [{**ENTRY, "details": {"batch": i}}] * count)
            entries = await audit.entries(tenant, 0, 10**6)
            memory.append_entries(entries)
            n = memory.size
            assert await audit.root(tenant, n) == memory.root()
            for a, b in probes:
                size = 1 + b % n
                index = a % size
                proof = await audit.inclusion_proof(tenant, index, size)
                assert proof == memory.inclusion_proof(index, size)
                old = a % (size + 1)
                assert await audit.consistency_proof(tenant, old, size) == \
                    memory.consistency_proof(old, size)
        finally:
            await db.close()
    asyncio.run(run())
