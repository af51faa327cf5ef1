"""The group-commit writer: shared commits, isolated failures, durability, migrations."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.store.database import IntegrityError
from gateway.store.sqlite import Database, apply_migrations_sync


@pytest.fixture
async def db(tmp_path):
    database = await Database(tmp_path / "t.sqlite3").open()
    await database.write(lambda tx: tx.execute(
        "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"))
    yield database
    await database.close()


async def test_concurrent_writes_share_commits(db):
    commits_before = db.commits

    async def put(i):
        await db.write(lambda tx: tx.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i)))

    await asyncio.gather(*(put(i) for i in range(200)))
    commits = db.commits - commits_before
    assert commits < 100, f"200 concurrent writes took {commits} commits"
    rows = await db.fetchall("SELECT COUNT(*) AS n FROM t")
    assert rows[0]["n"] == 200


async def test_a_failing_unit_does_not_sink_its_batch(db):
    await db.write(lambda tx: tx.execute("INSERT INTO t VALUES ('dup', 1)"))

    async def good(i):
        return await db.write(lambda tx: tx.execute("INSERT INTO t VALUES (?, ?)", (f"g{i}", i)))

    async def bad():
        def unit(tx):
            tx.execute("INSERT INTO t VALUES ('half', 1)")  # undone with the unit
            tx.execute("INSERT INTO t VALUES ('dup', 2)")   # violates the key
        return await db.write(unit)

    results = await asyncio.gather(good(1), bad(), good(2), return_exceptions=True)
    assert isinstance(results[1], IntegrityError)
    keys = {r["k"] for r in await db.fetchall("SELECT k FROM t")}
    assert keys == {"dup", "g1", "g2"}


async def test_a_returned_write_is_visible_to_a_new_connection(db, tmp_path):
    await db.write(lambda tx: tx.execute("INSERT INTO t VALUES ('durable', 7)"))
    # A separate process-like connection (no shared cache) sees the committed row.
    conn = sqlite3.connect(tmp_path / "t.sqlite3")
    try:
        assert conn.execute("SELECT v FROM t WHERE k = 'durable'").fetchone() == (7,)
    finally:
        conn.close()


async def test_synchronous_full_and_wal(db):
    row = await db.fetchone("PRAGMA journal_mode")
    assert row[0] == "wal"
    # The writer's own setting is what makes a returned write durable: 2 = FULL.
    assert db._writer_conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_migrations_are_applied_once(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    try:
        first = apply_migrations_sync(conn)
        second = apply_migrations_sync(conn)
    finally:
        conn.close()
    assert first and first[0].startswith("0001")
    assert second == []
