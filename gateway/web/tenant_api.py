"""The tenant API: integrations, calls and recordings (bearer tenant API key)."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.calls.service import parse_time_param
from gateway.errors import DomainError, invalid, not_found
from gateway.web.common import (
    body_chunks,
    json_response,
    query_int,
    read_json,
    require_tenant,
    services,
)

routes = web.RouteTableDef()
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# One range only: a multi-range request is served whole (RFC 9110 §14.2 allows ignoring it).
_RANGE_RE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$", re.IGNORECASE)
_CONTENT_TYPE_RE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]{0,200})?$")


async def startup(app: web.Application, svc) -> None:
    """Abandoned uploads are swept while the gateway runs, not only at start."""
    sweep = svc.recordings.abandoned_upload_sweep()
    await sweep.start()

    async def stop(app: web.Application) -> None:
        await sweep.stop()
    app.on_cleanup.append(stop)


def path_id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not _UUID_RE.match(value):
        raise not_found(what)
    return value


# -- integrations ---------------------------------------------------------------------------
@routes.post("/v1/integrations")
async def create_integration(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    body = await read_json(request, svc.config.limits.max_json_body_bytes)
    integration = await svc.integrations.create(principal.tenant_id, body)
    return json_response(svc.integrations.render(integration), status=201)


@routes.get("/v1/integrations")
async def list_integrations(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    items = await svc.integrations.list(principal.tenant_id)
    return json_response({"items": [svc.integrations.render(i) for i in items]})


@routes.get("/v1/integrations/{integration_id}")
async def get_integration(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    integration = await svc.integrations.get(
        principal.tenant_id, path_id(request, "integration_id", "integration"))
    return json_response(svc.integrations.render(integration))


@routes.delete("/v1/integrations/{integration_id}")
async def delete_integration(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    await services(request).integrations.disable(
        principal.tenant_id, path_id(request, "integration_id", "integration"))
    return web.Response(status=204)


# -- calls ----------------------------------------------------------------------------------
@routes.get("/v1/calls")
async def list_calls(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    q = request.query
    page = await services(request).calls.list(
        principal.tenant_id, status=q.get("status"),
        since=parse_time_param("since", q.get("since")),
        until=parse_time_param("until", q.get("until")),
        cursor=q.get("cursor"), limit=query_int(request, "limit", 50))
    return json_response(page)


@routes.get("/v1/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    call = await svc.calls.get(principal.tenant_id, path_id(request, "call_id", "call"))
    fetcher = svc.features.get("recording_fetch")
    if fetcher is not None:
        call["recording_fetches"] = await fetcher.jobs_for_call(call["id"])
    return json_response(call)


# -- recordings -----------------------------------------------------------------------------
@routes.post("/v1/calls/{call_id}/recordings")
async def upload_recording(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    call_id = path_id(request, "call_id", "call")
    if not await svc.calls.exists(principal.tenant_id, call_id):
        raise not_found("call")
    limit = svc.config.limits.max_recording_bytes
    if request.content_length is not None and request.content_length > limit:
        raise DomainError(413, "payload-too-large", "recording too large",
                      f"the limit is {limit} bytes", limit=limit)
    content_type = request.headers.get("Content-Type") or None
    if content_type is not None and not _CONTENT_TYPE_RE.match(content_type):
        raise invalid("Content-Type", "not a media type")
    recording = await svc.recordings.store_stream(
        principal.tenant_id, call_id, content_type,
        body_chunks(request), source="upload", max_bytes=limit)
    return json_response(recording, status=201,
                         headers={"Location": f"/v1/recordings/{recording['id']}"})


@routes.get("/v1/recordings/{recording_id}")
async def get_recording(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    opened = await services(request).recordings.open(
        principal.tenant_id, path_id(request, "recording_id", "recording"))
    return json_response(opened.describe())


def parse_range(header: str | None, length: int) -> tuple[int, int] | None:
    """A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range as (start, end-exclusive).
    None means serve the whole body (no header, or one this server ignores, such as a
    multi-range request, which RFC 9110 §14.2 allows it to). Unsatisfiable: 416."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise _unsatisfiable(length)
        return max(0, length - suffix), length
    start = int(first)
    if start >= length or (last != "" and int(last) < start):
        raise _unsatisfiable(length)
    end = length if last == "" else min(int(last) + 1, length)
    return start, end


def _unsatisfiable(length: int) -> DomainError:
    problem = DomainError(416, "range-not-satisfiable", "range not satisfiable",
                      f"the recording is {length} bytes")
    problem.hints["Content-Range"] = f"bytes */{length}"
    return problem


async def stream_recording(request: web.Request, opened) -> web.StreamResponse:
    """Send a recording (or the byte range asked for), decrypting only what is sent."""
    byte_range = parse_range(request.headers.get("Range"), opened.length)
    start, end = byte_range or (0, opened.length)
    response = web.StreamResponse(status=206 if byte_range else 200)
    response.content_type = opened.content_type.split(";")[0]
    if ";" in opened.content_type:
        response.headers["Content-Type"] = opened.content_type
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "no-store"
    response.content_length = end - start
    if byte_range:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{opened.length}"
    await response.prepare(request)
    if request.method != "HEAD":
        async for piece in opened.iter_range(start, end):
            await response.write(piece)
    await response.write_eof()
    return response


@routes.get("/v1/recordings/{recording_id}/audio")
async def get_recording_audio(request: web.Request) -> web.StreamResponse:
    principal = await require_tenant(request)
    opened = await services(request).recordings.open(
        principal.tenant_id, path_id(request, "recording_id", "recording"))
    return await stream_recording(request, opened)
