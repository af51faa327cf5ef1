"""The scale-out metadata database: PostgreSQL through psycopg 3. Implements
gateway.store.database.Database with the same contract as the SQLite backend.

Why psycopg 3 (not asyncpg): write units are synchronous functions (so a whole batch runs
in one thread hop, see group_commit.py); psycopg offers the same driver sync on the writer
thread and async for reads, with client-side pipelining and a maintained pool.

Writes: one writer connection on its own thread runs each group-commit batch in one
transaction, each unit in a SAVEPOINT; COMMIT with synchronous_commit=on returns after the
WAL is flushed on the server, so a returned write is durable. Several replicas each have
their own writer: READ COMMITTED lets each statement see what other replicas committed,
UPDATEs take row locks, and a unit that hits a UNIQUE violation is run once more in a fresh
savepoint (it then sees the row the other replica committed and takes its duplicate path).
A unit chosen as a deadlock victim is undone and run once more the same way.
Reads: a small async pool in autocommit mode; each read sees every committed write.
Migrations: applied under a session advisory lock, so replicas starting together are safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.store.database import IntegrityError, Params, StoreUnavailable, TableInfo
from gateway.store.dialect import POSTGRESQL, ddl_to_postgresql, to_postgresql
from gateway.store.group_commit import (
    TOGETHER,
    BatchingDatabase,
    GroupCommitWriter,
    together_groups,
)
from gateway.store.migrations import migration_files, split_statements

log = logging.getLogger("gateway.store")
T = TypeVar("T")

# pg_advisory_lock key for migrations: any constant unique to this application.
MIGRATION_LOCK_KEY = 0x76_67_77_6D   # "vgwm"
CONNECT_TIMEOUT_SECONDS = 5
# psycopg prepares a statement on its 5th run and PostgreSQL may then cache a generic
# plan for the session, chosen from the statistics of that moment: a gateway that starts
# on empty tables kept sequential scans (dedupe lookup, call lookup) as call_events grew,
# and ingest fell 365 -> 127 webhooks/s in five 4 s runs (bench/ingest_bench.py). Every
# statement here is a short keyed lookup or write whose planning costs microseconds: plan
# each run with its parameters, keep the saved parse.
CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"


class PgRow:
    """A row addressable by name or position, and convertible with dict(): the same
    surface as sqlite3.Row, so services do not know which backend answered."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=False))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    description = cursor.description or []
    index = {column.name: i for i, column in enumerate(description)}
    return lambda values: PgRow(values, index)


class PgWriteTx:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return self._conn.execute(to_postgresql(sql), params or None).rowcount
        except pg_errors.IntegrityError as exc:
            raise _integrity(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        try:
            with self._conn.cursor() as cur:
                cur.executemany(to_postgresql(sql), list(rows))
                return cur.rowcount
        except pg_errors.IntegrityError as exc:
            raise _integrity(exc) from exc

    def fetchone(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> PgRow | None:
        return self._conn.execute(to_postgresql(sql, for_update),
                                  params or None).fetchone()

    def fetchall(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> list[PgRow]:
        return self._conn.execute(to_postgresql(sql, for_update),
                                  params or None).fetchall()


class UniqueRace(IntegrityError):
    """A UNIQUE violation: possibly another replica committed the same row first."""


def _integrity(exc: Exception) -> IntegrityError:
    # The message names the constraint, never the values (psycopg keeps those in .diag).
    text = str(getattr(exc, "diag", None) and exc.diag.message_primary or type(exc).__name__)
    if isinstance(exc, pg_errors.UniqueViolation):
        return UniqueRace(text)
    return IntegrityError(text)


class PostgresDatabase(BatchingDatabase):
    dialect = POSTGRESQL

    def __init__(self, url: str, *, max_batch: int = 256, pool_size: int = 4,
                 observe_batch: Callable[[int], None] | None = None,
                 observe_latency: Callable[[str, float], None] | None = None,
                 observe_error: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.max_batch = max_batch
        self.pool_size = pool_size
        self._observe_batch = observe_batch
        # (operation, seconds): the backend latency histogram.
        self._observe_latency = observe_latency
        self._observe_error = observe_error or (lambda operation: None)
        self._writer_conn: psycopg.Connection | None = None
        self._pool: AsyncConnectionPool | None = None

    @property
    def pool_in_use(self) -> int:
        if self._pool is None:
            return 0
        stats = self._pool.get_stats()
        return stats.get("pool_size", 0) - stats.get("pool_available", 0)

    def _connect_writer(self) -> None:
        conn = psycopg.connect(self.url, autocommit=False, row_factory=_row_factory,
                               connect_timeout=CONNECT_TIMEOUT_SECONDS)
        conn.execute("SET synchronous_commit = on")
        conn.execute(CUSTOM_PLANS)
        conn.commit()
        self._writer_conn = conn

    def _ensure_writer(self) -> psycopg.Connection:
        conn = self._writer_conn
        if conn is None or conn.closed or conn.broken:
            # The server went away and came back: reconnect (the batch that failed was
            # already reported to its waiters; nothing of it was committed).
            if conn is not None:
                conn.close()
            self._connect_writer()
        assert self._writer_conn is not None
        return self._writer_conn

    async def open(self) -> PostgresDatabase:
        self._writer = GroupCommitWriter("pg-writer", self._commit_batch,
                                         max_batch=self.max_batch,
                                         observe_batch=self._observe_batch)
        await self._writer.call(self._connect_writer)
        await self._writer.call(self._migrate)

        async def configure(conn: psycopg.AsyncConnection) -> None:
            conn.row_factory = _row_factory
            await conn.execute(CUSTOM_PLANS)

        self._pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, open=False, configure=configure,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            timeout=CONNECT_TIMEOUT_SECONDS)
        await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        self._writer.start()
        return self

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop(self._close_writer)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _close_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            conn.close()

    def _migrate(self) -> list[str]:
        conn = self._ensure_writer()
        return apply_migrations_postgresql(conn)

    # -- writes ---------------------------------------------------------------------------

    def _commit_batch(self, fns: list[Callable[[PgWriteTx], Any]]
                      ) -> tuple[list[tuple[bool, Any]], list[Callable[[], None]]]:
        try:
            return self._commit_batch_once(fns)
        except psycopg.OperationalError as exc:
            # The server is gone or refused the commit: nothing of the batch is durable.
            # The next batch reconnects (see _ensure_writer).
            self._observe_error("commit")
            raise StoreUnavailable("database") from exc

    def _commit_batch_once(self, fns: list[Callable[[PgWriteTx], Any]]
                           ) -> tuple[list[tuple[bool, Any]], list[Callable[[], None]]]:
        started = time.perf_counter()
        conn = self._ensure_writer()
        outcomes: list[tuple[bool, Any]] = []
        callbacks: list[Callable[[], None]] = []
        try:
            for group in together_groups(fns):
                if len(group) > 1 and self._run_together(conn, group, outcomes, callbacks):
                    continue
                for fn in group:
                    outcome, tx = self._run_unit(conn, fn)
                    outcomes.append(outcome)
                    if outcome[0]:
                        callbacks.extend(tx.after_commit)
            conn.commit()
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
            raise
        if self._observe_latency is not None:
            self._observe_latency("commit", time.perf_counter() - started)
        return outcomes, callbacks

    @staticmethod
    def _run_together(conn: psycopg.Connection, group: list[Callable[[PgWriteTx], Any]],
                      outcomes: list[tuple[bool, Any]], callbacks: list[Callable[[], None]]
                      ) -> bool:
        """Run units sharing a `together` runner as one step (group_commit.together_groups);
        False if it failed and was undone: the caller runs them one by one, where a UNIQUE
        race with another replica or a deadlock gets its retry."""
        conn.execute("SAVEPOINT together")
        tx = PgWriteTx(conn)
        try:
            results = getattr(group[0], TOGETHER)(tx, group)
        except psycopg.OperationalError as exc:
            # A deadlock victim (an OperationalError too) is undone and retried unit by
            # unit; anything else means the connection is gone: the whole batch fails.
            if not isinstance(exc, pg_errors.DeadlockDetected):
                raise
            conn.execute("ROLLBACK TO SAVEPOINT together")
            conn.execute("RELEASE SAVEPOINT together")
            return False
        except Exception as exc:
            conn.execute("ROLLBACK TO SAVEPOINT together")
            conn.execute("RELEASE SAVEPOINT together")
            log.debug("set-based step undone, units run one by one: %s", type(exc).__name__)
            return False
        conn.execute("RELEASE SAVEPOINT together")
        outcomes.extend(results)
        callbacks.extend(tx.after_commit)
        return True

    @staticmethod
    def _run_unit(conn: psycopg.Connection, fn: Callable[[PgWriteTx], Any]
                  ) -> tuple[tuple[bool, Any], PgWriteTx]:
        for attempt in (1, 2):
            conn.execute("SAVEPOINT unit")
            tx = PgWriteTx(conn)
            try:
                result = fn(tx)
            except UniqueRace as exc:
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                if attempt == 2:
                    return (False, exc), tx
                continue   # another replica committed the row first: run again, see it
            except pg_errors.DeadlockDetected as exc:
                # Two replicas' open batches locked rows in opposite orders and PostgreSQL
                # chose this statement to break the cycle: undoing the unit releases its
                # locks, the other batch goes on, and the unit runs once more; the rest of
                # this batch commits whatever becomes of it.
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                if attempt == 2:
                    unavailable = StoreUnavailable("database")
                    unavailable.__cause__ = exc
                    return (False, unavailable), tx
                continue
            except psycopg.OperationalError:
                raise      # the connection is gone: the whole batch fails
            except Exception as exc:
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                return (False, exc), tx
            conn.execute("RELEASE SAVEPOINT unit")
            return (True, result), tx
        raise AssertionError("unreachable")

    # -- reads ----------------------------------------------------------------------------
    async def fetchone(self, sql: str, params: Params = ()) -> PgRow | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[PgRow]:
        assert self._pool is not None
        started = time.perf_counter()
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(to_postgresql(sql), params or None)
                rows = await cursor.fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._observe_error("read")
            raise StoreUnavailable("database") from exc
        if self._observe_latency is not None:
            self._observe_latency("read", time.perf_counter() - started)
        return rows

    async def tables(self) -> dict[str, TableInfo]:
        types = {"bytea": "blob", "bigint": "integer", "integer": "integer",
                 "smallint": "integer", "double precision": "real", "real": "real"}
        columns: dict[str, dict[str, str]] = {}
        for r in await self.fetchall(
                "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
                " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND"
                " t.table_name = c.table_name WHERE c.table_schema = current_schema() AND"
                " t.table_type = 'BASE TABLE' AND c.table_name <> 'schema_migrations'"
                " ORDER BY c.table_name, c.ordinal_position"):
            columns.setdefault(r["table_name"], {})[r["column_name"]] = types.get(
                r["data_type"], "text")
        keys: dict[str, list[str]] = {}
        references: dict[str, set[str]] = {}
        for r in await self.fetchall(
                "SELECT tc.table_name, tc.constraint_type, k.column_name, ccu.table_name AS ref"
                " FROM information_schema.table_constraints tc"
                " JOIN information_schema.key_column_usage k ON k.constraint_name ="
                " tc.constraint_name AND k.table_schema = tc.table_schema"
                " LEFT JOIN information_schema.constraint_column_usage ccu ON"
                " ccu.constraint_name = tc.constraint_name AND ccu.table_schema ="
                " tc.table_schema WHERE tc.table_schema = current_schema() AND"
                " tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
                " ORDER BY tc.table_name, k.ordinal_position"):
            if r["constraint_type"] == "PRIMARY KEY":
                if r["column_name"] not in keys.setdefault(r["table_name"], []):
                    keys[r["table_name"]].append(r["column_name"])
            elif r["ref"] and r["ref"] != r["table_name"]:
                references.setdefault(r["table_name"], set()).add(r["ref"])
        return {name: TableInfo(name, cols, tuple(keys.get(name, ())),
                                frozenset(references.get(name, ())))
                for name, cols in columns.items()}

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self.fetchone("SELECT 1")
            return self._writer is not None and self._writer.alive
        except Exception:
            return False


def apply_migrations_postgresql(conn: psycopg.Connection) -> list[str]:
    """Apply the numbered migrations, each in its own transaction, under an advisory lock:
    replicas starting at once wait for each other and skip what is already applied."""
    applied = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.commit()
        for version, name, sql in migration_files():
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s",
                            (version,)).fetchone():
                conn.commit()
                continue
            try:
                for statement in split_statements(sql):
                    for pg_statement in ddl_to_postgresql(statement):
                        conn.execute(pg_statement)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (version, name))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            applied.append(name)
            log.info("applied migration %s", name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        conn.commit()
    return applied
