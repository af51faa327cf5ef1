"""The staff API (bearer staff token): access requests and the gated diagnostic reads.

Every diagnostic read goes through `StaffAccessService.authorise_read`, which logs the read
(or the refusal) durably in the tenant's transparency log before anything is rendered; if
that append fails the read is refused with 503 and nothing about the call is sent."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from gateway.access.diagnostics import get_diagnostics
from gateway.access.gate import ReadDecision, refusal_problem
from gateway.access.service import get_staff_access
from gateway.errors import DomainError, invalid, not_found
from gateway.web.common import json_response, query_int, read_json, require_staff, services
from gateway.web.tenant_api import stream_recording

log = logging.getLogger("gateway.staff_api")
routes = web.RouteTableDef()
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _optional_uuid(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not _UUID_RE.match(value):
        raise invalid(name, "must be an id")
    return value


def audit_unavailable() -> DomainError:
    return DomainError(503, "audit-unavailable", "access refused",
                   "the access could not be logged, so it was refused")


@routes.post("/v1/staff/access-requests")
async def create_access_request(request: web.Request) -> web.Response:
    staff = await require_staff(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    created = await get_staff_access(svc).create_request(staff, body)
    return json_response(created, status=201,
                         headers={"Location": f"/v1/staff/access-requests/{created['id']}"})


@routes.get("/v1/staff/access-requests")
async def list_own_requests(request: web.Request) -> web.Response:
    staff = await require_staff(request)
    page = await get_staff_access(services(request)).list_for_staff(
        staff, state=request.query.get("state"), limit=query_int(request, "limit", 50),
        cursor=request.query.get("cursor"))
    return json_response(page)


@routes.get("/v1/staff/access-requests/{request_id}")
async def get_own_request(request: web.Request) -> web.Response:
    staff = await require_staff(request)
    request_id = request.match_info["request_id"]
    if not _UUID_RE.match(request_id):
        raise not_found("access request")
    return json_response(await get_staff_access(services(request)).get_for_staff(
        staff, request_id))


async def _authorise(request: web.Request, level: str, endpoint: str
                     ) -> tuple[str, ReadDecision]:
    staff = await require_staff(request)       # credentials before any parameter
    call_id = request.match_info["call_id"]
    grant_id = _optional_uuid(request, "grant")
    recording_id = _optional_uuid(request, "recording") if level == "audio" else None
    if not _UUID_RE.match(call_id):
        raise refusal_problem("no_grant")
    try:
        decision = await get_staff_access(services(request)).authorise_read(
            staff, call_id, level=level, endpoint=endpoint, grant_id=grant_id,
            recording_id=recording_id)
    except DomainError:
        raise
    except Exception as exc:  # fail closed: no log entry, no answer
        log.error("diagnostic read refused: audit append failed (%s)", type(exc).__name__)
        raise audit_unavailable() from None
    if not decision.allowed:
        if decision.reason == "not_found":
            raise not_found("recording")
        raise refusal_problem(decision.reason or "no_grant")
    return call_id, decision


@routes.get("/v1/staff/diagnostics/calls/{call_id}")
async def technical_view(request: web.Request) -> web.Response:
    call_id, decision = await _authorise(request, "technical", "technical_view")
    assert decision.tenant_id is not None
    view = await get_diagnostics(services(request)).technical_view(
        decision.tenant_id, call_id,
        grant={"id": decision.grant_id, "level": decision.level,
               "expires_at": decision.expires_at, "single_use": decision.single_use})
    return json_response(view, headers={"Cache-Control": "no-store"})


@routes.get("/v1/staff/diagnostics/calls/{call_id}/audio")
async def audio(request: web.Request) -> web.StreamResponse:
    _, decision = await _authorise(request, "audio", "audio")
    assert decision.tenant_id is not None and decision.recording_id is not None
    opened = await services(request).recordings.open(decision.tenant_id,
                                                     decision.recording_id)
    return await stream_recording(request, opened)
