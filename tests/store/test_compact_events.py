"""Issue 12, bytes at rest (migration 0013): call_events stores its ids as 16 bytes, its
times as integer microseconds and its sealed body under short field names, and every
reader still serves the text it served before."""

from __future__ import annotations

import json
import uuid

import pytest

from gateway.core.clock import isoformat
from gateway.ingest.stored_event import event_body
from gateway.store.columns import micros, micros_text
from tests.calls.helpers import one_call

pytestmark = pytest.mark.backends("sqlite", "postgres")


async def test_an_event_is_stored_compactly_and_served_as_text(gateway):
    tenant, call_id = await one_call(gateway, "pc-compact")
    row = await gateway.services.db.fetchone(
        "SELECT id, tenant_id, received_at, occurred_at FROM call_events WHERE call_id = ?",
        (call_id,))
    assert len(bytes(row["id"])) == 16 and bytes(row["tenant_id"]) == uuid.UUID(tenant.id).bytes
    assert isinstance(row["received_at"], int)
    status, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    assert status == 200
    [event] = call["events"]
    assert event["received_at"] == micros_text(row["received_at"])
    assert event["received_at"] == isoformat(gateway.clock.now())      # the same text form
    assert event["occurred_at"] == micros_text(row["occurred_at"])


def test_times_round_trip_through_microseconds():
    for text in ("2026-03-01T10:00:00.000000Z", "2026-12-07T11:59:27.542219Z",
                 "1969-12-31T23:59:59.999999Z"):
        assert micros_text(micros(text)) == text
    assert micros(None) is None and micros_text(None) is None


def test_a_body_sealed_before_migration_0013_reads_like_a_new_one():
    old = {"kind": "call", "status": "completed", "direction": "inbound",
           "started_at": "2026-03-01T10:00:00.000000Z", "duration_seconds": 42,
           "diagnostics": {"hangup_cause": "normal_clearing"}}
    new = {"d": "inbound", "s": micros("2026-03-01T10:00:00.000000Z"), "n": 42,
           "g": {"hangup_cause": "normal_clearing"}}
    for body in (old, new):
        assert event_body("call", "completed", json.dumps(body).encode()) == old
    recording = {"r": "re-1", "u": "https://example.test/r.wav", "c": "audio/wav", "h": 2}
    assert event_body("recording", None, json.dumps(recording).encode()) == {
        "kind": "recording", "platform_recording_id": "re-1",
        "url": "https://example.test/r.wav", "content_type": "audio/wav", "channels": 2}
