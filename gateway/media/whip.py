"""WHIP (RFC 9725): any WebRTC publisher sends its audio to the gateway.

POST /v1/whip/{integration_id}   `Content-Type: application/sdp`, `Authorization: Bearer
    <ingest token>`, the SDP offer -> 201 Created, `Content-Type: application/sdp`, the
    answer (recvonly: aiortc gathers its candidates before answering, so no trickle ICE is
    needed), `Location: /v1/whip/{integration_id}/{session_id}` (RFC 9725 section 4.2).
    Wrong content type 415, malformed offer or no audio 400, bad token 401, unknown
    integration 404, at capacity 503 with Retry-After.
DELETE /v1/whip/{integration_id}/{session_id} (same bearer token) -> 200, the session
    ends and its recording is finished; unknown session 404 (section 4.2).
OPTIONS /v1/whip/{integration_id} -> 204 with `Accept-Post: application/sdp` (section 4.1).
PATCH (trickle ICE / ICE restart) is not supported: aiohttp answers 405 (section 4.3.1).

Every session gets its own call (platform call id `whip-<session id>`, status in-progress,
completed with its duration when the session ends) and a recording under it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from aiohttp import web

from adapters.events import CallEvent
from gateway.errors import DomainError, not_found, unauthorized
from gateway.web.common import read_body, services

routes = web.RouteTableDef()
SDP_TYPE = "application/sdp"
# An SDP offer for one audio (and maybe one video) section is 2-6 KiB; browsers with many
# codecs and candidates stay under 16 KiB. 64 KiB bounds what reaches the SDP parser.
MAX_OFFER_BYTES = 64 * 1024
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SESSION_RE = re.compile(r"^[0-9a-f]{32}$")


async def _integration(request: web.Request):
    svc = services(request)
    integration_id = request.match_info["integration_id"]
    if not _UUID_RE.match(integration_id):
        raise not_found("integration")
    row = await svc.db.fetchone(
        "SELECT platform FROM integrations WHERE id = ? AND disabled_at IS NULL",
        (integration_id,))
    if row is None:
        raise not_found("integration")
    integration = await svc.integrations.load_for_delivery(row["platform"], integration_id)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    media = svc.features["media"]
    if scheme.lower() != "bearer" or not await media.tokens.check(integration.id, token.strip()):
        media.metrics.rejected.labels("whip", "unauthenticated").inc()
        raise unauthorized()
    return integration


def _unavailable(media, reason: str) -> DomainError:
    media.metrics.rejected.labels("whip", reason).inc()
    problem = DomainError(503, "unavailable", "no capacity for another session",
                      "try again shortly")
    problem.hints["retry_after"] = "5"
    return problem


@routes.route("OPTIONS", "/v1/whip/{integration_id}")
async def whip_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": SDP_TYPE})


@routes.post("/v1/whip/{integration_id}")
async def whip_publish(request: web.Request) -> web.Response:
    svc = services(request)
    media = svc.features["media"]
    integration = await _integration(request)
    if request.content_type != SDP_TYPE:
        raise DomainError(415, "unsupported-media-type", f"expected {SDP_TYPE}")
    body = await read_body(request, MAX_OFFER_BYTES)
    try:
        offer = body.decode("ascii")
    except UnicodeDecodeError:
        raise DomainError(400, "malformed-sdp", "the offer is not SDP") from None
    if not offer.startswith("v=0"):
        raise DomainError(400, "malformed-sdp", "the offer is not SDP")
    rtc = media.webrtc
    if rtc.count("whip") >= media.config.whip_max_sessions:
        raise _unavailable(media, "whip_capacity")
    if media.at_capacity():
        raise _unavailable(media, "capacity")
    session = rtc.new_peer("whip")
    try:
        try:
            await rtc.negotiate(session, offer)
        except ValueError:
            raise DomainError(400, "malformed-sdp", "the offer cannot be answered",
                          "it needs one audio section this gateway can receive") from None
        call_id = await media.link_call(integration, f"whip-{session.id}", session.id, "whip")
        recording = await media.start(integration, call_id, "whip", rtc.pipeline())
        session.attach_recording(recording)
        session.on_end.append(_call_completed(media, integration, session))
        answer = await rtc.answer(session)
    except BaseException:
        await session.close("error")
        raise
    location = f"/v1/whip/{integration.id}/{session.id}"
    return web.Response(status=201, body=answer.encode(), content_type=SDP_TYPE,
                        headers={"Location": location})


@routes.delete("/v1/whip/{integration_id}/{session_id}")
async def whip_delete(request: web.Request) -> web.Response:
    svc = services(request)
    integration = await _integration(request)
    session_id = request.match_info["session_id"]
    rtc = svc.features["media"].webrtc
    session = rtc.sessions.get(session_id) if _SESSION_RE.match(session_id) else None
    if session is None or session.kind != "whip" or session.recording is None \
            or session.recording.integration.id != integration.id:
        raise not_found("session")
    await session.close("deleted")
    return web.Response(status=200)


def _call_completed(media, integration, session):
    started = media.clock.now()
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def completed(_session, _result) -> None:
        seconds = loop.time() - began
        event = CallEvent(platform=integration.platform,
                          dedupe_key=f"media:whip:{session.id}:end",
                          platform_call_id=f"whip-{session.id}", status="completed",
                          occurred_at=media.clock.now(), started_at=started,
                          ended_at=started + timedelta(seconds=seconds),
                          duration_seconds=round(seconds),
                          diagnostics={"media": "whip", "end": session.end_reason})
        await media.services.ingest.ingest_events(integration, [event])

    return completed
