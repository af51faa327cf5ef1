"""The console's half of authentication: read the session cookie, enforce CSRF.

Used only by `require_tenant` / `require_staff` (gateway/web/common.py) when a request has
no Authorization header; bearer authentication is untouched.

Invariants:
- A state-changing request (anything but GET, HEAD, OPTIONS) authenticated by a cookie must
  carry the session's CSRF token in `X-CSRF-Token`, and must not come from another site
  (`Origin` other than this host, or `Sec-Fetch-Site: cross-site`): 403 otherwise. The
  cookie is SameSite=Strict as well; the token is the defence that does not depend on the
  browser.
- A tenant cookie never authenticates a staff request, nor the reverse.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.errors import DomainError
from gateway.tenants.accounts import StaffPrincipal, TenantPrincipal
from gateway.web.console import sessions

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TENANT_COOKIE = "vgw_console"
STAFF_COOKIE = "vgw_staff_console"
# Behind https the cookie takes the __Host- prefix, which browsers accept only with Secure,
# Path=/ and no Domain: no subdomain and no plain-http page can plant or shadow it.
SECURE_PREFIX = "__Host-"


def cookie_name(kind: str, secure: bool) -> str:
    base = TENANT_COOKIE if kind == "tenant" else STAFF_COOKIE
    return SECURE_PREFIX + base if secure else base


def cookie_secret(request: web.Request, kind: str) -> str | None:
    return (request.cookies.get(cookie_name(kind, True))
            or request.cookies.get(cookie_name(kind, False)))


def csrf_failed(detail: str) -> DomainError:
    return DomainError(403, "csrf-failed", "cross-site request refused", detail)


def check_same_site(request: web.Request) -> None:
    """Refuse a request a browser says came from another site (login CSRF included)."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise csrf_failed("the request came from another origin")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise csrf_failed("the request came from another site")


async def _session(request: web.Request, svc: Any, kind: str):
    secret = cookie_secret(request, kind)
    if secret is None:
        return None
    lookup = sessions.lookup_tenant if kind == "tenant" else sessions.lookup_staff
    session = await lookup(svc.db, svc.clock, secret)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        check_same_site(request)
        if not sessions.csrf_matches(secret, request.headers.get(CSRF_HEADER)):
            raise csrf_failed(f"missing or wrong {CSRF_HEADER} header")
    return session


async def tenant_from_cookie(request: web.Request, svc: Any) -> TenantPrincipal | None:
    session = await _session(request, svc, "tenant")
    return session.principal if session is not None else None


async def staff_from_cookie(request: web.Request, svc: Any) -> StaffPrincipal | None:
    session = await _session(request, svc, "staff")
    return session.principal if session is not None else None
