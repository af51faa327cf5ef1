"""A recording as the gateway stored it before per-recording keys (issue 11): its data key
wrapped under the tenant's KEK in the database's `blob_keys`, its metadata sealed under the
KEK (record format 1), no `key_ref`. Written through the same blob store and database a
deployment of that time used, so the migration and the read fallback meet real rows."""

from __future__ import annotations

import json
import uuid

from gateway.calls.recordings import META_RECORD
from gateway.core.clock import isoformat
from gateway.store.ids import new_id


async def legacy_recording(gateway, tenant_id: str, call_id: str, data: bytes) -> str:
    services = gateway.services
    ring = await services.keyring.for_tenant(tenant_id)
    recording_id = new_id()
    writer, wrapped = ring.new_blob(uuid.UUID(recording_id))
    sink = await services.blobs.create(tenant_id, recording_id)
    await sink.write(writer.update(data) + writer.finalize())
    await sink.commit()
    meta = ring.seal_record(META_RECORD, recording_id, json.dumps(
        {"content_type": "audio/wav", "length": len(data)}).encode())
    now = isoformat(gateway.clock.now())

    def unit(tx) -> None:
        tx.execute("INSERT INTO blob_keys (object_id, tenant_id, kek_version, wrapped,"
                   " created_at) VALUES (?, ?, ?, ?, ?)",
                   (recording_id, tenant_id, ring.primary_version, wrapped, now))
        tx.execute("INSERT INTO recordings (id, tenant_id, call_id, state, source, meta,"
                   " created_at, updated_at) VALUES (?, ?, ?, 'available', 'upload', ?, ?, ?)",
                   (recording_id, tenant_id, call_id, meta, now, now))

    await services.db.write(unit)
    return recording_id


async def wrapped_dek(gateway, recording_id: str) -> bytes | None:
    row = await gateway.services.db.fetchone(
        "SELECT wrapped FROM blob_keys WHERE object_id = ?", (recording_id,))
    return bytes(row[0]) if row is not None else None
