"""Liveness, readiness and the OpenAPI document.

Readiness is one set of checks, answered on GET /readyz and reported at every scrape as
`gateway_ready{component}` (so an alert sees what a load balancer sees)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.web.common import json_response, services
from gateway.web.openapi import document

if TYPE_CHECKING:   # the container is built by gateway.services, which lists this module
    from gateway.services import GatewayServices

routes = web.RouteTableDef()


async def readiness(svc: GatewayServices) -> dict[str, bool]:
    """Each component the gateway needs, and whether it answers now; also sets the gauge."""
    checks = {}
    for component, ping in (("database", svc.db.ping), ("blob_store", svc.blobs.ping)):
        try:
            checks[component] = bool(await ping())
        except Exception:
            checks[component] = False
    svc.metrics.record_readiness(checks)
    return checks


def register(svc: GatewayServices) -> None:
    """Readings taken at scrape time: readiness, and free space under each store kept on
    this machine (a PostgreSQL database or an S3 bucket reports its capacity elsewhere)."""
    svc.metrics.before_scrape(lambda: readiness(svc))

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
    return json_response({"status": "ready" if ready else "not-ready", "checks": checks},
                         status=200 if ready else 503)


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
