"""The embedded metadata database: SQLite (WAL, synchronous=FULL) for `make run` and small
installs. Implements gateway.store.database.Database.

Writes: one thread owns a plain sqlite3 connection and runs whole group-commit batches
(gateway/store/group_commit.py), each unit in its own SAVEPOINT inside BEGIN IMMEDIATE, so
several processes on one file serialise their writers. Reads: a separate aiosqlite
connection; WAL gives it a consistent snapshot without blocking the writer.

Deletion: `secure_delete` is on for every connection, so a deleted row's bytes are zeroed
in its page (and in free pages) rather than left behind; `truncate_wal()`, run after each
deletion batch (erasure, retention), checkpoints the WAL into the database and truncates
it to zero bytes, so the WAL does not keep the old page images either.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.store.columns import fold_dedupe_key, iso_micros, uuid_blob
from gateway.store.database import IntegrityError, Params, StoreUnavailable, TableInfo
from gateway.store.dialect import SQLITE
from gateway.store.group_commit import (
    TOGETHER,
    BatchingDatabase,
    GroupCommitWriter,
    together_groups,
)
from gateway.store.migrations import migration_files, split_statements
from gateway.store.writer_process import StepNotDone, WriterProcess

log = logging.getLogger("gateway.store")
T = TypeVar("T")

# SQLite waits this long for a lock another process holds before failing the statement.
BUSY_TIMEOUT_MS = 5000


class SqliteWriteTx:
    """The view a write unit gets: synchronous statements on the writer connection, inside
    the batch's transaction and the unit's savepoint."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # Callbacks run on the event loop after the batch is durable (cache invalidation).
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        try:
            return self._conn.executemany(sql, rows).rowcount
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    # for_update needs nothing here: BEGIN IMMEDIATE holds the file's write lock.
    def fetchone(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()


# Kept for code and tests that name the SQLite unit view directly.
WriteTx = SqliteWriteTx


class SqliteDatabase(BatchingDatabase):
    dialect = SQLITE

    def __init__(self, path: Path, *, max_batch: int = 256,
                 observe_batch: Callable[[int], None] | None = None,
                 writer_process: bool = False) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self._observe_batch = observe_batch
        self._writer_conn: sqlite3.Connection | None = None
        # Set-based steps (units with a REMOTE step) run in a child process: see
        # gateway/store/writer_process.py. Off for short-lived CLI commands.
        self.process = WriterProcess(self.path, self._pragmas()) if writer_process else None
        self._reader: aiosqlite.Connection | None = None

    @staticmethod
    def _pragmas() -> list[str]:
        return [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA journal_mode = WAL",
                # FULL: in WAL mode the WAL is fsync'd at every commit: a commit is durable.
                "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON",
                # Zero what is deleted (docs/retention-and-dsr.md: secure deletion).
                "PRAGMA secure_delete = ON"]

    async def truncate_wal(self) -> None:
        """Checkpoint the WAL into the database and truncate it (after a deletion batch).
        Best effort: a reader holding an old snapshot makes SQLite leave the WAL as it is
        (busy); the next deletion batch tries again."""
        def run() -> None:
            conn = self._writer_conn
            assert conn is not None
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        await self._writer.call(run)

    def _open_writer(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            conn.execute(pragma)
        apply_migrations_sync(conn)
        self._writer_conn = conn

    async def open(self) -> SqliteDatabase:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = GroupCommitWriter("db-writer", self._commit_batch,
                                         max_batch=self.max_batch,
                                         observe_batch=self._observe_batch,
                                         process=self.process)
        await self._writer.call(self._open_writer)
        if self.process is not None:
            try:
                await self.process.start()
            except StepNotDone as exc:
                # The gateway still works without it (batches run on the writer thread).
                log.error("sqlite writer process did not start; batches run on the writer"
                          " thread", extra={"error": str(exc)})
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        self._writer.start()
        return self

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop(self._close_writer)
        if self.process is not None:
            await self.process.stop()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    def _close_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            conn.close()

    # -- writes ---------------------------------------------------------------------------
    def _commit_batch(self, fns: list[Callable[[SqliteWriteTx], Any]]
                      ) -> tuple[list[tuple[bool, Any]], list[Callable[[], None]]]:
        conn = self._writer_conn
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        callbacks: list[Callable[[], None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for group in together_groups(fns):
                if len(group) > 1 and self._run_together(conn, group, outcomes, callbacks):
                    continue
                for fn in group:
                    self._run_unit(conn, fn, outcomes, callbacks)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            mapped = _unavailable_if_full(exc) if isinstance(exc, Exception) else exc
            if mapped is not exc:
                raise mapped from None
            raise
        return outcomes, callbacks

    @staticmethod
    def _run_unit(conn: sqlite3.Connection, fn: Callable[[SqliteWriteTx], Any],
                  outcomes: list[tuple[bool, Any]], callbacks: list[Callable[[], None]]
                  ) -> None:
        conn.execute("SAVEPOINT unit")
        # A fresh view per unit: a unit that rolls back takes its callbacks with it.
        tx = SqliteWriteTx(conn)
        try:
            result = fn(tx)
        except Exception as exc:  # the unit's own failure: undo only its writes
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            outcomes.append((False, _unavailable_if_full(exc)))
        else:
            conn.execute("RELEASE unit")
            outcomes.append((True, result))
            callbacks.extend(tx.after_commit)

    @staticmethod
    def _run_together(conn: sqlite3.Connection, group: list[Callable[[SqliteWriteTx], Any]],
                      outcomes: list[tuple[bool, Any]], callbacks: list[Callable[[], None]]
                      ) -> bool:
        """Run units sharing a `together` runner as one step (group_commit.together_groups);
        False if it failed and was undone (the caller then runs them one by one)."""
        conn.execute("SAVEPOINT together")
        tx = SqliteWriteTx(conn)
        try:
            results = getattr(group[0], TOGETHER)(tx, group)
        except Exception as exc:
            conn.execute("ROLLBACK TO together")
            conn.execute("RELEASE together")
            log.debug("set-based step undone, units run one by one: %s", type(exc).__name__)
            return False
        conn.execute("RELEASE together")
        outcomes.extend(results)
        callbacks.extend(tx.after_commit)
        return True

    # -- reads ----------------------------------------------------------------------------
    # Each read runs and completes in one hop to the reader thread. With execute() and
    # fetch() as two hops, another coroutine's read could start between them while the
    # first statement still held its snapshot open, and then see data older than a commit
    # that had already returned (a stale read after a write).
    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        assert self._reader is not None
        return list(await self._reader.execute_fetchall(sql, params))

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
            return self._writer is not None and self._writer.alive
        except Exception:
            return False

    async def tables(self) -> dict[str, TableInfo]:
        out = {}
        for row in await self.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE"
                " 'sqlite_%' AND name <> 'schema_migrations' ORDER BY rowid"):
            name = row["name"]
            info = await self.fetchall(f"PRAGMA table_info({name})")
            references = {r["table"] for r in await self.fetchall(
                f"PRAGMA foreign_key_list({name})")}
            out[name] = TableInfo(
                name, {c["name"]: _affinity(c["type"]) for c in info},
                tuple(c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"]),
                frozenset(references - {name}))
        return out


def _affinity(declared: str) -> str:
    declared = (declared or "").upper()
    if "INT" in declared:
        return "integer"
    if "BLOB" in declared:
        return "blob"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "text"


# The embedded default keeps its historical name.
Database = SqliteDatabase


def apply_migrations_sync(conn: sqlite3.Connection) -> list[str]:
    """Apply numbered migrations in order, each in its own transaction. Two processes
    starting at once are safe: BEGIN IMMEDIATE serialises them and the second sees the
    first's versions."""
    if sqlite3.sqlite_version_info < (3, 41):
        # Migration 0009 converts hex text with unhex(), built into SQLite from 3.41.
        conn.create_function("unhex", 1, _unhex, deterministic=True)
    # Migration 0013 (gateway/store/columns.py): the integration folded into each event's
    # dedupe key, event and tenant ids as 16 bytes, times as integer microseconds.
    conn.create_function("dedupe_fold", 2, fold_dedupe_key, deterministic=True)
    conn.create_function("uuid_blob", 1, uuid_blob, deterministic=True)
    conn.create_function("iso_micros", 1, iso_micros, deterministic=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    applied = []
    for version, name, sql in migration_files():
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                            (version,)).fetchone():
                conn.execute("COMMIT")
                continue
            # executescript would COMMIT implicitly; run statement by statement instead.
            for statement in split_statements(sql):
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


def _unhex(text: str | None) -> bytes | None:
    """SQLite's unhex(X) for one argument: NULL for NULL or text that is not hex."""
    try:
        return None if text is None else bytes.fromhex(text)
    except (TypeError, ValueError):
        return None


# SQLITE_FULL and the SQLITE_IOERR family (result code & 0xff): the disk is full or failing.
# Nothing of the batch was committed, so the caller may retry: 503 with Retry-After.
_FULL_OR_IO_CODES = (13, 10)


def _unavailable_if_full(exc: Exception) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    full = (code is not None and (code & 0xFF) == 13) or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
    if full or (code is not None and (code & 0xFF) in _FULL_OR_IO_CODES):
        error = StoreUnavailable("database")
        error.out_of_space = full      # an upload answers 507 for this (calls/recordings)
        return error
    return exc
