"""What every handler shares: the services container, auth, body reading, JSON replies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.errors import DomainError, too_large, unauthorized
from gateway.tenants.accounts import (
    StaffPrincipal,
    TenantPrincipal,
    authenticate_staff,
    authenticate_tenant,
)
from gateway.web.console.auth import staff_from_cookie, tenant_from_cookie
from gateway.web.json_body import parse_json
from gateway.web.server import body_timeout

SERVICES = web.AppKey("services", object)


def services(request: web.Request) -> Any:
    return request.app[SERVICES]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


async def require_tenant(request: web.Request) -> TenantPrincipal:
    """The one auth dependency for the tenant API: a bearer API key or, with no
    Authorization header at all, a console session cookie (CSRF-checked on writes)."""
    token = _bearer(request)
    if token is None and "Authorization" not in request.headers:
        principal = await tenant_from_cookie(request, services(request))
    else:
        principal = await authenticate_tenant(services(request).db, token) if token else None
    if principal is None:
        raise unauthorized()
    return principal


async def require_staff(request: web.Request) -> StaffPrincipal:
    """The one auth dependency for the staff API: a bearer staff token or, with no
    Authorization header at all, a staff console session cookie (CSRF-checked on writes)."""
    token = _bearer(request)
    if token is None and "Authorization" not in request.headers:
        principal = await staff_from_cookie(request, services(request))
    else:
        principal = await authenticate_staff(services(request).db, token) if token else None
    if principal is None:
        raise unauthorized()
    return principal


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the whole body, refusing (413) anything over `limit` without buffering it."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in body_chunks(request):
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


async def body_chunks(request: web.Request, size: int = 64 * 1024):
    """The body as a stream of chunks. A body aiohttp cannot decode (e.g. `Content-Encoding:
    gzip` over bytes that are not gzip) is the sender's fault: 400, not 500. A client that
    sends nothing for `[server] body_timeout_seconds` is cut off (408, connection closed),
    so a slow body never holds a connection and its handler open."""
    idle = services(request).config.server.body_timeout_seconds
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.read(size)
        except TimeoutError:
            raise body_timeout(idle) from None
        except web.RequestPayloadError:
            raise DomainError(400, "malformed-body",
                              "the request body could not be read") from None
        if not chunk:
            return
        yield chunk


async def read_json(request: web.Request, limit: int) -> Any:
    body = await read_body(request, limit)
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype not in ("application/json", ""):
        raise DomainError(415, "unsupported-media-type", "expected application/json")
    return parse_json(body)


def query_int(request: web.Request, name: str, default: int) -> int:
    from gateway.errors import invalid
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(name, "must be an integer") from None
