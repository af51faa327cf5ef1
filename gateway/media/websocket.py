"""GET (WebSocket) /v1/media/{platform}/{integration_id}, for every platform whose
descriptor has a `media_stream` (adapters.MEDIA_STREAM_PLATFORMS: Twilio, Telnyx, Vonage).

Before the upgrade: unknown integration or platform -> 404; not a WebSocket upgrade -> 426.
The upgrade is then authenticated the way the descriptor's `upgrade_auth` says, and a
failure closes the socket with 1008 right after it opens (Twilio documents exactly that;
the others see the same):
- "signature": `verify_upgrade` over the public URL (server.public_base_url with
  http -> ws, https -> wss), e.g. Twilio's `X-Twilio-Signature`, no parameters;
- "signature_or_token": a `?token=` ingest token if present (integrations that opted out
  of signatures), else the signature (Vonage's `Authorization: Bearer` JWT);
- "token": an ingest token (`?token=` or `Authorization: Bearer`), for platforms that
  sign nothing (Telnyx).
Then frames go through the descriptor's sans-I/O parser; a bad frame closes with its
1007/1008 (and a metric); the recording keeps what arrived before it, marked 'incomplete'.
The code names no platform: it reads the descriptor.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

import adapters
from adapters.events import WebhookRequest
from adapters.media import (
    MAX_FRAME_BYTES,
    MediaChunk,
    MediaProtocolError,
    StreamStart,
    StreamStop,
)
from gateway.errors import DomainError, not_found
from gateway.media.codecs import decoder_for
from gateway.web.common import services

log = logging.getLogger("gateway.media")
routes = web.RouteTableDef()
# RFC 6455 section 7.4.1 / IANA registry: 1000 normal, 1001 going away (idle, shutdown),
# 1008 policy violation, 1011 unexpected condition, 1013 try again later (at capacity).
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_ERROR, CLOSE_TRY_LATER = (
    1000, 1001, 1008, 1011, 1013)


def public_ws_base(public_base_url: str) -> str:
    """The configured public base URL with http -> ws and https -> wss."""
    base = public_base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):]
    if base.startswith("http://"):
        return "ws://" + base[len("http://"):]
    return base


def public_ws_url(request: web.Request) -> str:
    """The URL the platform connected to, as it signed it: the public ws(s) base plus the
    path (a stream URL carries no query)."""
    return public_ws_base(services(request).config.server.public_base_url) + \
        request.rel_url.raw_path


def bearer_or_query_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip().startswith("vgwi_"):
        return value.strip()
    return request.query.get("token")


async def authenticate(request: web.Request, stream: adapters.MediaStream,
                       integration) -> bool:
    svc = services(request)
    media = svc.features["media"]
    if stream.upgrade_auth == adapters.UPGRADE_TOKEN:
        return await media.tokens.check(integration.id, bearer_or_query_token(request))
    if stream.upgrade_auth == adapters.UPGRADE_SIGNATURE_OR_TOKEN:
        token = request.query.get("token")
        if token is not None:
            return await media.tokens.check(integration.id, token)
    headers = {k.lower(): v for k, v in request.headers.items()}
    upgrade = WebhookRequest(method="GET", url=public_ws_url(request), headers=headers, body=b"")
    try:
        stream.verify_upgrade(upgrade, integration.credentials, svc.clock.now())
    except adapters.AdapterError:
        return False
    return True


@routes.get("/v1/media/{platform}/{integration_id}")
async def media_socket(request: web.Request) -> web.StreamResponse:
    platform = request.match_info["platform"]
    descriptor = adapters.PLATFORMS.get(platform)
    stream = descriptor.media_stream if descriptor is not None else None
    if stream is None:
        raise not_found("platform")
    svc = services(request)
    media = svc.features["media"]
    integration = await svc.integrations.load_for_delivery(platform,
                                                           request.match_info["integration_id"])
    # aiohttp's own cap is a backstop above the parsers' MAX_FRAME_BYTES (which answer an
    # oversized frame with 1008); beyond it aiohttp answers 1009 itself.
    ws = web.WebSocketResponse(max_msg_size=2 * MAX_FRAME_BYTES, compress=False,
                               autoping=True)
    if not ws.can_prepare(request).ok:
        raise DomainError(426, "upgrade-required", "a WebSocket upgrade is required")
    authentic = await authenticate(request, stream, integration)
    await ws.prepare(request)
    if not authentic:
        media.metrics.rejected.labels(platform, "unauthenticated").inc()
        await ws.close(code=CLOSE_POLICY, message=b"authentication failed")
        return ws
    if media.at_capacity():
        media.metrics.rejected.labels(platform, "capacity").inc()
        await ws.close(code=CLOSE_TRY_LATER, message=b"at capacity")
        return ws
    parser = stream.new_parser(integration.credentials, request.query)
    await run_stream(ws, media, integration, platform, stream, parser)
    return ws


async def run_stream(ws: web.WebSocketResponse, media, integration, platform: str,
                     stream: adapters.MediaStream, parser) -> None:
    idle = media.config.idle_timeout_seconds
    session = None
    end, complete, close_code = "closed", False, CLOSE_NORMAL
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    try:
        while True:
            # Until the stream has started the socket itself times out; from then on the
            # media service's watchdog watches every stream at once (a timer per frame
            # would cost more than the frame).
            msg = await (ws.receive() if session is not None else ws.receive(timeout=idle))
            kind = msg.type
            if kind is text:
                event = parser.receive_text(msg.data)
            elif kind is binary:
                event = parser.receive_bytes(msg.data)
            elif kind is WSMsgType.ERROR:
                media.metrics.frame_errors.labels(platform, "transport").inc()
                end, close_code = "protocol_error", CLOSE_POLICY
                break
            else:
                # The peer closed. Some platforms end their streams this way (Vonage);
                # the others send `stop` first, so a bare close means the stream was cut.
                complete = stream.ends_by_close and session is not None and not media.stopping
                if media.stopping:
                    end = "shutdown"
                elif session is not None and session.idle:
                    end, complete, close_code = "idle_timeout", False, CLOSE_GOING_AWAY
                break
            if type(event) is MediaChunk:
                if session.feed(event.track, event.payload, event.sequence,
                                event.timestamp_ms):
                    await session.service()
            elif type(event) is StreamStart:
                session = await start_session(media, integration, platform, stream, event)
                session.closer = ws.close
                session.watched = True
            elif type(event) is StreamStop:
                end, complete = "stop", True
                break
    except MediaProtocolError as exc:
        media.metrics.frame_errors.labels(platform, exc.outcome).inc()
        end, close_code = "protocol_error", exc.close_code
    except TimeoutError:
        end, close_code = "idle_timeout", CLOSE_GOING_AWAY
    except asyncio.CancelledError:
        end, close_code = "shutdown", CLOSE_GOING_AWAY
        raise
    except Exception:
        # A bug or a failing disk: this stream ends, the process and other streams go on.
        log.exception("live stream failed", extra={"route": platform})
        media.metrics.frame_errors.labels(platform, "internal").inc()
        end, close_code = "error", CLOSE_ERROR
    finally:
        if session is not None:
            await session.finish(end, complete=complete)
        if not ws.closed:
            await ws.close(code=close_code)


async def start_session(media, integration, platform: str, stream: adapters.MediaStream,
                        start: StreamStart):
    g711_raw = media.config.g711_storage == "as_received"

    def make_decoder():
        return decoder_for(start.encoding, start.sample_rate, g711_as_received=g711_raw)

    pipeline = media.pipeline(make_decoder, tracks=start.tracks,
                              sequenced=stream.sequenced)
    call_id = await media.link_call(integration, start.call_id, start.stream_id, platform)
    return await media.start(integration, call_id, platform, pipeline)
