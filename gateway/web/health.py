"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from gateway.web.common import json_response, services
from gateway.web.openapi import document

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks = {"database": await svc.db.ping(), "blob_store": await svc.blobs.ping()}
    ready = all(checks.values())
    return json_response({"status": "ready" if ready else "not-ready", "checks": checks},
                         status=200 if ready else 503)


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
