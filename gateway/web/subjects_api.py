"""The tenant API for data-subject requests by phone number (bearer tenant API key)."""

from __future__ import annotations

from aiohttp import web

from gateway.lifecycle.subjects import get_subjects
from gateway.web.common import json_response, query_int, read_json, require_tenant, services
from gateway.web.tenant_api import path_id

routes = web.RouteTableDef()


async def _body(request: web.Request):
    return await read_json(request, services(request).config.limits.max_json_body_bytes)


@routes.post("/v1/subjects/search")
async def search(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    result = await get_subjects(services(request)).search(
        principal.tenant_id, principal.key_id, await _body(request))
    return json_response(result)


@routes.post("/v1/subjects/export")
async def export(request: web.Request) -> web.StreamResponse:
    """The bundle is streamed: the request completes (receipt with the bundle's SHA-256)
    once the last byte is sent."""
    principal = await require_tenant(request)
    subject_request, chunks = await get_subjects(services(request)).export(
        principal.tenant_id, principal.key_id, await _body(request))
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "application/json",
        "Content-Disposition": f'attachment; filename="subject-export-{subject_request["id"]}.json"',
        "Cache-Control": "no-store",
        "Location": f"/v1/subjects/requests/{subject_request['id']}"})
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    finally:
        await chunks.aclose()
    return response


@routes.post("/v1/subjects/erase")
async def erase(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    result = await get_subjects(services(request)).erase(
        principal.tenant_id, principal.key_id, await _body(request))
    return json_response(result)


@routes.post("/v1/subjects/restrict")
async def restrict(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    result = await get_subjects(services(request)).restrict(
        principal.tenant_id, principal.key_id, await _body(request))
    return json_response(result)


@routes.post("/v1/subjects/rectify")
async def rectify(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    result = await get_subjects(services(request)).rectify(
        principal.tenant_id, principal.key_id, await _body(request))
    return json_response(result)


@routes.get("/v1/subjects/requests")
async def list_requests(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    items = await get_subjects(services(request)).list(
        principal.tenant_id, query_int(request, "limit", 100))
    return json_response({"items": items})


@routes.get("/v1/subjects/requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    return json_response(await get_subjects(services(request)).get(
        principal.tenant_id, path_id(request, "request_id", "subject request")))
