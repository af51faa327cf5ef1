"""Tenant API for live audio: ingest tokens per integration (bearer tenant API key).

POST   /v1/integrations/{integration_id}/ingest-tokens             -> 201, the token once
GET    /v1/integrations/{integration_id}/ingest-tokens             -> ids and times only
DELETE /v1/integrations/{integration_id}/ingest-tokens/{token_id}  -> 204 (revoked)
"""

from __future__ import annotations

import re

from aiohttp import web

import adapters
from gateway.errors import not_found
from gateway.media.websocket import public_ws_base
from gateway.web.common import json_response, require_tenant, services
from gateway.web.tenant_api import path_id

routes = web.RouteTableDef()
_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


def media_urls(request: web.Request, integration) -> dict[str, str]:
    base = services(request).config.server.public_base_url.rstrip("/")
    ws_base = public_ws_base(base)
    urls = {"whip_url": f"{base}/v1/whip/{integration.id}"}
    if integration.platform in adapters.MEDIA_STREAM_PLATFORMS:
        urls["media_url"] = f"{ws_base}/v1/media/{integration.platform}/{integration.id}"
    return urls


@routes.post("/v1/integrations/{integration_id}/ingest-tokens")
async def create_token(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    integration = await svc.integrations.get(
        principal.tenant_id, path_id(request, "integration_id", "integration"))
    token = await svc.features["media"].tokens.create(principal.tenant_id, integration.id)
    return json_response({**token, **media_urls(request, integration)}, status=201)


@routes.get("/v1/integrations/{integration_id}/ingest-tokens")
async def list_tokens(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    integration = await svc.integrations.get(
        principal.tenant_id, path_id(request, "integration_id", "integration"))
    items = await svc.features["media"].tokens.list(principal.tenant_id, integration.id)
    return json_response({"items": items})


@routes.delete("/v1/integrations/{integration_id}/ingest-tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    principal = await require_tenant(request)
    svc = services(request)
    integration = await svc.integrations.get(
        principal.tenant_id, path_id(request, "integration_id", "integration"))
    token_id = request.match_info["token_id"]
    if not _TOKEN_ID_RE.match(token_id):
        raise not_found("ingest token")
    await svc.features["media"].tokens.revoke(principal.tenant_id, integration.id, token_id)
    return web.Response(status=204)
