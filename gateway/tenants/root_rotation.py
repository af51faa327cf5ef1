"""Tenant root key rotation: a new tenant root key wraps everything the old one wrapped, then
the old one is destroyed (issue 11 item 4; `gateway keys rotate-tenant-root`, and
`gateway tenant move-region`, which re-encrypts into the new region this way).

What the tenant root key wraps directly: the tenant's rows in `tenant_keys` (KEK versions
and the BIK) and the segment key of each unit-key segment `<tenant>/units/<segment>` in
the key store. Both are rewrapped inside keys/ (keys.rewrap_tenant_keys,
keys.rewrap_unit_segment); no record, DEK or blob changes.

Order, each step safe to repeat after a crash at any instant:
1. The next key is stored as `<tenant>.key.next` (reused if a cut-short run left one).
   While it exists, every replica's wrapping key is the switch: it wraps under the next
   key and opens under either (gateway/tenants/keyring.py), which is how "both keys can
   open during the switch" is recorded.
2. Wait longer than the replicas' wrapping-key cache, so none still wraps under the old.
3. Rewrap the key rows (one write unit, with the `key_event` entry in the tenant's
   transparency log) and every unit segment, then list the segments again and rewrap
   what a slow in-flight write added; replay the tenant's deletion ledger, so a segment
   an erasure rewrote while this one rewrapped it loses the erased keys again.
4. Promote: `<tenant>.key` is overwritten with the next key (the key store's put shreds
   what it replaces: the old key is destroyed), then `<tenant>.key.next` is deleted.

Limits: a database backup taken before step 3 holds rows wrapped under the old key, which
no longer exists after step 4; so such a backup opens under neither key. A key-store
backup taken before step 4 still holds the old key: key-store backup retention bounds
this as it bounds erasure (docs/retention-and-dsr.md).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import keys
from gateway.errors import DomainError
from gateway.store.database import WriteTx
from gateway.tenants.keyring import (
    WRAPPING_CACHE_SECONDS,
    next_tenant_root_key_name,
    tenant_root_key_name,
)

__all__ = ["ROTATE_SETTLE_SECONDS", "rotate_tenant_root_key"]

# Longer than any replica trusts a cached wrapping key.
ROTATE_SETTLE_SECONDS = WRAPPING_CACHE_SECONDS * 1.5
OPERATOR_ACTOR = {"type": "system", "id": "operator-cli"}


async def rotate_tenant_root_key(services: Any, audit: Any, tenant_id: str, *,
                                 settle_seconds: float = ROTATE_SETTLE_SECONDS,
                                 reason: str = "rotation") -> dict[str, Any]:
    """Rotate the tenant's root key (see the module docstring); returns what was done."""
    db, keyring, store = services.db, services.keyring, services.key_store
    if store is None:
        raise DomainError(409, "conflict", "no key store",
                          "tenant root keys live in the key store ([storage] key_store_url)")
    if await db.fetchone("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)) is None:
        raise DomainError(404, "not-found", "tenant not found")
    tid = uuid.UUID(tenant_id)
    current_name, next_name = tenant_root_key_name(tenant_id), next_tenant_root_key_name(tenant_id)

    # 1. the next key, stored before anything is wrapped under it
    next_bytes = await store.get(next_name)
    resumed = next_bytes is not None
    if next_bytes is None:
        _, next_bytes = keys.TenantRootKey.generate(keyring.root, tid)
        await store.put(next_name, next_bytes)
    new = keys.TenantRootKey.from_bytes(next_bytes, keyring.root, tid)
    current_bytes = await store.get(current_name)
    old: keys.RootKeyProvider = keyring.root if current_bytes is None or current_bytes == \
        next_bytes else keys.TenantRootKey.from_bytes(current_bytes, keyring.root, tid)
    keyring.forget(tenant_id)

    # 2. every replica now wraps under the next key
    await asyncio.sleep(settle_seconds)

    # 3. rewrap the rows, with the log entry, in one write unit
    def rewrap_rows(tx: WriteTx) -> tuple[int, int]:
        rows = tx.fetchall("SELECT kind, version, wrapped FROM tenant_keys"
                           " WHERE tenant_id = ?", (tenant_id,))
        rewrapped = keys.rewrap_tenant_keys(old, new, tid, [
            keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows])
        for row in rewrapped:
            tx.execute("UPDATE tenant_keys SET wrapped = ? WHERE tenant_id = ? AND kind = ?"
                       " AND version = ?", (row.wrapped, tenant_id, row.kind, row.version))
        seq = audit.append_in_tx(tx, tenant_id, {
            "kind": "key_event", "actor": OPERATOR_ACTOR, "outcome": "rewrapped",
            "scope": "tenant", "details": {"event": "tenant_root_key_rotated",
                                           "reason": reason, "key_rows": len(rows),
                                           "resumed": resumed}})
        return len(rewrapped), seq

    rows_rewrapped, log_index = await db.write(rewrap_rows)
    segments = await _rewrap_segments(store, old, new, tid)
    segments += await _rewrap_segments(store, old, new, tid)
    if keyring.units is not None:
        await keyring.units.replay_refs(tenant_id, await keyring.units.ledger(tenant_id))

    # 4. the next key becomes the current one; the old one is destroyed by the overwrite
    await store.put(current_name, next_bytes)
    await store.delete(next_name)
    keyring.forget(tenant_id)
    return {"tenant_id": tenant_id, "key_rows_rewrapped": rows_rewrapped,
            "segments_rewrapped": segments, "resumed": resumed, "log_index": log_index}


async def _rewrap_segments(store: Any, old: keys.RootKeyProvider, new: keys.TenantRootKey,
                           tid: uuid.UUID) -> int:
    done = 0
    prefix = f"{tid}/units/"
    for name in await store.list(prefix):
        data = await store.get(name)
        if data is None:   # erased meanwhile
            continue
        rewrapped = keys.rewrap_unit_segment(old, new, tid, uuid.UUID(name[len(prefix):]),
                                             data)
        if rewrapped is not None:
            await store.put(name, rewrapped)
            done += 1
    return done
