"""The tenant's side of staff access (bearer tenant key): the access policy, the
notification endpoint, and deciding on requests. Staff tokens are refused here (401): a
staff member can never approve anything."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.access.service import get_staff_access
from gateway.errors import not_found
from gateway.web.common import json_response, query_int, read_json, require_tenant, services

routes = web.RouteTableDef()
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not _UUID_RE.match(value):
        raise not_found(what)
    return value


async def _policy_body(request: web.Request, tenant_id: str) -> dict:
    svc = get_staff_access(services(request))
    return svc.render_policy(await svc.get_policy(tenant_id), await svc.get_webhook(tenant_id))


@routes.get("/v1/access-policy")
async def get_policy(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    return json_response(await _policy_body(request, tenant.tenant_id))


@routes.put("/v1/access-policy")
async def put_policy(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    await get_staff_access(svc).put_policy(tenant.tenant_id, body)
    return json_response(await _policy_body(request, tenant.tenant_id))


@routes.put("/v1/access-policy/webhook")
async def put_webhook(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    return json_response(await get_staff_access(svc).put_webhook(tenant.tenant_id, body))


@routes.delete("/v1/access-policy/webhook")
async def delete_webhook(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    await get_staff_access(services(request)).delete_webhook(tenant.tenant_id)
    return web.Response(status=204)


@routes.get("/v1/access-requests")
async def list_requests(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    page = await get_staff_access(services(request)).list_for_tenant(
        tenant.tenant_id, state=request.query.get("state"),
        limit=query_int(request, "limit", 50), cursor=request.query.get("cursor"))
    return json_response(page)


@routes.get("/v1/access-requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    svc = get_staff_access(services(request))
    await svc.expire_due(tenant.tenant_id)
    return json_response(await svc.get_for_tenant(
        tenant.tenant_id, _id(request, "request_id", "access request")))


@routes.post("/v1/access-requests/{request_id}/approve")
async def approve(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    return json_response(await get_staff_access(services(request)).decide(
        tenant, _id(request, "request_id", "access request"), approve=True))


@routes.post("/v1/access-requests/{request_id}/deny")
async def deny(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    return json_response(await get_staff_access(services(request)).decide(
        tenant, _id(request, "request_id", "access request"), approve=False))


@routes.post("/v1/grants/{grant_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    return json_response(await get_staff_access(services(request)).revoke(
        tenant, _id(request, "grant_id", "grant")))
