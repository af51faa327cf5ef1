"""Liveness, readiness and the OpenAPI document.

Readiness is one set of checks, answered on GET /readyz and reported at every scrape as
`gateway_ready{component}` (so an alert sees what a load balancer sees). Each region's
stores ([regions.<name>]) are checked too and reported under `regions` (components
`blob_store.<region>`, `key_store.<region>`), but a region that is down does not make the
replica unready: every replica shares that store, so draining them all would only take
the other regions' tenants down with it (those tenants get 503 from what needs it)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.web.common import json_response, services
from gateway.web.openapi import document

if TYPE_CHECKING:   # the container is built by gateway.services, which lists this module
    from gateway.services import GatewayServices

routes = web.RouteTableDef()


def local_store_dirs(svc: GatewayServices) -> dict[str, Path]:
    """The directory each store kept on this machine writes to, by readiness component (a
    PostgreSQL database or an S3 bucket reports its capacity elsewhere). The key store's
    files are written only when tenants or key versions are created, so its free space is
    a gauge (`gateway_storage_free_bytes`), not a readiness check."""
    dirs = {}
    database_file = getattr(svc.db, "path", None)       # SQLite only
    blob_root = getattr(svc.blobs, "root", None)        # the file blob store only
    if database_file is not None:
        dirs["database"] = Path(database_file).parent
    if blob_root is not None:
        dirs["blob_store"] = Path(blob_root)
    return dirs


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


async def readiness(svc: GatewayServices) -> dict[str, bool]:
    """Each component the gateway needs, and whether it can serve writes now; also sets the
    gauge. A local store with less than `[storage] min_free_bytes` free is not ready: the
    replica drains before its writes start failing, and the check names that store (a
    ping that only reads would call a full database healthy)."""
    checks = {}
    for component, ping in (("database", svc.db.ping), ("blob_store", svc.blobs.ping)):
        try:
            checks[component] = bool(await ping())
        except Exception:
            checks[component] = False
    minimum = svc.config.storage.min_free_bytes
    for component, path in local_store_dirs(svc).items():
        try:
            roomy = await asyncio.to_thread(_free_bytes, path) >= minimum
        except OSError:
            roomy = False
        checks[component] = checks[component] and roomy
    svc.metrics.record_readiness(checks)
    return checks


async def region_readiness(svc: GatewayServices) -> dict[str, dict[str, bool]]:
    """{region: {"blob_store": ok, "key_store": ok}} for each [regions.<name>]; also sets
    the gauge. Empty without [regions]."""
    if svc.regions is None:
        return {}
    blobs = await svc.blobs.region_pings()
    keys = await svc.key_store.region_pings()
    out = {name: {"blob_store": blobs.get(name, False), "key_store": keys.get(name, False)}
           for name in svc.regions.regions}
    svc.metrics.record_readiness({f"{store}.{name}": ok for name, stores in out.items()
                                  for store, ok in stores.items()})
    return out


def register(svc: GatewayServices) -> None:
    """Readings taken at scrape time: readiness, and free space under each store kept on
    this machine (a PostgreSQL database or an S3 bucket reports its capacity elsewhere)."""
    svc.metrics.before_scrape(lambda: readiness(svc))
    svc.metrics.before_scrape(lambda: region_readiness(svc))

    async def pool_reading() -> None:
        svc.metrics.database_pool_in_use.set(getattr(svc.db, "pool_in_use", 0))
    svc.metrics.before_scrape(pool_reading)
    database_file = getattr(svc.db, "path", None)       # SQLite only
    blob_root = getattr(svc.blobs, "root", None)        # the file blob store only
    if database_file is not None:
        svc.metrics.watch_filesystem("database", Path(database_file).parent)
    if blob_root is not None:
        svc.metrics.watch_filesystem("blobs", Path(blob_root))
    if not svc.config.storage.key_store_url:
        svc.metrics.watch_filesystem("keys", svc.config.tenant_key_dir)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks = await readiness(svc)
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not-ready", "checks": checks}
    if not ready:
        body["failing"] = sorted(name for name, ok in checks.items() if not ok)
    regions = await region_readiness(svc)
    if regions:
        body["regions"] = regions
        body["degraded_regions"] = sorted(name for name, stores in regions.items()
                                          if not all(stores.values()))
    return json_response(body, status=200 if ready else 503,
                         headers=None if ready else {"Retry-After": "5"})


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
