"""Tenant key rings: load a tenant's wrapped keys from the database and open them with the
tenant's wrapping key. The opened `keys.TenantKeys` object is the only key material the
rest of the gateway holds, and it exposes operations, never raw keys.

Wrapping: each tenant created with a `tenant_key_dir` gets a tenant root key file there
(`keys.TenantRootKey`, itself wrapped under the root key) that wraps its KEK and BIK rows.
Destroying that file (offboarding) makes every copy of the rows unreadable, backups
included. A tenant without a file (created before the directory was configured) has its
rows wrapped directly under the root key.

Opened rings are cached for `cache_seconds`; after that the next use re-reads the tenant's
key versions, so a rotation or an offboarding done by another process sharing the
database reaches this one within that time (the rotation job waits longer than this
before it destroys an old version)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import keys
from gateway.core.clock import Clock, isoformat
from gateway.store import Database, WriteTx

# How long an opened ring is used before its key versions are checked again.
RING_CACHE_SECONDS = 30.0


class KeyRing:
    def __init__(self, db: Database, root: keys.FileRootKeyProvider, clock: Clock, *,
                 blind_index_bits: int, tenant_key_dir: Path | None = None,
                 cache_seconds: float = RING_CACHE_SECONDS) -> None:
        self.db = db
        self.root = root
        self.clock = clock
        self.blind_index_bits = blind_index_bits
        self.tenant_key_dir = Path(tenant_key_dir) if tenant_key_dir is not None else None
        self.cache_seconds = cache_seconds
        # tenant -> (opened ring, its key versions, monotonic time it was last checked)
        self._open: dict[str, tuple[keys.TenantKeys, frozenset, float]] = {}
        self._wrapping: dict[str, keys.RootKeyProvider] = {}

    async def for_tenant(self, tenant_id: str) -> keys.TenantKeys:
        cached = self._open.get(tenant_id)
        if cached is not None and time.monotonic() - cached[2] < self.cache_seconds:
            return cached[0]
        rows = await self.db.fetchall(
            "SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?", (tenant_id,))
        if not rows:
            self.forget(tenant_id)
            raise keys.DecryptionError("no keys for tenant")
        versions = frozenset((r["kind"], r["version"]) for r in rows)
        if cached is not None and cached[1] == versions:
            self._open[tenant_id] = (cached[0], versions, time.monotonic())
            return cached[0]
        opened = keys.open_tenant_keys(
            self.wrapping_key(tenant_id), uuid.UUID(tenant_id),
            [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows],
            blind_index_bits=self.blind_index_bits)
        self._open[tenant_id] = (opened, versions, time.monotonic())
        return opened

    def forget(self, tenant_id: str) -> None:
        """Drop the opened ring (after rotation or shredding) so the next use reloads it."""
        self._open.pop(tenant_id, None)
        self._wrapping.pop(tenant_id, None)

    def tenant_key_path(self, tenant_id: str) -> Path | None:
        if self.tenant_key_dir is None:
            return None
        return self.tenant_key_dir / f"{uuid.UUID(tenant_id)}.key"

    def wrapping_key(self, tenant_id: str) -> keys.RootKeyProvider:
        """What wraps this tenant's key rows: its tenant root key file if it has one, else
        (a tenant from before tenant key files) the root key."""
        cached = self._wrapping.get(tenant_id)
        if cached is not None:
            return cached
        path = self.tenant_key_path(tenant_id)
        provider: keys.RootKeyProvider = self.root
        if path is not None and path.exists():
            provider = keys.TenantRootKey.load(path, self.root, uuid.UUID(tenant_id))
        self._wrapping[tenant_id] = provider
        return provider

    def _create_wrapping_key(self, tenant_id: str) -> keys.RootKeyProvider:
        path = self.tenant_key_path(tenant_id)
        if path is None:
            return self.root
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        provider = keys.TenantRootKey.create(path, self.root, uuid.UUID(tenant_id))
        self._wrapping[tenant_id] = provider
        return provider

    def store_new_tenant_keys(self, tx: WriteTx, tenant_id: str) -> None:
        now = isoformat(self.clock.now())
        # The tenant root key file first: a crash before the commit leaves a file that
        # wraps nothing (harmless), never rows whose wrapping key was not written.
        wrapping = self._create_wrapping_key(tenant_id)
        for wrapped in keys.new_tenant_keys(wrapping, uuid.UUID(tenant_id)):
            tx.execute(
                "INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)", (tenant_id, wrapped.kind, wrapped.version,
                                            wrapped.wrapped, now))
