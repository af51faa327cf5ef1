"""How call_events stores its keys and times compactly (migration 0013; issue 12, bytes at
rest): ids as their UUID's 16 bytes, times as integer microseconds since the epoch (UTC),
the dedupe key folded with its integration. Readers turn them back into the text the API
serves; the SQL functions of the same names convert existing rows in the migration.

Imports only the standard library: the set-based write (gateway/ingest/set_write.py) runs
in the SQLite writer process and uses these too.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def fold_dedupe_key(integration_id: str, key_hash: bytes) -> bytes:
    """An event's stored dedupe key: the first 16 bytes of SHA-256 of the integration id
    (UTF-8) then the 16-byte hash of the platform's idempotency key, so one UNIQUE key
    dedupes per integration without storing the integration on the event."""
    return hashlib.sha256(integration_id.encode() + bytes(key_hash)).digest()[:16]


def id_bytes(text: str) -> bytes:
    """A UUID id's 16 bytes, as call_events stores its id and tenant_id."""
    return uuid.UUID(text).bytes


def id_text(value: bytes | str) -> str:
    """A stored 16-byte id in the usual 8-4-4-4-12 text (what the API and the seal's AAD
    use); text is returned as it is."""
    return value if isinstance(value, str) else str(uuid.UUID(bytes=bytes(value)))


def stored_id(kind: str, text: str) -> bytes | str:
    """An id as a column of `kind` (TableInfo.columns: 'blob' or 'text') holds it: generic
    per-tenant walks (key rotation, offboarding) pass the tenant id through this."""
    return id_bytes(text) if kind == "blob" else text


def micros(text: str | None) -> int | None:
    """A stored time (RFC 3339 text, as gateway.core.clock.isoformat writes it) as integer
    microseconds since the epoch: how call_events stores received_at and occurred_at."""
    if text is None:
        return None
    return datetime_micros(datetime.fromisoformat(text.replace("Z", "+00:00")))


def datetime_micros(when: datetime | None) -> int | None:
    """An aware datetime as integer microseconds since the epoch (`micros` without the
    text in between)."""
    if when is None:
        return None
    return (when - _EPOCH) // _MICROSECOND


def micros_text(value: int | None) -> str | None:
    """Integer microseconds back to the text every other time is stored and served in
    (gateway.core.clock.isoformat: UTC, microseconds, Z)."""
    if value is None:
        return None
    return (_EPOCH + value * _MICROSECOND).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def json_value(value: Any) -> Any:
    """A stored value as JSON keeps it (a resumable walk's cursor): bytes as {"hex": ...}."""
    if isinstance(value, (bytes, memoryview)):
        return {"hex": bytes(value).hex()}
    return value


def from_json_value(value: Any) -> Any:
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) else value


# SQL functions for SQLite (gateway/store/sqlite.py registers them for the migrations;
# gateway/store/dialect.py spells them for PostgreSQL). NULL in, or a value that does not
# convert, gives NULL.
def uuid_blob(text: str | None) -> bytes | None:
    try:
        return None if text is None else uuid.UUID(text).bytes
    except (TypeError, ValueError):
        return None


def iso_micros(text: str | None) -> int | None:
    try:
        return micros(text)
    except (TypeError, ValueError):
        return None
