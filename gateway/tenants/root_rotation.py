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

Root key rotation (`gateway keys rotate-root`, `rotate_root_key`): what the root key wraps
is each tenant root key in the key store (`<tenant>.key`, and `<tenant>.key.next` of a
tenant rotation cut short) and, for a tenant without one (created before tenant root
keys), its key rows and unit-key segments. Order, each step safe to repeat:
1. `<root key>.next` is created (reused if a cut-short run left one); from then on a
   gateway that starts wraps under it and opens under either (keys/_root.py).
2. Everything above is rewrapped under the next key (what already opens under it is
   skipped), and each active tenant's log gets a `key_event`.
3. The root key file is overwritten in place with the next key, then `.next` is renamed
   over it (keys.FileRootKeyProvider.finish_rotation): the old root key is destroyed.
Run it with every gateway process stopped: a process that loaded the root key before
step 1 would keep wrapping new tenant keys under the old key. The command refuses while
something answers on `[server] listen`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import keys
from gateway.errors import DomainError
from gateway.store.database import WriteTx
from gateway.tenants.keyring import (
    WRAPPING_CACHE_SECONDS,
    next_tenant_root_key_name,
    tenant_root_key_name,
)

__all__ = ["ROTATE_SETTLE_SECONDS", "destroyed_versions_shredder", "rotate_root_key",
           "rotate_tenant_root_key"]

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


def destroyed_versions_shredder(services: Any, audit: Any
                                ) -> Callable[[str], Awaitable[Any]] | None:
    """What destroys a deleted key version (KEK or BIK, gateway/lifecycle/rotation.py and
    blind_index.py) for good: a database backup still holds its row wrapped under the
    tenant root key, so that key is rotated and the old one overwritten. None without a
    key store (tenant root keys live there)."""
    if services.key_store is None:
        return None

    async def shred(tenant_id: str) -> Any:
        return await rotate_tenant_root_key(services, audit, tenant_id,
                                            reason="key_versions_destroyed")
    return shred


async def _rewrap_segments(store: Any, old: keys.RootKeyProvider, new: keys.RootKeyProvider,
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


async def rotate_root_key(services: Any, audit: Any) -> dict[str, Any]:
    """Rotate the root key (see the module docstring); returns what was done."""
    db, keyring, store = services.db, services.keyring, services.key_store
    path = services.config.root_key_path
    old, new, resumed = keys.FileRootKeyProvider.begin_rotation(path)
    # Anything this process wraps from now on goes under the next key.
    keyring.root = keys.FileRootKeyProvider.load(path)
    done = {"tenant_root_keys_rewrapped": 0, "key_rows_rewrapped": 0,
            "segments_rewrapped": 0}
    tenants = await db.fetchall("SELECT id, state FROM tenants ORDER BY id")
    for row in tenants:
        tenant_id = row["id"]
        tid = uuid.UUID(tenant_id)
        has_tenant_root = False
        if store is not None and await store.get(tenant_root_key_name(tenant_id)) is None \
                and await store.get(next_tenant_root_key_name(tenant_id)) is not None:
            # Its rows are half under the root key, half under the next tenant root key.
            raise DomainError(409, "conflict", "a tenant root key rotation is unfinished",
                              f"finish it first: gateway keys rotate-tenant-root --tenant"
                              f" {tenant_id}")
        if store is not None:
            for name in (tenant_root_key_name(tenant_id), next_tenant_root_key_name(tenant_id)):
                data = await store.get(name)
                if data is None:
                    continue
                has_tenant_root = has_tenant_root or name == tenant_root_key_name(tenant_id)
                rewrapped = keys.TenantRootKey.rewrap_stored(data, old, new, tid)
                if rewrapped is not None:
                    await store.put(name, rewrapped)    # the key store shreds what it replaces
                    done["tenant_root_keys_rewrapped"] += 1
        if not has_tenant_root:
            # Rows and segments wrapped by the root key itself.
            done["key_rows_rewrapped"] += await db.write(
                lambda tx, tenant_id=tenant_id: _rewrap_root_rows(tx, old, new, tenant_id))
            if store is not None:
                done["segments_rewrapped"] += await _rewrap_segments(store, old, new, tid)
        keyring.forget(tenant_id)
        if row["state"] == "active" and audit is not None:
            await audit.append(tenant_id, {
                "kind": "key_event", "actor": OPERATOR_ACTOR, "outcome": "rewrapped",
                "scope": "tenant", "details": {"event": "root_key_rotated",
                                               "resumed": resumed}})
    keys.FileRootKeyProvider.finish_rotation(path)
    keyring.root = keys.FileRootKeyProvider.load(path)
    return {**done, "tenants": len(tenants), "resumed": resumed}


def _rewrap_root_rows(tx: WriteTx, old: keys.RootKeyProvider, new: keys.RootKeyProvider,
                      tenant_id: str) -> int:
    rows = tx.fetchall("SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?",
                       (tenant_id,))
    rewrapped = keys.rewrap_tenant_keys(old, new, uuid.UUID(tenant_id), [
        keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows])
    for row in rewrapped:
        tx.execute("UPDATE tenant_keys SET wrapped = ? WHERE tenant_id = ? AND kind = ?"
                   " AND version = ?", (row.wrapped, tenant_id, row.kind, row.version))
    return len(rewrapped)


ROTATE_ROOT_HELP = """\
Replace the root key: a new root key is written beside the old one (<root key>.next),
every tenant root key (and the key rows and unit-key segments of tenants without one) is
rewrapped under it, a key_event is logged in each active tenant's transparency log, then
the old root key file is overwritten with the new key and replaced by it (destroyed). No
record, key row under a tenant root key or recording is touched. Stop every gateway
process first. Safe to run again after an interruption: it finishes the rotation it
started (while <root key>.next exists, a starting gateway wraps under it and opens
under both keys)."""


def _answers(listen: str) -> bool:
    """Does something accept connections on the gateway's [server] listen address?"""
    host, _, port = listen.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), 0.5):
            return True
    except (OSError, ValueError):
        return False


async def keys_rotate_root(args: Any, services: Any) -> int:
    """`gateway keys rotate-root`."""
    if not args.while_running and _answers(services.config.server.listen):
        print("gateway: a gateway answers on [server] listen: stop every gateway process"
              " first (or pass --while-running if that is another service)", file=sys.stderr)
        return 2
    from gateway.transparency.log import get_audit_log

    result = await rotate_root_key(services, get_audit_log(services))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"new root key; {result['tenant_root_keys_rewrapped']} tenant root key(s),"
              f" {result['key_rows_rewrapped']} key row(s) and"
              f" {result['segments_rewrapped']} unit-key segment(s) rewrapped; old root key"
              f" destroyed")
    return 0


def configure_rotate_root(parser: Any) -> None:
    parser.add_argument("--while-running", action="store_true",
                        help="skip the check that no gateway answers on [server] listen")
