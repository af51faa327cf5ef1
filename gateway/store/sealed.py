"""The registry of sealed columns: every column that holds a tenant's
`seal_record(record_kind, <id column>, ...)` ciphertext.

Each owner registers its own columns at import time, next to the code that seals them
(`gateway/ingest/pipeline.py`: call parties and events, `gateway/ingest/integrations.py`:
credentials, `gateway/calls/recordings.py`: recording meta, `gateway/lifecycle/holds.py`:
legal holds, ...). Key rotation (`gateway/lifecycle/rotation.py`) reads `registered()` to
know what to reseal; it refuses to destroy an old key version while a BLOB column nobody
registered still holds ciphertext under it, so a forgotten registration blocks a rotation
instead of losing data.

Invariants:
- Imports nothing from gateway: any module may import it at module level without a circle.
- Registering the same `table.column` again is a no-op (a module imported twice, tests).
- The order of `registered()` is the order of registration (rotation progress lists it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SealedColumn", "register", "registered"]


@dataclass(frozen=True)
class SealedColumn:
    """`record_kind` and the value of `id_column` are what the record is bound to (its AAD).

    `keyset` are the columns the rotation job pages by, in the order of an index led by
    tenant_id (so each page is an index range), ending in a unique column; empty means the
    table's primary key. Rows are updated by their primary key, which every backend has."""

    table: str
    column: str
    record_kind: str
    id_column: str = "id"
    keyset: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


_REGISTRY: dict[str, SealedColumn] = {}


def register(column: SealedColumn) -> SealedColumn:
    """Add `column` (once); returns it, so an owner can keep it as a constant."""
    return _REGISTRY.setdefault(column.name, column)


def registered() -> tuple[SealedColumn, ...]:
    return tuple(_REGISTRY.values())
