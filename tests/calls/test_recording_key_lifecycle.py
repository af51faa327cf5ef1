"""A recording's own key (issue 11) over its whole life through HTTP: written to the key
store with the upload, used for whole and ranged reads, and deleted from the key store
when an upload is cut off, so nothing of an unfinished recording stays openable."""

from __future__ import annotations

import os
import uuid

import keys
from tests.calls.helpers import one_call
from tests.support.forensics import stored_segment_entries


async def test_upload_key_is_in_the_key_store_and_ranges_read_with_it(gateway):
    tenant, call_id = await one_call(gateway, "pc-keys")
    audio = os.urandom(200_000)
    code, stored, _ = await gateway.request(
        "POST", f"/v1/calls/{call_id}/recordings", data=audio,
        headers={**tenant.auth, "Content-Type": "audio/wav"})
    assert code == 201, stored
    row = await gateway.services.db.fetchone("SELECT key_ref FROM recordings WHERE id = ?",
                                             (stored["id"],))
    segment_id, entry = keys.unit_ref(bytes(row[0]))
    assert entry in await stored_segment_entries(gateway, tenant.id, segment_id)
    assert await gateway.services.db.fetchall("SELECT object_id FROM blob_keys") == []
    for range_header, expected in (("bytes=0-0", audio[:1]),
                                   ("bytes=65535-65537", audio[65535:65538]),
                                   ("bytes=199990-", audio[199990:])):
        code, part, _ = await gateway.request(
            "GET", f"/v1/recordings/{stored['id']}/audio",
            headers={**tenant.auth, "Range": range_header})
        assert code == 206 and part == expected


async def test_upload_cut_off_at_the_size_limit_leaves_no_key(gateway):
    tenant, call_id = await one_call(gateway, "pc-keys")
    # A streamed upload (no Content-Length) that crosses the limit midway: the recording
    # has begun (row, key) when the 413 ends it.
    gateway.services.config.limits.max_recording_bytes = 100_000

    async def body():
        for _ in range(6):
            yield os.urandom(50_000)

    code, problem, _ = await gateway.request(
        "POST", f"/v1/calls/{call_id}/recordings", data=body(),
        headers={**tenant.auth, "Content-Type": "audio/wav"})
    assert code == 413, problem
    assert await gateway.services.db.fetchall("SELECT id FROM recordings") == []
    # The abort wrote a ledger entry naming the recording and its key, then deleted it.
    ledger = await gateway.services.keyring.units.ledger(tenant.id)
    (entry,) = [e for e in ledger if e.get("recordings")]
    (unit,) = entry["units"]
    segment_id, _, entry_id = unit.partition(".")
    assert uuid.UUID(entry_id) not in await stored_segment_entries(gateway, tenant.id, uuid.UUID(segment_id))
