"""Per-recording and per-hold keys in the key store, the move of recordings stored before
them out of `blob_keys`, and the periodic ledger replay that repairs a racing segment
rewrite (issue 11, items 1-3). Runs on SQLite + files and on PostgreSQL + S3."""

from __future__ import annotations

import asyncio
import uuid

import keys
from gateway.lifecycle.ledger import ledger_replay_job
from tests.lifecycle.helpers import make_env
from tests.lifecycle.legacy import legacy_recording, wrapped_dek
from tests.support.forensics import stored_segment_entries

AUDIO = bytes(range(256)) * 1200          # 300 KiB: several 64 KiB segments


async def _key_ref(gateway, recording_id: str) -> bytes | None:
    row = await gateway.services.db.fetchone("SELECT key_ref FROM recordings WHERE id = ?",
                                             (recording_id,))
    return bytes(row[0]) if row is not None and row[0] is not None else None


async def _read(env, recording_id: str, range_header: str | None = None):
    headers = {**env.auth, **({"Range": range_header} if range_header else {})}
    return await env.request("GET", f"/v1/recordings/{recording_id}/audio", headers=headers)


async def test_each_recording_key_is_in_the_key_store_and_leaves_with_it(gateway):
    env = await make_env(gateway)
    old_call = await env.call("old")
    old = await env.recording(old_call, AUDIO)
    gateway.clock.advance(days=31)
    kept_call = await env.call("kept")
    kept = await env.recording(kept_call, AUDIO)
    erased_call = await env.call("erased", from_number="+14155550123")
    erased = await env.recording(erased_call, AUDIO)
    tenant = env.tenant.id
    refs = {r: await _key_ref(gateway, r) for r in (old, kept, erased)}
    # The database holds where each key lives, never a key (and no blob_keys row).
    assert all(ref is not None and len(ref) == keys.BLOB_KEY_REF_LEN for ref in refs.values())
    assert await env.count("blob_keys") == 0
    assert len({keys.unit_ref(ref) for ref in refs.values()}) == 3
    for ref in refs.values():
        segment_id, entry = keys.unit_ref(ref)
        assert entry in await stored_segment_entries(gateway, tenant, segment_id)
    # Whole and by range.
    code, audio, _ = await _read(env, kept)
    assert code == 200 and audio == AUDIO
    code, part, _ = await _read(env, kept, "bytes=65530-131080")
    assert code == 206 and part == AUDIO[65530:131081]

    # Retention deletes the old recording (a 30-day recordings policy)...
    code, _, _ = await env.request("PUT", "/v1/retention", json={"recordings": 30})
    assert code == 200
    await env.sweep()
    # ...and an erasure the subject's call with its recording.
    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": "+14155550123"})
    assert code == 200 and result["status"] == "completed", result
    for gone in (old, erased):
        segment_id, entry = keys.unit_ref(refs[gone])
        assert entry not in await stored_segment_entries(gateway, tenant, segment_id)
        assert (await _read(env, gone))[0] == 404
    ledger = await gateway.services.keyring.units.ledger(tenant)
    named = {u for e in ledger for u in e.get("units", [])}
    for gone in (old, erased):
        segment_id, entry = keys.unit_ref(refs[gone])
        assert f"{segment_id}.{entry}" in named
    assert any(old in e.get("recordings", []) for e in ledger)
    code, audio, _ = await _read(env, kept)
    assert code == 200 and audio == AUDIO


async def test_recordings_stored_before_move_into_the_key_store(gateway):
    env = await make_env(gateway)
    call_id = await env.call("a")
    legacy = [await legacy_recording(gateway, env.tenant.id, call_id, AUDIO + bytes([i]))
              for i in range(3)]
    blob_before = await env.blob_bytes(legacy[0])
    # Before the move they open through blob_keys (the read fallback).
    code, audio, _ = await _read(env, legacy[0], "bytes=70000-70009")
    assert code == 206 and audio == AUDIO[70000:70010]

    recordings = gateway.services.recordings
    assert await recordings.migrate_recording_keys() == 3
    assert await recordings.migrate_recording_keys() == 0        # resumable, idempotent
    assert await env.count("blob_keys") == 0
    for i, recording_id in enumerate(legacy):
        ref = await _key_ref(gateway, recording_id)
        segment_id, entry = keys.unit_ref(ref)
        assert entry in await stored_segment_entries(gateway, env.tenant.id, segment_id)
        code, audio, _ = await _read(env, recording_id)
        assert code == 200 and audio == AUDIO + bytes([i])
        code, part, _ = await _read(env, recording_id, f"bytes={len(AUDIO) - 5}-")
        assert code == 206 and part == AUDIO[-5:] + bytes([i])
    # The blob itself was not touched: the DEK moved, it was not replaced.
    assert await env.blob_bytes(legacy[0]) == blob_before
    # A moved recording's key now leaves with it like any other.
    code, _, _ = await env.request("POST", "/v1/subjects/erase",
                                   json={"phone_number": "+14155550100"})
    assert code == 200
    assert (await _read(env, legacy[1]))[0] == 404


async def test_two_processes_moving_the_same_key_keep_one(gateway):
    """Two replicas starting at once both move a legacy key: one copy stays, the loser's
    copy is deleted from the key store again."""
    env = await make_env(gateway)
    call_id = await env.call("a")
    first = await legacy_recording(gateway, env.tenant.id, call_id, AUDIO)
    assert await wrapped_dek(gateway, first) is not None
    # A second process (another replica's start) moves it too: one wins, the other's
    # copy of the key is deleted again.
    from gateway.services import open_services
    second = await open_services(gateway.config, gateway.clock)
    try:
        moved = await asyncio.gather(gateway.services.recordings.migrate_recording_keys(),
                                     second.recordings.migrate_recording_keys())
    finally:
        await second.close()
    assert sum(moved) >= 1
    ref = await _key_ref(gateway, first)
    segment_id, entry = keys.unit_ref(ref)
    code, audio, _ = await _read(env, first)
    assert code == 200 and audio == AUDIO
    # Every key of this tenant's segments is the recording's (one) or an ingest key.
    listed = await gateway.services.keyring.units.key_store.list(f"{env.tenant.id}/units/")
    stored = [await stored_segment_entries(gateway, env.tenant.id, uuid.UUID(n.rsplit("/", 1)[1]))
              for n in listed]
    assert sum(entry in s for s in stored) == 1


async def test_hold_number_and_reason_under_the_holds_own_key(gateway):
    env = await make_env(gateway)
    code, hold, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": "+14155550177", "reason": "case 9"})
    assert code == 201 and hold["reason"] == "case 9"
    row = await gateway.services.db.fetchone(
        "SELECT number_sealed, reason FROM legal_holds WHERE id = ?", (hold["id"],))
    number_ref = keys.unit_ref(bytes(row["number_sealed"]))
    assert number_ref is not None and number_ref == keys.unit_ref(bytes(row["reason"]))
    assert number_ref[1] in await stored_segment_entries(gateway, env.tenant.id, number_ref[0])
    # Another hold has another key.
    code, other, _ = await env.request("POST", "/v1/legal-holds",
                                       json={"scope": "tenant", "reason": "audit"})
    other_row = await gateway.services.db.fetchone(
        "SELECT reason FROM legal_holds WHERE id = ?", (other["id"],))
    assert keys.unit_ref(bytes(other_row["reason"])) != number_ref

    code, _, _ = await env.request("DELETE", f"/v1/legal-holds/{hold['id']}")
    assert code == 204
    assert number_ref[1] not in await stored_segment_entries(gateway, env.tenant.id, number_ref[0])
    code, released, _ = await env.request("GET", f"/v1/legal-holds/{hold['id']}")
    assert code == 200 and released["active"] is False
    assert released["phone_number"] is None and released["reason"] is None
    code, listed, _ = await env.request("GET", "/v1/legal-holds")
    assert {h["id"]: h["reason"] for h in listed["items"]} == {hold["id"]: None,
                                                                other["id"]: "audit"}


class _GatedStore:
    """Another replica's view of the same key store whose segment writes wait for a gate:
    it has read the segment, and writes it back only after the first replica's erase."""

    def __init__(self, store) -> None:
        self._store = store
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def put(self, name: str, data: bytes) -> None:
        if "/units/" in name:
            self.reached.set()
            await self.gate.wait()
        await self._store.put(name, data)

    async def put_many(self, items: dict[str, bytes]) -> None:
        if any("/units/" in name for name in items):
            self.reached.set()
            await self.gate.wait()
        await self._store.put_many(items)


async def test_periodic_ledger_replay_repairs_a_racing_segment_rewrite(gateway):
    from gateway.services import open_services
    env = await make_env(gateway)
    tenant = env.tenant.id
    first = gateway.services.keyring.units
    ring = await gateway.services.keyring.for_tenant(tenant)
    x, y = await first.new_keys(tenant, 2)
    assert x.segment_id == y.segment_id
    sealed_x = ring.seal_record("test", "x", b"x", unit=x)
    sealed_y = ring.seal_record("test", "y", b"y", unit=y)
    second = await open_services(gateway.config, gateway.clock)
    try:
        other = second.keyring.units
        gated = _GatedStore(other.key_store)
        other.key_store = gated
        # Replica 2 erases y: it reads the segment, then stalls before writing it back.
        racing = asyncio.create_task(other.erase(tenant, [sealed_y]))
        await asyncio.wait_for(gated.reached.wait(), 10)
        # Replica 1 erases x meanwhile; then replica 2's stale write brings x back.
        await first.erase(tenant, [sealed_x])
        assert x.entry_id not in await stored_segment_entries(gateway, tenant, x.segment_id)
        gated.gate.set()
        await racing
        assert x.entry_id in await stored_segment_entries(gateway, tenant, x.segment_id)

        # The periodic replay (on either replica) deletes it again within its interval.
        job = ledger_replay_job(second, interval=0.2)
        await job.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while x.entry_id in await stored_segment_entries(gateway, tenant, x.segment_id):
                assert loop.time() - started < 5, "the resurrected key was not deleted again"
                await asyncio.sleep(0.05)
        finally:
            await job.stop()
        assert job.failures == 0
        stored = await stored_segment_entries(gateway, tenant, x.segment_id)
        assert x.entry_id not in stored and y.entry_id not in stored
    finally:
        await second.close()


def test_unit_blob_opens_only_with_its_key_object_and_tenant():
    import io

    import pytest
    tenant, object_id = uuid.uuid4(), uuid.uuid4()
    unit = keys.new_unit_key(uuid.uuid4())
    writer, key_ref = keys.new_unit_blob(unit, tenant, object_id, segment_size_log2=12)
    blob = writer.update(AUDIO) + writer.finalize()
    assert len(key_ref) == keys.BLOB_KEY_REF_LEN and keys.unit_ref(key_ref) == unit.ref
    assert unit._key not in blob and unit._key not in key_ref
    units = {unit.ref: unit}
    reader = keys.open_unit_blob(units, tenant, object_id, key_ref)
    assert b"".join(reader.read_range(io.BytesIO(blob), len(AUDIO), 5000, 9000)) == \
        AUDIO[5000:9000]
    other = keys.new_unit_key(unit.segment_id)
    for args in [({}, tenant, object_id, key_ref),                      # key erased
                 (units, tenant, object_id, key_ref[:-1]),              # malformed
                 (units, tenant, object_id, key_ref[:-1] + b"\x30")]:   # bad geometry
        with pytest.raises(keys.DecryptionError):
            keys.open_unit_blob(*args)
    # Another key, tenant or object: the header's commitment and ids fail before any byte.
    for wrong_units, wrong in (({unit.ref: other}, (tenant, object_id)),
                               (units, (uuid.uuid4(), object_id)),
                               (units, (tenant, uuid.uuid4()))):
        reader = keys.open_unit_blob(wrong_units, *wrong, key_ref)
        with pytest.raises(keys.DecryptionError):
            b"".join(reader.read_range(io.BytesIO(blob), len(AUDIO), 0, 10))
