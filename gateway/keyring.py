"""Tenant key rings: load a tenant's wrapped keys from the database and open them with the
root key. The opened `keys.TenantKeys` object is the only key material the rest of the
gateway holds, and it exposes operations, never raw keys."""

from __future__ import annotations

import uuid

import keys

from .clock import Clock, isoformat
from .db import Database, WriteTx


class KeyRing:
    def __init__(self, db: Database, root: keys.FileRootKeyProvider, clock: Clock, *,
                 blind_index_bits: int) -> None:
        self.db = db
        self.root = root
        self.clock = clock
        self.blind_index_bits = blind_index_bits
        self._open: dict[str, keys.TenantKeys] = {}

    async def for_tenant(self, tenant_id: str) -> keys.TenantKeys:
        cached = self._open.get(tenant_id)
        if cached is not None:
            return cached
        rows = await self.db.fetchall(
            "SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?", (tenant_id,))
        if not rows:
            raise keys.DecryptionError("no keys for tenant")
        opened = keys.open_tenant_keys(
            self.root, uuid.UUID(tenant_id),
            [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows],
            blind_index_bits=self.blind_index_bits)
        self._open[tenant_id] = opened
        return opened

    def forget(self, tenant_id: str) -> None:
        """Drop the opened ring (after rotation or shredding) so the next use reloads it."""
        self._open.pop(tenant_id, None)

    def store_new_tenant_keys(self, tx: WriteTx, tenant_id: str) -> None:
        now = isoformat(self.clock.now())
        for wrapped in keys.new_tenant_keys(self.root, uuid.UUID(tenant_id)):
            tx.execute(
                "INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)", (tenant_id, wrapped.kind, wrapped.version,
                                            wrapped.wrapped, now))
