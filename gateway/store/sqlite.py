"""The metadata database: SQLite (WAL) through aiosqlite, with a group-commit writer.

Why group commit: a 2xx to a platform must mean the event is on disk, so every write ends
in an fsync'd commit. One fsync per request would cap ingest at the disk's sync rate; so
all writes go through one writer task that runs whatever units are queued inside one
transaction (each in its own SAVEPOINT, so one failing unit does not sink its neighbours)
and commits once. While one commit syncs, new arrivals queue up and share the next one.

Units are synchronous functions run on one writer thread that owns a plain sqlite3
connection: a whole batch costs one thread hop, not one per statement. Reads use a separate
aiosqlite connection: WAL gives it a consistent snapshot without blocking the writer.
Repositories (calls, tenants, ...) are plain functions over `WriteTx` / `Database`
so a PostgreSQL backend can implement the same surface later.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.core.jobs import cancel_and_wait

log = logging.getLogger("gateway.db")
T = TypeVar("T")

# SQLite waits this long for a lock another process holds before failing the statement.
BUSY_TIMEOUT_MS = 5000


class WriteTx:
    """The view a write unit gets: synchronous statements on the writer connection, inside
    the batch's transaction and the unit's savepoint. Units run on the writer thread, so
    they are plain functions: no awaits, no I/O besides these statements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # Callbacks run on the event loop after the batch is durable (cache invalidation).
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Sequence[Any] | dict = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._conn.executemany(sql, rows).rowcount

    def fetchone(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()


@dataclass
class _Unit:
    fn: Callable[[WriteTx], Any]
    future: asyncio.Future = field(repr=False)


class Database:
    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Unit] | None = None
        self._task: asyncio.Task | None = None
        self.commits = 0
        self.units = 0

    @staticmethod
    def _pragmas() -> list[str]:
        return [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA journal_mode = WAL",
                # FULL: in WAL mode the WAL is fsync'd at every commit: a commit is durable.
                "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON"]

    def _open_writer(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            conn.execute(pragma)
        apply_migrations_sync(conn)
        self._writer = conn

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One thread owns the writer connection: a whole batch runs there in one hop, so
        # a write unit costs its statements and nothing else.
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_thread, self._open_writer)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run_writer(), name="group-commit-writer")
        return self

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer_thread is not None:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._writer_thread.submit(writer.close).result()
            self._writer_thread.shutdown(wait=True)
            self._writer_thread = None

    # -- writes ---------------------------------------------------------------------------
    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run `fn(tx)` on the writer thread inside a group commit; returns its result once
        its effects are durable. If `fn` raises, its effects are rolled back and the
        exception propagates. `fn` must be synchronous and quick (statements and CPU only)."""
        if self._queue is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Unit(fn, future))
        return await future

    async def _run_writer(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [unit for unit in batch if not unit.future.cancelled()]
            if not batch:
                continue
            try:
                outcomes, callbacks = await loop.run_in_executor(
                    self._writer_thread, self._commit_batch, [u.fn for u in batch])
            except Exception as exc:
                # The commit itself failed (disk full, I/O error): nothing in the batch is
                # durable, so every waiter gets the error and none gets a 2xx.
                log.error("group commit failed: %s", type(exc).__name__)
                for unit in batch:
                    if not unit.future.done():
                        unit.future.set_exception(exc)
                continue
            self.commits += 1
            self.units += len(batch)
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("after-commit callback failed")
            for unit, (ok, value) in zip(batch, outcomes, strict=True):
                if unit.future.done():
                    continue
                if ok:
                    unit.future.set_result(value)
                else:
                    unit.future.set_exception(value)

    def _commit_batch(self, fns: list[Callable[[WriteTx], Any]]
                      ) -> tuple[list[tuple[bool, Any]], list[Callable[[], None]]]:
        conn = self._writer
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        callbacks: list[Callable[[], None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn in fns:
                conn.execute("SAVEPOINT unit")
                # A fresh view per unit: a unit that rolls back takes its callbacks with it.
                tx = WriteTx(conn)
                try:
                    result = fn(tx)
                except Exception as exc:  # the unit's own failure: undo only its writes
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE unit")
                    outcomes.append((True, result))
                    callbacks.extend(tx.after_commit)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes, callbacks

    # -- reads ----------------------------------------------------------------------------
    # Each read runs and completes in one hop to the reader thread. With execute() and
    # fetch() as two hops, another coroutine's read could start between them while the
    # first statement still held its snapshot open, and then see data older than a commit
    # that had already returned (a stale read after a write).
    async def fetchone(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        assert self._reader is not None
        return list(await self._reader.execute_fetchall(sql, params))

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
            return self._task is not None and not self._task.done()
        except Exception:
            return False


def _migration_files() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("gateway.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text()))
    return sorted(out)


def apply_migrations_sync(conn: sqlite3.Connection) -> list[str]:
    """Apply numbered migrations in order, each in its own transaction. Two processes
    starting at once are safe: BEGIN IMMEDIATE serialises them and the second sees the
    first's versions."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    applied = []
    for version, name, sql in _migration_files():
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                            (version,)).fetchone():
                conn.execute("COMMIT")
                continue
            # executescript would COMMIT implicitly; run statement by statement instead.
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                         (version, name))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
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
