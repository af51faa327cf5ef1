"""The sealed body of a call_events row (migration 0013, issue 12: bytes at rest): the
minimised event without kind, status and occurred_at (the row's columns), under
one-letter names, its times as integer microseconds. `event_body` gives readers the
names, kind, status and text times back, for bodies sealed before 0013 too (long names,
text times, kind and status inside). docs/crypto-formats.md describes the form."""

from __future__ import annotations

import json
from typing import Any

from adapters.events import CallEvent, Event
from gateway.ingest.storable import compact_json
from gateway.store.columns import datetime_micros, micros_text

SHORT_NAMES = {"direction": "d", "started_at": "s", "ended_at": "e", "duration_seconds": "n",
               "sequence": "q", "diagnostics": "g", "platform_recording_id": "r", "url": "u",
               "content_type": "c", "channels": "h"}
_LONG_NAMES = {short: name for name, short in SHORT_NAMES.items()}
_TIME_FIELDS = ("started_at", "ended_at")


def sealed_event_body(event: Event) -> bytes:
    """What is sealed of an event, made straight from it (every webhook pays this): the
    short names above, times as integer microseconds, fields without a value left out
    (readers take a missing field as null)."""
    if isinstance(event, CallEvent):
        body = {"d": event.direction, "s": datetime_micros(event.started_at),
                "e": datetime_micros(event.ended_at), "n": event.duration_seconds,
                "q": event.sequence, "g": dict(event.diagnostics) or None}
    else:
        body = {"r": event.platform_recording_id, "u": event.url, "c": event.content_type,
                "n": event.duration_seconds, "h": event.channels}
    return compact_json({key: value for key, value in body.items()
                         if value is not None}).encode()


def event_body(kind: str, status: str | None, opened: bytes) -> dict[str, Any]:
    """An event's body as readers show it: kind and status (the row's columns) first, then
    the opened body's fields under their names, times as text."""
    body: dict[str, Any] = {"kind": kind}
    if status is not None:
        body["status"] = status
    for key, value in json.loads(opened).items():
        name = _LONG_NAMES.get(key, key)
        body[name] = micros_text(value) if key != name and name in _TIME_FIELDS else value
    return body
