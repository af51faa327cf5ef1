"""The tenant API for its keys: versions, rotation and its progress (bearer tenant API
key). Offboarding is operator-only: `gateway tenant offboard ID` (no operator HTTP API)."""

from __future__ import annotations

from aiohttp import web

from gateway.lifecycle.rotation import get_key_service
from gateway.web.common import json_response, require_tenant, services

routes = web.RouteTableDef()


@routes.get("/v1/keys")
async def key_status(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_key_service(services(request)).status(principal.tenant_id))


@routes.post("/v1/keys/rotate")
async def rotate(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    rotation = await get_key_service(services(request)).start_rotation(
        principal.tenant_id, {"type": "tenant", "id": f"key-{principal.key_id}"})
    return json_response(rotation, status=202, headers={"Location": "/v1/keys/rotation"})


@routes.get("/v1/keys/rotation")
async def rotation(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_key_service(services(request)).rotation(principal.tenant_id))
