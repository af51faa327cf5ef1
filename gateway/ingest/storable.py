"""Whether a verified event can be stored at all (`unusable_field`), its dedupe hash and
the compact JSON sealed records hold (gateway/ingest/stored_event.py has the event body).

Why a module of its own: every webhook's events pass through these before anything is
written, and their rules (what a column, an encoder or the calendar can hold) are about
the stored form, not about the pipeline's steps.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from adapters.events import Event
from gateway.core.clock import isoformat

# Largest integer a database column holds (signed 64-bit, SQLite and PostgreSQL BIGINT).
_INT64 = 2 ** 63


def unusable_field(event: Event) -> str | None:
    """The name of the first field of a verified event that no later step could store, or
    None. A platform signed it, so it is no attack on the signature, but storing it would
    fail (a lone surrogate cannot be encoded, sealed, hashed or indexed; an integer beyond
    64 bits overflows the column; a time at the edge of the calendar overflows when
    converted to UTC). Retrying never changes that, so the delivery must not be a 5xx."""
    values = vars(event)
    for name in _field_names(type(event)):
        value = values[name]
        # The common cases first (every webhook pays this): no value, or ASCII text.
        if value is None or (type(value) is str and value.isascii()):
            continue
        items = list(value.items()) if isinstance(value, Mapping) else [value]
        for item in items:
            for part in item if isinstance(item, tuple) else (item,):
                if _unusable(part):
                    return name
    return None


def _unusable(part: Any) -> bool:
    if isinstance(part, str):
        if part.isascii():      # nothing to encode
            return False
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            return True
    elif isinstance(part, int) and not -_INT64 <= part < _INT64:
        return True
    elif isinstance(part, datetime):
        if 1 < part.year < 9999:  # a day's offset cannot leave the calendar
            return False
        try:
            isoformat(part)
        except (OverflowError, ValueError):
            return True
    return False


@functools.cache
def _field_names(event_type: type) -> tuple[str, ...]:
    return tuple(spec.name for spec in fields(event_type))


def dedupe_hash(key: str) -> bytes:
    """The stored dedupe key: SHA-256 of the platform's idempotency key, its first 16 bytes
    (migration 0009: enough against collisions, a third of the hex form's bytes)."""
    return hashlib.sha256(key.encode()).digest()[:16]


# One encoder: json.dumps with any option builds a new JSONEncoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """JSON without spaces, as the sealed records hold it."""
    return _COMPACT_JSON.encode(value)
