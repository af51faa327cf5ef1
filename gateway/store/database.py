"""The metadata database seam: what every service may ask of persistence.

Invariants (each backend keeps all of them; docs/architecture.md explains why):
- `await db.write(fn)` runs the synchronous unit `fn(tx)` inside a transaction shared with
  other queued units (group commit) and returns only after that transaction is durable
  (SQLite: WAL fsync'd, synchronous=FULL; PostgreSQL: COMMIT with synchronous_commit on).
  If `fn` raises, its own writes are rolled back (a savepoint per unit) and the exception
  propagates; its neighbours in the batch commit normally.
- A unit sees the committed effects of every unit whose `write` returned before it was
  queued, and the effects of earlier units in its own batch. Units run one at a time.
- `tx.after_commit` callbacks run on the event loop after durability, never on failure.
- Reads (`fetchone`, `fetchall`) see at least every write whose `write` has returned (read
  your writes); they never block the writer.
- "Exactly once" across replicas comes from constraints (UNIQUE, primary keys) and row
  leases inside units, never from process memory: any number of processes may write.
- SQL is written once, in the portable subset: `?` or `:name` placeholders, ON CONFLICT
  upserts, no backend functions; `gateway.store.dialect` turns it into each backend's form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.errors import DomainError

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class Row(Protocol):
    """A result row: by column name (`row["id"]`), by position, `dict(row)`."""

    def __getitem__(self, key: str | int) -> Any: ...
    def keys(self) -> list[str]: ...


class WriteTx(Protocol):
    """What a write unit may do: statements inside the batch's transaction. Units are
    synchronous and quick: statements and CPU only, no awaits, no other I/O."""

    after_commit: list[Callable[[], None]]

    def execute(self, sql: str, params: Params = ()) -> int: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int: ...
    # for_update=True: the rows read stay locked until the batch commits, so another
    # replica cannot change them between this read and this unit's write (a read-modify-
    # write such as a status merge). SQLite needs nothing: BEGIN IMMEDIATE already
    # serialises every writer on the file.
    def fetchone(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> Row | None: ...
    def fetchall(self, sql: str, params: Params = (), *,
                 for_update: bool = False) -> list[Row]: ...


@dataclass(frozen=True)
class TableInfo:
    """What code that walks the schema (key rotation, offboarding, storage migrate) may
    know of a table, the same on every backend."""
    name: str
    columns: dict[str, str]          # column -> "text" | "integer" | "blob" | "real"
    primary_key: tuple[str, ...]
    references: frozenset[str]       # tables its foreign keys point at


class Database(Protocol):
    dialect: str                    # "sqlite" | "postgresql"
    commits: int
    units: int

    async def open(self) -> Database: ...
    async def close(self) -> None: ...
    async def write(self, fn: Callable[[WriteTx], T]) -> T: ...
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...
    async def ping(self) -> bool: ...
    async def tables(self) -> dict[str, TableInfo]: ...   # the application's tables


class IntegrityError(Exception):
    """A constraint (UNIQUE, FOREIGN KEY, CHECK) refused a write, whatever the backend."""


class StoreUnavailable(DomainError):
    """A backing store (database, blob store, key store) cannot be reached or cannot write
    now. Nothing was half-written; the caller may retry (HTTP: 503 with Retry-After, which
    platforms honour by redelivering)."""

    def __init__(self, component: str, retry_after: int = 5) -> None:
        super().__init__(503, "unavailable", "service temporarily unavailable",
                         f"the {component} is not available; retry later",
                         component=component)
        self.hints["retry_after"] = str(retry_after)
