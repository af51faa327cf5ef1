"""The metadata database: SQLite (WAL) through aiosqlite, with a group-commit writer.

Why group commit: a 2xx to a platform must mean the event is on disk, so every write ends
in an fsync'd commit. One fsync per request would cap ingest at the disk's sync rate; so
all writes go through one writer task that runs whatever units are queued inside one
transaction (each in its own SAVEPOINT, so one failing unit does not sink its neighbours)
and commits once. While one commit syncs, new arrivals queue up and share the next one.

Reads use a separate connection: WAL gives it a consistent snapshot without blocking the
writer. Repositories (calls, tenants, ...) are plain functions over `WriteTx` / `Database`
so a PostgreSQL backend can implement the same surface later.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger("gateway.db")
T = TypeVar("T")

# SQLite waits this long for a lock another process holds before failing the statement.
BUSY_TIMEOUT_MS = 5000


class WriteTx:
    """The view a write unit gets: statements on the writer connection, inside the batch's
    transaction and the unit's savepoint."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # Callbacks run after the batch is durable (cache invalidation, metrics).
        self.after_commit: list[Callable[[], None]] = []

    async def execute(self, sql: str, params: Sequence[Any] | dict = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        rowcount = cursor.rowcount
        await cursor.close()
        return rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


@dataclass
class _Unit:
    fn: Callable[[WriteTx], Awaitable[Any]]
    future: asyncio.Future = field(repr=False)


class Database:
    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Unit] | None = None
        self._task: asyncio.Task | None = None
        self.commits = 0
        self.units = 0

    @staticmethod
    async def _connect(path: Path) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL: in WAL mode the WAL is fsync'd at every commit, so a commit is durable.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect(self.path)
        await apply_migrations(self._writer)
        self._reader = await self._connect(self.path)
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run_writer(), name="group-commit-writer")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # -- writes ---------------------------------------------------------------------------
    async def write(self, fn: Callable[[WriteTx], Awaitable[T]]) -> T:
        """Run `fn` inside a group commit; returns once its effects are durable.
        If `fn` raises, its effects are rolled back and the exception propagates."""
        if self._queue is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Unit(fn, future))
        return await future

    async def _run_writer(self) -> None:
        assert self._queue is not None and self._writer is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[_Unit]) -> None:
        conn = self._writer
        assert conn is not None
        outcomes: list[tuple[_Unit, bool, Any]] = []
        tx = WriteTx(conn)
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for unit in batch:
                if unit.future.cancelled():
                    continue
                await conn.execute("SAVEPOINT unit")
                try:
                    result = await unit.fn(tx)
                except Exception as exc:  # the unit's own failure: undo only its writes
                    await conn.execute("ROLLBACK TO unit")
                    await conn.execute("RELEASE unit")
                    outcomes.append((unit, False, exc))
                else:
                    await conn.execute("RELEASE unit")
                    outcomes.append((unit, True, result))
            await conn.execute("COMMIT")
        except BaseException as exc:
            # The commit itself failed (disk full, I/O error): nothing in the batch is
            # durable, so every waiter gets the error and none gets a 2xx.
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                pass
            for unit in batch:
                if not unit.future.done():
                    unit.future.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError("writer stopped"))
            if not isinstance(exc, Exception):
                raise
            log.error("group commit failed: %s", type(exc).__name__)
            return
        self.commits += 1
        self.units += len(outcomes)
        for callback in tx.after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")
        for unit, ok, value in outcomes:
            if unit.future.done():
                continue
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)

    # -- reads ----------------------------------------------------------------------------
    async def fetchone(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        assert self._reader is not None
        async with self._reader.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        assert self._reader is not None
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
            return self._task is not None and not self._task.done()
        except Exception:
            return False


def _migration_files() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("gateway.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text()))
    return sorted(out)


async def apply_migrations(conn: aiosqlite.Connection) -> list[str]:
    """Apply numbered migrations in order, each in its own transaction."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    async with conn.execute("SELECT version FROM schema_migrations") as cursor:
        done = {row[0] for row in await cursor.fetchall()}
    applied = []
    for version, name, sql in _migration_files():
        if version in done:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript would COMMIT implicitly; run statement by statement instead.
            for statement in _split_sql(sql):
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                               (version, name))
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        applied.append(name)
        log.info("applied migration %s", name)
    return applied


def _split_sql(sql: str) -> list[str]:
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statements.append("\n".join(current).strip())
            current = []
    if "\n".join(current).strip():
        raise ValueError("migration ends with an incomplete statement")
    return [s for s in statements if s.rstrip(";").strip()]
