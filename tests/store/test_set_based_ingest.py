"""Issue 12: a group-commit batch of webhook deliveries is written set-based (a few
statements for the whole batch), with the behaviour of writing them one by one: each event
stored once however often and concurrently it is delivered, statuses never regress, and
a refused delivery refuses only itself. Also: the set-based step really carries the load,
and migrations 0009 and 0013 keep old dedupe keys deduping."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid

import pytest

from gateway.store.group_commit import TOGETHER
from gateway.store.writer_process import REMOTE
from tests.support.signers import call_updated, new_whsec, standard_delivery

pytestmark = pytest.mark.backends("sqlite", "postgres")

STATUSES = ("ringing", "in-progress", "completed")


async def _deliver(gateway, integration, secret, call: str, status: str, msg_id: str):
    body = call_updated(call, status, started_at="2026-03-01T10:00:00Z",
                        ended_at="2026-03-01T10:01:00Z" if status == "completed" else None,
                        duration=60 if status == "completed" else None)
    raw, headers = standard_delivery(secret, body, gateway.clock.now(), msg_id=msg_id)
    status_code, _, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    return status_code


async def test_concurrent_out_of_order_redelivered_events_land_once(gateway):
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    deliveries = [(f"call-{c}", status, f"msg_{c}_{status}")
                  for c in range(25) for status in STATUSES]
    # Every event delivered twice, all at once, in a shuffled order: batches hold
    # duplicates of each other and events of one call in any order.
    sent = deliveries * 2
    random.Random(12).shuffle(sent)
    set_based = _count_set_based(gateway)
    codes = await asyncio.gather(*(_deliver(gateway, integration, secret, *d) for d in sent))
    assert set(codes) == {200}
    assert set_based["units"] > 0, "no batch was written set-based"

    rows = await gateway.services.db.fetchall(
        "SELECT platform_call_id, status, ended_at, duration_seconds FROM calls")
    assert len(rows) == 25
    # Whatever order they came in, the terminal status wins and keeps its fields.
    assert {(r["status"], r["duration_seconds"]) for r in rows} == {("completed", 60)}
    events = await gateway.services.db.fetchall(
        "SELECT c.platform_call_id, e.status FROM call_events e JOIN calls c"
        " ON c.id = e.call_id")
    assert sorted((e["platform_call_id"], e["status"]) for e in events) == sorted(
        (c, s) for c, s, _ in deliveries)

    # A late 'ringing' for a completed call is stored as an event, the call stays done.
    assert await _deliver(gateway, integration, secret, "call-0", "ringing", "msg_late") == 200
    row = await gateway.services.db.fetchone(
        "SELECT status FROM calls WHERE platform_call_id = 'call-0'")
    assert row["status"] == "completed"


async def test_a_disabled_integration_is_refused_without_sinking_its_batch(gateway):
    tenant = await gateway.new_tenant("acme")
    secrets_ = [new_whsec() for _ in range(2)]
    live, doomed = [await gateway.integration(tenant, "standard", {"secret": s})
                    for s in secrets_]
    # Warm this process's credential cache, then disable the integration as another
    # replica would (in the database only): the check inside the write refuses it.
    assert await _deliver(gateway, doomed, secrets_[1], "warm", "ringing", "m_warm") == 200
    await gateway.services.db.write(lambda tx: tx.execute(
        "UPDATE integrations SET disabled_at = '2026-01-01T00:00:00Z' WHERE id = ?",
        (doomed["id"],)))
    codes = await asyncio.gather(
        *(_deliver(gateway, live, secrets_[0], f"live-{i}", "ringing", f"m_live_{i}")
          for i in range(20)),
        *(_deliver(gateway, doomed, secrets_[1], f"gone-{i}", "ringing", f"m_gone_{i}")
          for i in range(20)))
    assert set(codes[:20]) == {200}
    assert 200 not in set(codes[20:])
    rows = await gateway.services.db.fetchall("SELECT platform_call_id FROM calls")
    assert sorted(r["platform_call_id"] for r in rows) == sorted(
        [f"live-{i}" for i in range(20)] + ["warm"])


async def test_the_stored_dedupe_key_is_16_bytes_of_sha256(gateway):
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    assert await _deliver(gateway, integration, secret, "c1", "ringing", "msg_key") == 200
    row = await gateway.services.db.fetchone("SELECT dedupe_key FROM call_events")
    # The Standard Webhooks adapter dedupes on the webhook-id; the integration is folded in.
    key_hash = hashlib.sha256(b"msg_key").digest()[:16]
    assert bytes(row["dedupe_key"]) == hashlib.sha256(
        integration["id"].encode() + key_hash).digest()[:16]


def _count_set_based(gateway) -> dict[str, int]:
    """Counts the units the ingest service's set-based step writes (wraps it), on the
    writer thread or (SQLite) in the writer process."""
    ingest = gateway.services.ingest
    counted = {"units": 0}
    runner = ingest._write_together
    step = ingest._remote_step

    def counting(tx, units):
        results = runner(tx, units)
        counted["units"] += len(units)
        return results

    def counting_decode(units, answer):
        counted["units"] += len(units)
        return step.decode(units, answer)

    original_unit = ingest._unit

    def unit(*args, **kwargs):
        fn = original_unit(*args, **kwargs)
        setattr(fn, TOGETHER, counting)
        setattr(fn, REMOTE, step._replace(decode=counting_decode))
        return fn

    ingest._unit = unit
    return counted


def _before_0009():
    from gateway.store.migrations import migration_files
    return [m for m in migration_files() if m[0] < 9]


def _before_0013():
    from gateway.store.migrations import migration_files
    return [m for m in migration_files() if m[0] < 13]


def _folded(integration_id: str, key: bytes) -> bytes:
    """What the ingest path looks up for `key` delivered to `integration_id`."""
    from gateway.ingest.storable import dedupe_hash
    from gateway.store.columns import fold_dedupe_key
    return fold_dedupe_key(integration_id, dedupe_hash(key.decode()))


# Migration 0013 stores event and tenant ids as 16 bytes: old rows hold UUID text.
T1, E1, E2 = (f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
_OLD_ROWS = [
    f"INSERT INTO tenants (id, name, created_at) VALUES ('{T1}', 'acme',"
    " '2026-01-01T00:00:00Z')",
    "INSERT INTO calls (id, tenant_id, integration_id, platform, platform_call_id, sort_time,"
    " created_at, updated_at) VALUES ('c1', '" + T1 + "', 'i1', 'standard', 'pc1',"
    " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    "INSERT INTO call_events (id, tenant_id, integration_id, call_id, dedupe_key, kind,"
    " received_at, body) VALUES ('" + E1 + "', '" + T1 + "', 'i1', 'c1', '"
    + hashlib.sha256(b"msg_old").hexdigest() + "', 'call', '2026-01-01T00:00:00Z', 'x')",
]


@pytest.mark.backends("sqlite")
def test_migration_0009_converts_old_dedupe_keys_sqlite(tmp_path, monkeypatch):
    import sqlite3

    from gateway.store import sqlite as backend
    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(backend, "migration_files", _before_0009)
            backend.apply_migrations_sync(conn)
        for statement in _OLD_ROWS:
            conn.execute(statement)
        applied = backend.apply_migrations_sync(conn)
        assert applied[0].startswith("0009")
        key, call_id = conn.execute("SELECT dedupe_key, call_id FROM call_events").fetchone()
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM calls WHERE integration_id = ?"
                            " AND platform_session_id = ?", ("i1", "s1")).fetchall()
    finally:
        conn.close()
    # 0009 made it 16 bytes of SHA-256, 0013 folded the integration in.
    assert key == _folded("i1", b"msg_old") and call_id == "c1"
    assert "calls_by_session" in str(plan)


@pytest.mark.backends("postgres")
def test_migration_0009_converts_old_dedupe_keys_postgres(postgres_schema_url, monkeypatch):
    import psycopg

    from gateway.store import postgres as backend
    with psycopg.connect(postgres_schema_url) as conn:
        with monkeypatch.context() as patch:
            patch.setattr(backend, "migration_files", _before_0009)
            backend.apply_migrations_postgresql(conn)
        for statement in _OLD_ROWS:
            conn.execute(statement)
        conn.commit()
        applied = backend.apply_migrations_postgresql(conn)
        assert applied[0].startswith("0009")
        key, call_id = conn.execute("SELECT dedupe_key, call_id FROM call_events").fetchone()
    assert bytes(key) == _folded("i1", b"msg_old") and call_id == "c1"


# Rows as migration 0012 left them: 16-byte dedupe keys beside their integration.
_ROWS_0012 = [
    *_OLD_ROWS[:2],
    "INSERT INTO calls (id, tenant_id, integration_id, platform, platform_call_id, sort_time,"
    f" created_at, updated_at) VALUES ('c2', '{T1}', 'i2', 'standard', 'pc1',"
    " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    # One idempotency key delivered to two integrations: two events, two folded keys.
    *[f"INSERT INTO call_events (id, tenant_id, integration_id, call_id, dedupe_key, kind,"
      f" received_at, body) VALUES ('{event}', '{T1}', 'i{n}', 'c{n}', ?, 'call',"
      f" '2026-01-01T00:00:00Z', ?)" for n, event in ((1, E1), (2, E2))],
]


# After 0013: ids as 16 bytes, each key folded with its own integration.
_AFTER_0013 = [(uuid.UUID(E1).bytes, uuid.UUID(T1).bytes, _folded("i1", b"msg_old"), "c1"),
               (uuid.UUID(E2).bytes, uuid.UUID(T1).bytes, _folded("i2", b"msg_old"), "c2")]


def _insert_0012_rows(execute) -> None:
    for statement in _ROWS_0012:
        execute(statement, (hashlib.sha256(b"msg_old").digest()[:16], b"x")
                if "call_events" in statement else ())


@pytest.mark.backends("sqlite")
def test_migration_0013_folds_the_integration_into_old_dedupe_keys_sqlite(
        tmp_path, monkeypatch):
    import sqlite3

    from gateway.store import sqlite as backend
    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(backend, "migration_files", _before_0013)
            backend.apply_migrations_sync(conn)
        _insert_0012_rows(conn.execute)
        applied = backend.apply_migrations_sync(conn)
        rows = conn.execute("SELECT id, tenant_id, dedupe_key, call_id FROM call_events"
                            " ORDER BY id").fetchall()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(call_events)")]
    finally:
        conn.close()
    assert applied[0].startswith("0013")
    assert rows == _AFTER_0013
    assert "integration_id" not in columns


@pytest.mark.backends("postgres")
def test_migration_0013_folds_the_integration_into_old_dedupe_keys_postgres(
        postgres_schema_url, monkeypatch):
    import psycopg

    from gateway.store import postgres as backend
    with psycopg.connect(postgres_schema_url) as conn:
        with monkeypatch.context() as patch:
            patch.setattr(backend, "migration_files", _before_0013)
            backend.apply_migrations_postgresql(conn)
        _insert_0012_rows(lambda sql, params: conn.execute(sql.replace("?", "%s"), params))
        conn.commit()
        applied = backend.apply_migrations_postgresql(conn)
        rows = conn.execute("SELECT id, tenant_id, dedupe_key, call_id FROM call_events"
                            " ORDER BY id").fetchall()
    assert applied[0].startswith("0013")
    assert [(bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3]) for r in rows] == _AFTER_0013


@pytest.mark.backends("sqlite")
async def test_a_failed_set_based_step_is_undone_and_run_one_by_one(tmp_path):
    from gateway.store.database import IntegrityError
    from gateway.store.sqlite import Database
    db = await Database(tmp_path / "t.sqlite3").open()
    try:
        await db.write(lambda tx: tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"))
        await db.write(lambda tx: tx.execute("INSERT INTO t VALUES ('taken')"))
        steps = []

        def together(tx, units):
            steps.append(len(units))
            tx.execute("INSERT INTO t VALUES ('half-done')")     # undone with the step
            for fn in units:
                tx.execute("INSERT INTO t VALUES (?)", (fn.key,))   # 'taken' fails
            return [(True, fn.key) for fn in units]

        def unit(key):
            def fn(tx):
                tx.execute("INSERT INTO t VALUES (?)", (key,))
                return key
            fn.key = key
            setattr(fn, TOGETHER, together)
            return fn

        results = await asyncio.gather(*(db.write(unit(k)) for k in ("a", "taken", "b")),
                                       return_exceptions=True)
    finally:
        rows = {r["k"] for r in await db.fetchall("SELECT k FROM t")}
        await db.close()
    assert steps and max(steps) > 1, "the units never ran as one step"
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], IntegrityError)
    assert rows == {"taken", "a", "b"}
