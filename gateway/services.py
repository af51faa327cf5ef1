"""The service container: everything a request handler or CLI command needs, opened once.

Handlers reach it as `services(request)`; the CLI opens it directly. Each service takes
the repository (Database), key ring and clock it needs, so it is testable without HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keys
from gateway.calls.recordings import RecordingService
from gateway.calls.service import CallService
from gateway.config import Config
from gateway.core.clock import Clock, SystemClock
from gateway.core.metrics import Metrics
from gateway.ingest.integrations import IntegrationService
from gateway.ingest.pipeline import IngestService
from gateway.store import BlobStore, Database, open_database
from gateway.store.files import FileBlobStore
from gateway.store.keystore import KeyStore, open_blob_store, open_key_store
from gateway.store.regions import RegionDirectory, check_regions_in_use, open_region_stores
from gateway.tenants.keyring import KeyRing


class NotInitialised(RuntimeError):
    pass


@dataclass
class GatewayServices:
    config: Config
    clock: Clock
    metrics: Metrics
    db: Database
    root: keys.FileRootKeyProvider
    keyring: KeyRing
    blobs: BlobStore
    key_store: KeyStore
    integrations: IntegrationService
    ingest: IngestService
    calls: CallService
    recordings: RecordingService
    # Feature modules hang their own services here by name.
    features: dict[str, Any] = field(default_factory=dict)
    # Where each tenant's objects live, with [regions] configured (gateway/store/regions.py);
    # None: one set of stores.
    regions: RegionDirectory | None = None

    async def close(self) -> None:
        await self.db.close()
        # S3 clients are bound to the loop that opened them: close them with it (a region
        # router closes each region's stores).
        for store in (self.blobs, self.key_store):
            close = getattr(store, "close", None)
            if close is not None:
                await close()


def init_storage(config: Config) -> list[str]:
    """Create the data directory and the key files `gateway init` is responsible for.
    Existing keys are never overwritten. Returns what was created."""
    created = []
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if not config.root_key_path.exists():
        keys.FileRootKeyProvider.create(config.root_key_path)
        created.append("root_key")
    if not config.signing_key_path.exists():
        keys.OperatorSigningKey.create(config.signing_key_path)
        created.append("signing_key")
    if not config.storage.blob_url:
        FileBlobStore(config.blob_dir).setup()
    return created


async def open_services(config: Config, clock: Clock | None = None,
                        metrics: Metrics | None = None) -> GatewayServices:
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    if not config.root_key_path.exists():
        raise NotInitialised(f"no root key at {config.root_key_path}: run `gateway init`")
    root = keys.FileRootKeyProvider.load(config.root_key_path)
    db = await open_database(
        config.storage.database_url, config.database_path,
        max_batch=config.storage.group_commit_max_batch,
        pool_size=config.storage.database_pool_size,
        sqlite_writer_process=config.storage.sqlite_writer_process,
        observe_batch=metrics.group_commit_size.observe,
        observe_latency=lambda operation, seconds: metrics.backend_latency.labels(
            "postgresql", operation).observe(seconds),
        observe_error=lambda operation: metrics.backend_errors.labels(
            "postgresql", operation).inc())
    def observe_s3(operation: str, seconds: float, outcome: str) -> None:
        metrics.backend_latency.labels("s3", operation).observe(seconds)
        if outcome in ("unavailable", "error"):
            metrics.backend_errors.labels("s3", operation).inc()

    blobs = open_blob_store(config.storage.blob_url, config.blob_dir, config.storage.s3,
                            observe=observe_s3)
    key_store = open_key_store(config.storage.key_store_url, config.tenant_key_dir,
                               config.storage.s3, observe=observe_s3)
    directory = None
    try:    # a tenant pinned to a region the config dropped: refuse to start
        await check_regions_in_use(db, config)
    except BaseException:
        await db.close()
        raise
    if config.regions:
        blobs, key_store, directory = open_region_stores(config, db, metrics, blobs,
                                                         key_store, observe_s3)
    keyring = KeyRing(db, root, clock, blind_index_bits=config.privacy.blind_index_bits,
                      key_store=key_store)
    integrations = IntegrationService(
        db, keyring, clock, public_base_url=config.server.public_base_url,
        cache_seconds=config.limits.credential_cache_seconds)
    ingest = IngestService(db, keyring, integrations, clock, metrics,
                           default_region=config.privacy.default_region)
    services = GatewayServices(
        config=config, clock=clock, metrics=metrics, db=db, root=root, keyring=keyring,
        blobs=blobs, key_store=key_store, integrations=integrations, ingest=ingest,
        calls=CallService(db, keyring),
        recordings=RecordingService(db, keyring, blobs, clock, metrics), regions=directory)
    # Hooks that must be in place before anything runs (recovery handlers, ingest
    # subscribers), in the server and the CLI alike.
    from gateway import features
    for area in features.modules():
        if hasattr(area, "register"):
            area.register(services)
    return services
