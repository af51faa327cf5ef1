"""Data residency in the storage seam: a blob store and a key store that send each tenant's
objects to the stores of the region the tenant is pinned to (`[regions.<name>]`,
docs/residency.md). Both implement the same protocols as the stores they route to
(blobs.BlobStore, keystore.KeyStore), so no service knows regions exist.

Invariants:
- A tenant's objects are written only to its region's stores. Which region that is comes
  from the database (`tenants.region`, `tenants.moving_to`), read through a cache of
  CACHE_SECONDS: `move-region` waits longer than that after announcing a move before it
  copies, so no replica can still be writing to the old region once the copy starts.
- A tenant with no region (or none configured) uses the `[storage]` stores, as before
  regions existed. A tenant being created is not in the database yet: `assign` tells the
  router first (its root key is stored before its rows commit).
- Key names are routed by the tenant id they start with (`<tenant>.key`, `<tenant>/...`,
  whatever the key ring names next); a name that starts with no tenant id is operator-wide
  and lives in the `[storage]` key store.
- During a move: writes go to the new region; reads look there first, then the old one;
  deletes and listings cover both. Nothing is lost whatever instant a crash hits.
- A region store that fails answers StoreUnavailable (503) naming the region's store, for
  that region's tenants only; the others never touch it.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway.errors import ConfigError
from gateway.store.blobs import BlobSink
from gateway.store.database import Database, StoreUnavailable
from gateway.store.s3_client import Observer

__all__ = ["CACHE_SECONDS", "DEFAULT_REGION", "RegionBlobStore", "RegionDirectory",
           "RegionKeyStore", "check_regions_in_use", "open_region_stores", "tenant_of_key"]

# How long a replica trusts what it read about a tenant's region. Short: the only change is
# `move-region`, which waits MOVE_SETTLE_SECONDS (longer than this) before copying.
CACHE_SECONDS = 1.0
MOVE_SETTLE_SECONDS = CACHE_SECONDS * 1.5
# The label and name of the [storage] stores (tenants without a region).
DEFAULT_REGION = "default"
_TENANT_PREFIX_RE = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:$|[./])")
# Errors of a file store that mean "this store cannot serve now", not "you asked wrongly":
# a missing mount, an unreachable network filesystem, an I/O error. A full disk keeps its
# own answer (507, gateway/store/files.py).
_UNAVAILABLE_ERRNOS = frozenset({errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.EACCES,
                                 errno.EROFS, errno.ENOTDIR, errno.EHOSTDOWN,
                                 errno.ETIMEDOUT})


def tenant_of_key(name: str) -> str | None:
    """The tenant id a key-store name (or listing prefix) starts with, if any."""
    match = _TENANT_PREFIX_RE.match(name)
    return match.group(1) if match else None


class RegionDirectory:
    """Which region each tenant's objects belong in: (home region, region being moved to),
    None meaning the [storage] stores."""

    def __init__(self, db: Database, regions: list[str],
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self.regions = regions
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[str | None, str | None, float]] = {}
        self._assigned: dict[str, str | None] = {}

    def assign(self, tenant_id: str, region: str | None) -> None:
        """A tenant about to be created: where its first objects go before its row exists."""
        self._assigned[tenant_id] = region

    def forget(self, tenant_id: str) -> None:
        self._cache.pop(tenant_id, None)

    async def placement(self, tenant_id: str) -> tuple[str | None, str | None]:
        cached = self._cache.get(tenant_id)
        if cached is not None and time.monotonic() - cached[2] < self.cache_seconds:
            return cached[0], cached[1]
        row = await self.db.fetchone("SELECT region, moving_to FROM tenants WHERE id = ?",
                                     (tenant_id,))
        if row is None:
            return self._assigned.get(tenant_id), None
        self._assigned.pop(tenant_id, None)
        self._cache[tenant_id] = (row["region"], row["moving_to"], time.monotonic())
        return row["region"], row["moving_to"]


class _Routing:
    """What both routers share: the stores by region name, and where a tenant's objects go."""

    component = "store"

    def __init__(self, base: Any, regional: dict[str, Any], directory: RegionDirectory,
                 observe_write: Callable[[str, int], None] | None = None) -> None:
        self.base = base
        self.regional = regional
        self.directory = directory
        self._observe_write = observe_write

    def store_named(self, region: str | None) -> Any:
        return self.base if region is None else self.regional[region]

    def all_stores(self) -> dict[str, Any]:
        return {DEFAULT_REGION: self.base, **self.regional}

    async def write_region(self, tenant_id: str) -> str | None:
        home, moving_to = await self.directory.placement(tenant_id)
        return moving_to or home

    async def read_regions(self, tenant_id: str) -> list[str | None]:
        home, moving_to = await self.directory.placement(tenant_id)
        return [moving_to, home] if moving_to else [home]

    def observe_write(self, region: str | None, size: int) -> None:
        if self._observe_write is not None:
            self._observe_write(region or DEFAULT_REGION, size)

    async def guarded(self, region: str | None, call: Awaitable[Any]) -> Any:
        """Await one store call; a failing file store answers StoreUnavailable naming the
        region's store (S3 stores raise it themselves)."""
        try:
            return await call
        except OSError as exc:
            if exc.errno in _UNAVAILABLE_ERRNOS:
                raise StoreUnavailable(f"{self.component} of region "
                                       f"{region or DEFAULT_REGION}") from exc
            raise

    async def close(self) -> None:
        for store in self.all_stores().values():
            close = getattr(store, "close", None)
            if close is not None:
                await close()

    async def region_pings(self) -> dict[str, bool]:
        """Each region store's readiness, by region name (the [storage] one excluded)."""
        out = {}
        for name, store in self.regional.items():
            try:
                out[name] = bool(await store.ping())
            except Exception:
                out[name] = False
        return out


class _CountingSink:
    """A region blob being written: counted once committed."""

    def __init__(self, sink: BlobSink, on_commit: Callable[[int], None]) -> None:
        self._sink = sink
        self._on_commit = on_commit

    @property
    def bytes_written(self) -> int:
        return self._sink.bytes_written

    async def write(self, data: bytes) -> None:
        await self._sink.write(data)

    async def sync(self) -> int:
        return await self._sink.sync()

    async def commit(self) -> None:
        await self._sink.commit()
        self._on_commit(self._sink.bytes_written)

    async def abort(self) -> None:
        await self._sink.abort()

    def __getattr__(self, name: str) -> Any:   # backend extras (e.g. a file sink's path)
        return getattr(self._sink, name)


class RegionBlobStore(_Routing):
    """blobs.BlobStore over one store per region plus the [storage] one."""

    component = "blob store"

    @property
    def root(self) -> Any:
        # The [storage] store's directory, for the free-space readings of a file store.
        return getattr(self.base, "root", None)

    async def create(self, tenant_id: str, object_id: str) -> BlobSink:
        region = await self.write_region(tenant_id)
        store = self.store_named(region)
        sink = await self.guarded(region, store.create(tenant_id, object_id))
        return _CountingSink(sink, lambda size: self.observe_write(region, size))

    async def _holder(self, tenant_id: str, object_id: str) -> str | None:
        """The region whose store holds the object (the first looked in if none does)."""
        regions = await self.read_regions(tenant_id)
        if len(regions) > 1:
            for region in regions:
                store = self.store_named(region)
                if await self.guarded(region, store.exists(tenant_id, object_id)):
                    return region
        return regions[0]

    async def open(self, tenant_id: str, object_id: str) -> BinaryIO:
        region = await self._holder(tenant_id, object_id)
        store = self.store_named(region)
        return await self.guarded(region, store.open(tenant_id, object_id))

    async def exists(self, tenant_id: str, object_id: str) -> bool:
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            if await self.guarded(region, store.exists(tenant_id, object_id)):
                return True
        return False

    async def size(self, tenant_id: str, object_id: str) -> int:
        region = await self._holder(tenant_id, object_id)
        store = self.store_named(region)
        return await self.guarded(region, store.size(tenant_id, object_id))

    async def delete(self, tenant_id: str, object_id: str) -> bool:
        deleted = False
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            deleted = await self.guarded(region, store.delete(tenant_id,
                                                                      object_id)) or deleted
        return deleted

    async def delete_many(self, tenant_id: str, object_ids: list[str]) -> int:
        counts = []
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            counts.append(await self.guarded(region, store.delete_many(tenant_id,
                                                                               object_ids)))
        return max(counts)

    async def delete_tenant(self, tenant_id: str) -> None:
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            await self.guarded(region, store.delete_tenant(tenant_id))

    async def list_tenants(self) -> list[str]:
        found: set[str] = set()
        for region, store in self.all_stores().items():
            found.update(await self.guarded(region, store.list_tenants()))
        return sorted(found)

    async def list_objects(self, tenant_id: str) -> list[str]:
        found: set[str] = set()
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            found.update(await self.guarded(region, store.list_objects(tenant_id)))
        return sorted(found)

    async def incomplete_uploads(self) -> list[tuple[str, float]]:
        found = []
        for region, store in self.all_stores().items():
            found.extend(await self.guarded(region, store.incomplete_uploads()))
        return found

    async def discard_incomplete(self, object_id: str) -> bool:
        discarded = False
        for region, store in self.all_stores().items():
            discarded = await self.guarded(
                region, store.discard_incomplete(object_id)) or discarded
        return discarded

    async def open_partial(self, tenant_id: str, object_id: str
                           ) -> tuple[str, BinaryIO] | None:
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            opened = await self.guarded(region, store.open_partial(tenant_id,
                                                                           object_id))
            if opened is not None:
                return opened
        return None

    async def commit_partial(self, tenant_id: str, object_id: str, keep: int,
                             tail: bytes) -> None:
        # The store holding the partial (open_partial found it there): the new region
        # during a move if it was started there, else the home region.
        for region in await self.read_regions(tenant_id):
            store = self.store_named(region)
            opened = await self.guarded(region, store.open_partial(tenant_id,
                                                                           object_id))
            if opened is not None:
                opened[1].close()
                await self.guarded(region, store.commit_partial(
                    tenant_id, object_id, keep, tail))
                self.observe_write(region, keep + len(tail))
                return
        region = await self.write_region(tenant_id)
        store = self.store_named(region)
        await self.guarded(region, store.commit_partial(tenant_id, object_id, keep,
                                                                tail))

    async def ping(self) -> bool:
        # The [storage] store only: a region that is down is reported per region
        # (region_pings) and must not drain the replica for every other tenant.
        return await self.base.ping()


class RegionKeyStore(_Routing):
    """keystore.KeyStore routed by the tenant id each name starts with."""

    component = "key store"

    async def put(self, name: str, data: bytes) -> None:
        tenant_id = tenant_of_key(name)
        region = await self.write_region(tenant_id) if tenant_id else None
        store = self.store_named(region)
        await self.guarded(region, store.put(name, data))
        self.observe_write(region, len(data))

    async def put_many(self, items: dict[str, bytes]) -> None:
        by_region: dict[str | None, dict[str, bytes]] = {}
        for name, data in items.items():
            tenant_id = tenant_of_key(name)
            region = await self.write_region(tenant_id) if tenant_id else None
            by_region.setdefault(region, {})[name] = data
        for region, part in by_region.items():
            await self.guarded(region, self.store_named(region).put_many(part))
            self.observe_write(region, sum(len(d) for d in part.values()))

    async def get_many(self, names: list[str]) -> list[bytes | None]:
        return [await self.get(name) for name in names]

    async def delete_many(self, names: list[str]) -> int:
        by_region: dict[str | None, list[str]] = {}
        for name in names:
            tenant_id = tenant_of_key(name)
            for region in (await self.read_regions(tenant_id) if tenant_id else [None]):
                by_region.setdefault(region, []).append(name)
        deleted = 0
        for region, part in by_region.items():
            deleted += await self.guarded(region, self.store_named(region).delete_many(part))
        return deleted

    async def get(self, name: str) -> bytes | None:
        tenant_id = tenant_of_key(name)
        for region in (await self.read_regions(tenant_id) if tenant_id else [None]):
            store = self.store_named(region)
            data = await self.guarded(region, store.get(name))
            if data is not None:
                return data
        return None

    async def delete(self, name: str) -> bool:
        tenant_id = tenant_of_key(name)
        deleted = False
        for region in (await self.read_regions(tenant_id) if tenant_id else [None]):
            store = self.store_named(region)
            deleted = await self.guarded(region, store.delete(name)) or deleted
        return deleted

    async def list(self, prefix: str = "") -> list[str]:
        tenant_id = tenant_of_key(prefix)
        if tenant_id:
            stores = [(r, self.store_named(r)) for r in await self.read_regions(tenant_id)]
        else:
            stores = list(self.all_stores().items())
            stores = [(None if r == DEFAULT_REGION else r, s) for r, s in stores]
        found: set[str] = set()
        for region, store in stores:
            found.update(await self.guarded(region, store.list(prefix)))
        return sorted(found)

    async def ping(self) -> bool:
        return await self.base.ping()



@dataclass(frozen=True)
class _S3Place:
    """A region's S3 endpoint and signing region (s3_client.S3Settings)."""
    endpoint_url: str
    region: str


# -- opening --------------------------------------------------------------------------------
async def check_regions_in_use(db: Database, config: Any) -> None:
    """Refuse to start when a tenant is pinned to (or moving to) a region the config no
    longer declares: its objects would have nowhere to go. Names the tenants."""
    rows = await db.fetchall("SELECT id, region, moving_to FROM tenants WHERE region IS NOT"
                             " NULL OR moving_to IS NOT NULL ORDER BY id")
    missing: dict[str, list[str]] = {}
    for row in rows:
        for region in (row["region"], row["moving_to"]):
            if region is not None and region not in config.regions:
                missing.setdefault(region, []).append(row["id"])
    if missing:
        named = "; ".join(f"region {region!r} holds tenant(s) {', '.join(sorted(set(ids)))}"
                          for region, ids in sorted(missing.items()))
        raise ConfigError(f"[regions] no longer declares a region in use: {named}. Put the"
                          " [regions.<name>] table back, or move those tenants first"
                          " (`gateway tenant move-region`).")


def open_region_stores(config: Any, db: Database, metrics: Any, base_blobs: Any,
                       base_keys: Any, observe: Observer | None = None
                       ) -> tuple[RegionBlobStore, RegionKeyStore, RegionDirectory]:
    """The routers over [storage]'s stores and each [regions.<name>]'s. No I/O yet."""
    from gateway.store.keystore import open_blob_store, open_key_store

    blobs, keys = {}, {}
    for name, region in config.regions.items():
        s3 = _S3Place(endpoint_url=region.endpoint_url or config.storage.s3.endpoint_url,
                        region=region.region or config.storage.s3.region)
        try:
            blobs[name] = open_blob_store(region.blob_url, config.data_dir, s3,
                                          observe=observe)
            keys[name] = open_key_store(region.key_store_url, config.data_dir, s3,
                                        observe=observe)
        except ConfigError as exc:
            raise ConfigError(f"regions.{name}: {exc}") from None
    directory = RegionDirectory(db, sorted(config.regions))

    def counter(store: str) -> Callable[[str, int], None]:
        def observe_write(region: str, size: int) -> None:
            metrics.region_objects_written.labels(region, store).inc()
            metrics.region_bytes_written.labels(region, store).inc(size)
        return observe_write

    return (RegionBlobStore(base_blobs, blobs, directory, counter("blobs")),
            RegionKeyStore(base_keys, keys, directory, counter("keys")), directory)
