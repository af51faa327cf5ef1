"""The tenant API for retention: policy, preview and legal holds (bearer tenant API key).

Also starts audit retention (gateway/transparency/retention.py), which needs the retention
policies: the audit class is enforced by its own job, not by the sweep."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.jobs import start_for_app_lifetime
from gateway.lifecycle.retention import get_retention
from gateway.transparency.retention import AuditRetention, get_audit_retention
from gateway.web.common import json_response, read_json, require_tenant, services
from gateway.web.tenant_api import path_id

routes = web.RouteTableDef()


@routes.get("/v1/retention")
async def get_policy(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_retention(services(request)).policies.render(
        principal.tenant_id))


@routes.put("/v1/retention")
async def put_policy(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    policy = await get_retention(svc).policies.set(principal.tenant_id, body)
    if svc.config.signing_key_path.exists():
        # Remembered apart from the policy rows, so it outlives offboarding.
        await audit_retention(svc).remember_days(principal.tenant_id)
    return json_response(policy)


@routes.get("/v1/retention/preview")
async def preview(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_retention(services(request)).preview(principal.tenant_id))


@routes.post("/v1/legal-holds")
async def create_hold(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    hold = await get_retention(svc).holds.create(principal.tenant_id, principal.key_id, body)
    return json_response(hold, status=201, headers={"Location": f"/v1/legal-holds/{hold['id']}"})


@routes.get("/v1/legal-holds")
async def list_holds(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response({"items": await get_retention(services(request)).holds.list(
        principal.tenant_id)})


@routes.get("/v1/legal-holds/{hold_id}")
async def get_hold(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_retention(services(request)).holds.get(
        principal.tenant_id, path_id(request, "hold_id", "legal hold")))


@routes.delete("/v1/legal-holds/{hold_id}")
async def release_hold(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    await get_retention(services(request)).holds.release(
        principal.tenant_id, path_id(request, "hold_id", "legal hold"))
    return web.Response(status=204)


def audit_retention(services: Any) -> AuditRetention:
    return get_audit_retention(services, get_retention(services).policies)


async def startup(app: Any, services: Any) -> None:
    """Feature hook: expire audit entries every retention sweep interval."""
    if services.config.signing_key_path.exists():
        await start_for_app_lifetime(app, audit_retention(services))
