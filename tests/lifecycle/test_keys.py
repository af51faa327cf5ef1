"""Key rotation over HTTP: a new version, a background rewrap and reseal that never touches
audio, visible progress, and destruction of the old version once nothing uses it."""

from __future__ import annotations

import json
import uuid

import pytest

import keys
from gateway.ingest.pipeline import EVENT_RECORD
from gateway.lifecycle.rotation import get_key_service
from gateway.store.columns import id_text
from gateway.store.sealed import SealedColumn
from gateway.store.sealed import register as register_sealed_column
from tests.lifecycle.helpers import make_env
from tests.lifecycle.legacy import legacy_recording

AUDIO = b"\x00\x01audio-bytes-that-must-not-change" * 3000


async def _populate(env):
    a = await env.call("a", from_number="+14155550100")
    await env.event("a", "in-progress")
    rec = await env.recording(a, AUDIO)
    # One recording stored before per-recording keys: its DEK is still in blob_keys.
    env.legacy = await legacy_recording(env.gateway, env.tenant.id, a, AUDIO)
    await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": "+14155550177", "reason": "kept"})
    await env.request("POST", "/v1/subjects/search", json={"phone_number": "+14155550100"})
    return a, rec


def _version(sealed: bytes) -> int:
    try:
        return keys.sealed_version(sealed)
    except keys.UnitSealed:
        return 0


async def _versions(gateway, tenant_id) -> dict[str, set[int]]:
    """The KEK version of every sealed value of the tenant, by column (0: a record under
    its own unit key in the key store, which no KEK version protects)."""
    db = gateway.services.db
    out = {}
    for table, column in [("integrations", "credentials"), ("calls", "parties"),
                          ("call_events", "body"), ("recordings", "meta"),
                          ("legal_holds", "number_sealed"), ("legal_holds", "reason"),
                          ("subject_requests", "subject"), ("blob_keys", "wrapped")]:
        # call_events stores its tenant id as 16 bytes (migration 0013).
        tenant = uuid.UUID(tenant_id).bytes if table == "call_events" else tenant_id
        rows = await db.fetchall(f"SELECT {column} FROM {table} WHERE tenant_id = ? AND"
                                 f" {column} IS NOT NULL", (tenant,))
        out[f"{table}.{column}"] = {_version(bytes(r[0])) for r in rows}
    return out


async def test_rotation_rewraps_reseals_and_destroys_the_old_version(gateway):
    env = await make_env(gateway)
    other = await make_env(gateway, "other")
    call_id, rec = await _populate(env)
    await other.call("x")
    blob_before = await env.blob_bytes(rec)
    # A database backup taken before the rotation: the tenant's wrapped key rows.
    backup_rows = [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"]))
                   for r in await gateway.services.db.fetchall(
                       "SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?",
                       (env.tenant.id,))]
    wrapping_before = await gateway.services.keyring.wrapping_key(env.tenant.id)
    keys.open_tenant_keys(wrapping_before, uuid.UUID(env.tenant.id), backup_rows)
    service = get_key_service(gateway.services)
    await service.stop()  # drive the job by hand

    code, status, _ = await env.request("GET", "/v1/keys")
    assert code == 200 and status["versions"] == [1] and status["rotation"] is None
    assert status["tenant_root_key"] is True
    code, rotation, headers = await env.request("POST", "/v1/keys/rotate")
    assert code == 202 and rotation["to_version"] == 2 and rotation["state"] == "rewrapping"
    code, problem, _ = await env.request("POST", "/v1/keys/rotate")
    assert code == 409 and problem["rotation_id"] == rotation["id"]
    # New data is sealed under the new version at once.
    new_call = await env.call("b")
    row = await gateway.services.db.fetchone("SELECT parties FROM calls WHERE id = ?",
                                             (new_call,))
    # Parties are under their own unit key (format 2), outside the KEK versions.
    assert keys.unit_ref(bytes(row[0])) is not None

    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    assert rotation["state"] == "waiting"
    assert rotation["progress"]["percent"] == 100
    # Only the legacy recording's DEK is under a KEK; the new one's key is in the key store.
    assert rotation["progress"]["sources"]["blob_keys.wrapped"]["resealed"] == 1
    assert rotation["progress"]["sources"]["calls.parties"]["resealed"] == 0
    assert all(v <= {0, 2} for v in (await _versions(gateway, env.tenant.id)).values())
    # Inside the grace time the old version still exists.
    code, status, _ = await env.request("GET", "/v1/keys")
    assert status["versions"] == [1, 2]

    gateway.clock.advance(seconds=service.cfg.grace_seconds + 1)
    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    assert rotation["state"] == "completed" and rotation["destroyed_versions"] == [1]
    code, status, _ = await env.request("GET", "/v1/keys")
    assert status["versions"] == [2] and status["primary_version"] == 2

    # Audio untouched, everything still readable, the integration still verifies.
    assert await env.blob_bytes(rec) == blob_before
    for recording in (rec, env.legacy):
        code, audio, _ = await env.request("GET", f"/v1/recordings/{recording}/audio")
        assert code == 200 and audio == AUDIO
    code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
    assert call["from"] == "+14155550100" and len(call["events"]) == 2
    gateway.services.integrations._cache.clear()
    await env.event("a", "completed")
    code, holds, _ = await env.request("GET", "/v1/legal-holds")
    assert holds["items"][0]["phone_number"] == "+14155550177"
    code, requests, _ = await env.request("GET", "/v1/subjects/requests")
    assert requests["items"][0]["phone_number"] == "+14155550100"
    # The other tenant was not part of it.
    code, status, _ = await other.request("GET", "/v1/keys")
    assert status["versions"] == [1]
    # Key events in the audit log.
    events = [e for e in await env.audit_entries() if e["kind"] == "key_event"]
    # Deleting the old version's row is followed by a tenant root key rotation
    # ("rewrapped"), so the backup's copy of version 1 opens under no key that exists.
    assert [e["outcome"] for e in events] == ["rotation_started", "versions_destroyed",
                                              "rewrapped"]
    assert events[1]["details"]["destroyed_versions"] == [1]
    assert events[2]["details"]["reason"] == "key_versions_destroyed"
    wrapping_now = await gateway.services.keyring.wrapping_key(env.tenant.id)
    with pytest.raises(keys.DecryptionError):
        keys.open_tenant_keys(wrapping_now, uuid.UUID(env.tenant.id), backup_rows)
    # And again: version 3.
    code, rotation, _ = await env.request("POST", "/v1/keys/rotate")
    assert code == 202 and rotation["to_version"] == 3


async def test_late_old_version_writes_get_another_pass(gateway):
    env = await make_env(gateway)
    call_id, _ = await _populate(env)
    service = get_key_service(gateway.services)
    await service.stop()
    stale_ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    await env.request("POST", "/v1/keys/rotate")
    await service.run_pending()
    # A process that had not switched yet writes under version 1 during the grace time.
    late = stale_ring.seal_record("call-parties", call_id, json.dumps(
        {"from": "+14155550100", "to": "+14155550199"}).encode())
    await gateway.services.db.write(lambda tx: tx.execute(
        "UPDATE calls SET parties = ? WHERE id = ?", (late, call_id)))
    gateway.clock.advance(seconds=service.cfg.grace_seconds + 1)
    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    assert rotation["state"] == "completed" and rotation["progress"]["pass"] == 2
    code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
    assert code == 200 and call["from"] == "+14155550100"


async def test_unknown_ciphertext_blocks_destruction(gateway):
    env = await make_env(gateway)
    await _populate(env)
    service = get_key_service(gateway.services)
    await service.stop()
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    table = f"widgets_{uuid.uuid4().hex[:8]}"
    sealed = ring.seal_record("widget", "w1", b"secret")
    await gateway.services.db.write(lambda tx: (
        tx.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, tenant_id TEXT, secret"
                   + (" BYTEA)" if gateway.services.db.dialect == "postgresql" else " BLOB)")),
        tx.execute(f"INSERT INTO {table} VALUES ('w1', ?, ?)", (env.tenant.id, sealed))))
    await env.request("POST", "/v1/keys/rotate")
    await service.run_pending()
    gateway.clock.advance(seconds=service.cfg.grace_seconds + 1)
    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    assert rotation["state"] == "blocked" and f"{table}.secret" in rotation["detail"]
    code, status, _ = await env.request("GET", "/v1/keys")
    assert status["versions"] == [1, 2]
    # Once the feature registers its column, the next attempt (after the lease) finishes.
    register_sealed_column(SealedColumn(table, "secret", "widget"))
    gateway.clock.advance(seconds=service.cfg.lease_seconds + 1)
    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    assert rotation["state"] == "completed", rotation   # a new pass picked the column up
    assert rotation["progress"]["sources"][f"{table}.secret"]["resealed"] == 1
    row = await gateway.services.db.fetchone(f"SELECT secret FROM {table}")
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    assert ring.open_record("widget", "w1", bytes(row[0])) == b"secret"


def test_tenant_root_key_file(tmp_path):
    import os

    import pytest
    root = keys.FileRootKeyProvider.create(tmp_path / "root.key")
    tenant, other = uuid.uuid4(), uuid.uuid4()
    path = tmp_path / "t.key"
    created = keys.TenantRootKey.create(path, root, tenant)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        keys.TenantRootKey.create(path, root, tenant)
    rows = keys.new_tenant_keys(created, tenant)
    loaded = keys.TenantRootKey.load(path, root, tenant)
    ring = keys.open_tenant_keys(loaded, tenant, rows)
    assert ring.versions == (1,)
    # Bound to the tenant and to the root key; the root alone opens nothing.
    with pytest.raises(keys.DecryptionError):
        keys.TenantRootKey.load(path, root, other)
    with pytest.raises(keys.DecryptionError):
        keys.TenantRootKey.load(path, keys.FileRootKeyProvider.create(tmp_path / "r2"), tenant)
    with pytest.raises(keys.DecryptionError):
        keys.open_tenant_keys(root, tenant, rows)
    assert keys.TenantRootKey.destroy(path) is True and not path.exists()
    assert keys.TenantRootKey.destroy(path) is False
    with pytest.raises(ValueError, match="does not exist"):
        keys.TenantRootKey.load(path, root, tenant)


async def test_other_processes_pick_up_a_rotation_within_the_ring_cache_time(gateway):
    from gateway.services import open_services
    env = await make_env(gateway)
    await env.call()
    second = await open_services(gateway.config, gateway.clock)
    try:
        stale = await second.keyring.for_tenant(env.tenant.id)
        assert stale.primary_version == 1
        service = get_key_service(gateway.services)
        await service.stop()
        await env.request("POST", "/v1/keys/rotate")
        # Within the cache time the other process still uses its ring...
        assert (await second.keyring.for_tenant(env.tenant.id)) is stale
        # ...after it, the next use re-reads the versions and switches to the new one.
        second.keyring.cache_seconds = 0
        fresh = await second.keyring.for_tenant(env.tenant.id)
        assert fresh.primary_version == 2 and fresh.versions == (1, 2)
        assert (await second.keyring.for_tenant(env.tenant.id)).versions == (1, 2)
    finally:
        await second.close()


async def test_rotation_reseals_event_bodies_under_the_kek_by_their_text_id(gateway):
    """call_events keeps its ids as 16 bytes (migration 0013): the reseal walk binds each
    body to the id's text and pages by (received_at, id) across batches."""
    env = await make_env(gateway)
    other = await make_env(gateway, "other")
    call_id = await env.call("a")
    for status in ("ringing", "in-progress"):
        await env.event("a", status)
    await other.call("x")
    db = gateway.services.db
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    plain = {}
    # As a gateway without a key store sealed them: under the KEK (record format 1).
    for row in await db.fetchall("SELECT id, body FROM call_events WHERE call_id = ?",
                                 (call_id,)):
        text_id = id_text(row["id"])
        plain[text_id] = ring.open_record(EVENT_RECORD, text_id, bytes(row["body"]))
        sealed = ring.seal_record(EVENT_RECORD, text_id, plain[text_id])
        await db.write(lambda tx, s=sealed, i=row["id"]: tx.execute(
            "UPDATE call_events SET body = ? WHERE id = ?", (s, i)))
    service = get_key_service(gateway.services)
    await service.stop()
    service.cfg.rotation_batch_size = 1
    code, _, _ = await env.request("POST", "/v1/keys/rotate")
    assert code == 202
    await service.run_pending()
    code, rotation, _ = await env.request("GET", "/v1/keys/rotation")
    source = rotation["progress"]["sources"]["call_events.body"]
    assert (source["resealed"], source["errors"]) == (3, 0)
    gateway.services.keyring.forget(env.tenant.id)
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    rows = await db.fetchall("SELECT id, body FROM call_events WHERE call_id = ?", (call_id,))
    assert {keys.sealed_version(bytes(r["body"])) for r in rows} == {2}
    assert {id_text(r["id"]): ring.open_record(EVENT_RECORD, id_text(r["id"]), bytes(r["body"]))
            for r in rows} == plain
    code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
    assert code == 200 and len(call["events"]) == 3
