"""Data residency for the tenant (bearer tenant key): where its data lives
(`GET /v1/tenant`) and the report of cross-border staff reads (`GET /v1/transfers`),
docs/residency.md.

The transfer report is read from the tenant's transparency log, so reading it is logged
like every read of the log (a `log_read` entry, durable before the answer)."""

from __future__ import annotations

from aiohttp import web

from gateway.access.service import get_staff_access
from gateway.core.clock import parse_time_field
from gateway.tenants.accounts import get_tenant
from gateway.transparency.entries import format_time
from gateway.web.common import json_response, query_int, require_tenant, services
from gateway.web.transparency_api import _logged

routes = web.RouteTableDef()


@routes.get("/v1/tenant")
async def tenant(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_tenant(services(request).db, principal.tenant_id))


@routes.get("/v1/transfers")
async def transfers(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    raw_since = request.query.get("since")
    since = format_time(parse_time_field("since", raw_since)) if raw_since else None
    limit = query_int(request, "limit", 50)
    cursor = request.query.get("cursor")
    svc = services(request)
    service = get_staff_access(svc)
    assert service.transfers is not None
    _, audit = await _logged(request, principal, "transfers")
    report = await service.transfers.report(audit, principal.tenant_id, since=since,
                                            cursor=cursor, limit=limit)
    return json_response(report, headers={"Cache-Control": "no-store"})
