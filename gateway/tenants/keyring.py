"""Tenant key rings: load a tenant's wrapped keys from the database and open them with the
tenant's wrapping key. The opened `keys.TenantKeys` object is the only key material the
rest of the gateway holds, and it exposes operations, never raw keys.

Wrapping: each tenant gets a tenant root key (`keys.TenantRootKey`, itself wrapped under
the root key) kept in the key store (`[storage] key_store_url`: files apart from the
database by default, or an S3 bucket/prefix apart from the recordings), named
`<tenant id>.key`. It wraps the tenant's KEK and BIK rows. Destroying it (offboarding)
makes every copy of the rows unreadable, backups included. A tenant without one (created
before tenant root keys existed) has its rows wrapped directly under the root key.

Blind index: each tenant's index version (BIK version and width) is stored beside it in
`blind_index_state` (gateway/lifecycle/blind_index.py), written when the tenant is created
(`[privacy] blind_index_bits` is only the starting width) or, for a tenant from before the
table, the first time its ring opens. The ring indexes new rows under the target of a
reindex under way and matches under both, so neither a config change nor a reindex ever
makes a lookup miss.

Opened rings are cached for `cache_seconds`; after that the next use re-reads the tenant's
key versions, so a rotation or an offboarding done by another replica sharing the
database reaches this one within that time (the rotation job waits longer than this
before it destroys an old version).

Tenant root key rotation (gateway/tenants/root_rotation.py) stores the next key as
`<tenant id>.key.next` before rewrapping anything; while that object exists the wrapping
key is a `keys.TenantRootKeySwitch` (wraps under the next key, opens under either), so every
replica writes under the new key once its cached wrapping key (WRAPPING_CACHE_SECONDS) is
re-read, and nothing is unreadable at any instant of the switch."""

from __future__ import annotations

import time
import uuid
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat
from gateway.lifecycle.unit_keys import UnitKeys
from gateway.store import Database, WriteTx

# How long an opened ring is used before its key versions are checked again.
RING_CACHE_SECONDS = 30.0
# How long a tenant's wrapping key is used before the key store is read again: a tenant
# root key rotation waits longer than this after storing the next key before it rewraps.
WRAPPING_CACHE_SECONDS = 2.0


def tenant_root_key_name(tenant_id: str) -> str:
    return f"{uuid.UUID(tenant_id)}.key"


def next_tenant_root_key_name(tenant_id: str) -> str:
    """Where a rotation keeps the next tenant root key until it becomes the current one."""
    return f"{uuid.UUID(tenant_id)}.key.next"


class KeyRing:
    def __init__(self, db: Database, root: keys.FileRootKeyProvider, clock: Clock, *,
                 blind_index_bits: int, key_store: Any = None,
                 cache_seconds: float = RING_CACHE_SECONDS) -> None:
        self.db = db
        self.root = root
        self.clock = clock
        self.blind_index_bits = blind_index_bits
        # gateway.store.keystore.KeyStore; None: rows are wrapped under the root key.
        self.key_store = key_store
        self.cache_seconds = cache_seconds
        # tenant -> (opened ring, its key versions, monotonic time it was last checked)
        self._open: dict[str, tuple[keys.TenantKeys, frozenset, float]] = {}
        # tenant -> (wrapping key, the stored bytes it came from, monotonic time read)
        self._wrapping: dict[str, tuple[keys.RootKeyProvider, tuple[Any, Any], float]] = {}
        # Per-unit keys (a call's parties, each event) in the key store; None without one,
        # and then records are sealed under the tenant's KEK alone.
        self.units = UnitKeys(key_store, self.wrapping_key, clock) \
            if key_store is not None else None

    async def for_tenant(self, tenant_id: str) -> keys.TenantKeys:
        cached = self._open.get(tenant_id)
        if cached is not None and time.monotonic() - cached[2] < self.cache_seconds:
            return cached[0]
        # The index state first: a reindex that completes between the two reads has only
        # removed a BIK the state no longer names as the target.
        indexes = await self._blind_indexes(tenant_id)
        rows = await self.db.fetchall(
            "SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?", (tenant_id,))
        if not rows:
            self.forget(tenant_id)
            raise keys.DecryptionError("no keys for tenant")
        biks = {r["version"] for r in rows if r["kind"] == "bik"}
        if indexes is None:
            indexes = await self._first_blind_index(tenant_id, min(biks, default=1))
        # The target first; a source version already destroyed is matched no more.
        indexes = tuple(p for i, p in enumerate(indexes) if i == 0 or p[0] in biks)
        versions = frozenset((r["kind"], r["version"]) for r in rows) | {("index", indexes)}
        if cached is not None and cached[1] == versions:
            self._open[tenant_id] = (cached[0], versions, time.monotonic())
            return cached[0]
        opened = keys.open_tenant_keys(
            await self.wrapping_key(tenant_id), uuid.UUID(tenant_id),
            [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows],
            blind_indexes=indexes,
            units=self.units.view(tenant_id) if self.units is not None else None)
        self._open[tenant_id] = (opened, versions, time.monotonic())
        return opened

    async def _blind_indexes(self, tenant_id: str) -> tuple[tuple[int, int], ...] | None:
        """(BIK version, bits) pairs the tenant's rows are indexed under, the target of a
        reindex under way first; None if the tenant has no stored state yet."""
        row = await self.db.fetchone(
            "SELECT bik_version, bits, next_bik_version, next_bits FROM blind_index_state"
            " WHERE tenant_id = ?", (tenant_id,))
        if row is None:
            return None
        current = (row["bik_version"], row["bits"])
        if row["next_bik_version"] is None:
            return (current,)
        return ((row["next_bik_version"], row["next_bits"]), current)

    async def _first_blind_index(self, tenant_id: str, bik_version: int
                                 ) -> tuple[tuple[int, int], ...]:
        """Store the index state of a tenant from before it was stored: its rows were
        indexed at the configured width, so that width is what it is recorded with."""
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO blind_index_state (tenant_id, bik_version, bits, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING",
            (tenant_id, bik_version, self.blind_index_bits, now)))
        return await self._blind_indexes(tenant_id) or ((bik_version, self.blind_index_bits),)

    async def prefetch_units(self, tenant_id: str, sealed: Any) -> Any:
        """Load the unit keys these sealed values need (call before opening format-2
        records; an erased unit's key stays absent). The tenant's ring finds them while
        they stay in the shared segment cache; the returned mapping has them for as long
        as the caller keeps it (pass it as `open_record(units=...)` where records are
        opened after other awaits or in bulk). None without a key store."""
        if self.units is None:
            return None
        return await self.units.pin(tenant_id, sealed)

    def forget(self, tenant_id: str) -> None:
        """Drop the opened ring (after rotation or shredding) so the next use reloads it."""
        self._open.pop(tenant_id, None)
        self._wrapping.pop(tenant_id, None)

    async def has_tenant_root_key(self, tenant_id: str) -> bool:
        return self.key_store is not None and \
            await self.key_store.get(tenant_root_key_name(tenant_id)) is not None

    async def wrapping_key(self, tenant_id: str) -> keys.RootKeyProvider:
        """What wraps this tenant's key rows and unit segments: its tenant root key if it
        has one, else (a tenant from before tenant root keys) the root key; during a
        tenant root key rotation, the switch from the current key to the next."""
        cached = self._wrapping.get(tenant_id)
        if cached is not None and time.monotonic() - cached[2] < WRAPPING_CACHE_SECONDS:
            return cached[0]
        stored: tuple[Any, Any] = (None, None)
        if self.key_store is not None:
            stored = (await self.key_store.get(tenant_root_key_name(tenant_id)),
                      await self.key_store.get(next_tenant_root_key_name(tenant_id)))
        if cached is not None and cached[1] == stored:
            provider = cached[0]
        else:
            provider = self.root
            tid = uuid.UUID(tenant_id)
            if stored[0] is not None:
                provider = keys.TenantRootKey.from_bytes(stored[0], self.root, tid)
            if stored[1] is not None:
                provider = keys.TenantRootKeySwitch(
                    provider, keys.TenantRootKey.from_bytes(stored[1], self.root, tid))
        self._wrapping[tenant_id] = (provider, stored, time.monotonic())
        return provider

    async def new_tenant_keys(self, tenant_id: str) -> list[keys.WrappedKey]:
        """Create the tenant's root key in the key store and its first key rows, wrapped
        under it. The key is stored first: a crash before the rows commit leaves a key
        that wraps nothing (harmless), never rows whose wrapping key was not written."""
        wrapping: keys.RootKeyProvider = self.root
        if self.key_store is not None:
            provider, stored = keys.TenantRootKey.generate(self.root, uuid.UUID(tenant_id))
            await self.key_store.put(tenant_root_key_name(tenant_id), stored)
            wrapping = provider
            self._wrapping[tenant_id] = (provider, (stored, None), time.monotonic())
        return list(keys.new_tenant_keys(wrapping, uuid.UUID(tenant_id)))

    def store_new_tenant_keys(self, tx: WriteTx, tenant_id: str,
                              wrapped_keys: list[keys.WrappedKey]) -> None:
        now = isoformat(self.clock.now())
        for wrapped in wrapped_keys:
            tx.execute(
                "INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)", (tenant_id, wrapped.kind, wrapped.version,
                                            wrapped.wrapped, now))
        # Its blind index starts at the configured width, stored so a later config change
        # never changes what its rows are indexed under.
        bik = min(w.version for w in wrapped_keys if w.kind == "bik")
        tx.execute("INSERT INTO blind_index_state (tenant_id, bik_version, bits, updated_at)"
                   " VALUES (?, ?, ?, ?)", (tenant_id, bik, self.blind_index_bits, now))

    async def destroy_tenant_root_key(self, tenant_id: str) -> bool:
        """Crypto-shred the tenant: its root key leaves the key store. True if there was
        one."""
        self.forget(tenant_id)
        if self.key_store is None:
            return False
        # A rotation cut short leaves the next key too: it wraps the same rows.
        next_existed = await self.key_store.delete(next_tenant_root_key_name(tenant_id))
        return await self.key_store.delete(tenant_root_key_name(tenant_id)) or next_existed
