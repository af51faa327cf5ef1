"""Platform webhooks: POST (and WhatsApp's GET handshake) /v1/hooks/{platform}/{integration_id}.

The platform's signature is the authentication. The URL the adapter verifies is rebuilt
from the configured public base URL, because behind a proxy the Host the gateway sees is
not the one the platform signed.

This is the ingest hot path (issue 12): a body that has fully arrived with the headers
(the usual webhook: a few hundred bytes, one TCP segment) is taken from aiohttp's buffer
directly; anything else is read by `read_body`, with its size limit and body-idle
timeout."""

from __future__ import annotations

import json

from aiohttp import web

import adapters
from adapters.events import HandshakeReply, WebhookRequest
from gateway.errors import DomainError, not_found
from gateway.web.common import json_response, read_body, services

routes = web.RouteTableDef()
# The usual acknowledgements, encoded once: the same bytes and headers `json_response`
# gives, without a json.dumps per webhook.
_ACKS = {(accepted, duplicates): json.dumps({"accepted": accepted,
                                             "duplicates": duplicates}).encode()
         for accepted in range(4) for duplicates in range(4)}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def public_url(request: web.Request) -> str:
    base = services(request).config.server.public_base_url.rstrip("/")
    return base + request.rel_url.raw_path_qs


async def _deliver(request: web.Request) -> web.Response:
    svc = services(request)
    platform = request.match_info["platform"]
    if platform not in adapters.PLATFORMS:
        raise not_found("platform")
    body = b""
    if request.method == "POST":
        body = _buffered_body(request, svc.config.limits.max_webhook_body_bytes)
        if body is None:
            body = await read_body(request, svc.config.limits.max_webhook_body_bytes)
    headers = request.headers
    delivery = WebhookRequest(
        method=request.method, url=public_url(request),
        headers=dict(zip(map(str.lower, headers.keys()), headers.values(), strict=True)),
        body=body)
    try:
        result = await svc.ingest.handle_webhook(platform, request.match_info["integration_id"],
                                                 delivery)
    except adapters.AdapterError as exc:
        # The adapter's message names a field at most; signature failures say nothing more
        # unless the adapter gives a `detail` written to be shown (what to fix, no secret).
        detail = (getattr(exc, "detail", None) if isinstance(exc, adapters.SignatureError)
                  else str(exc))
        extra = {"field": exc.field} if getattr(exc, "field", None) else {}
        raise DomainError(exc.status, exc.problem_type, "webhook rejected", detail, **extra) \
            from None
    if isinstance(result, HandshakeReply):
        return web.Response(status=result.status, text=result.body, content_type="text/plain")
    # 200 even when events were rejected (unusable fields): a retry could never succeed,
    # and every platform retries a non-2xx (docs/platforms.md, "Unusable fields").
    if result.rejected:
        return json_response({"accepted": result.accepted, "duplicates": result.duplicates,
                              "rejected": result.rejected})
    body = _ACKS.get((result.accepted, result.duplicates))
    if body is None:
        return json_response({"accepted": result.accepted, "duplicates": result.duplicates})
    return web.Response(body=body, headers=_JSON_HEADERS)


def _buffered_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body if it is already in aiohttp's buffer (Content-Length given, within
    `limit`, every byte received), else None: no await, no timer for a body that is here."""
    length = request.content_length
    content = request.content
    if length is None or length > limit or not content.is_eof():
        return None
    return content.read_nowait()     # at EOF aiohttp has checked the length


@routes.post("/v1/hooks/{platform}/{integration_id}")
async def post_hook(request: web.Request) -> web.Response:
    return await _deliver(request)


@routes.get("/v1/hooks/{platform}/{integration_id}")
async def get_hook(request: web.Request) -> web.Response:
    # Only subscription handshakes (WhatsApp) use GET; other adapters reject it.
    return await _deliver(request)
