"""HTTP for the console: its pages and assets, its session endpoints, its security headers.

Invariants:
- Assets are the files under static/, read once at app start and served from memory with
  an ETag; a path outside that set is a 404 (no filesystem path is ever built from a URL).
- Every response under /console carries SECURITY_HEADERS; session responses are no-store.
- Sign-in takes the key or token in a JSON body (never a query string, so it never reaches
  an access log or a Referer), answers 401 with one wording whatever was wrong, and sets an
  HttpOnly, SameSite=Strict cookie (Secure and __Host- behind https). The body returns the
  CSRF token, never the cookie's secret.
- Sign-out needs the CSRF token, deletes the session row, and clears the cookie.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from gateway.core.clock import isoformat
from gateway.errors import DomainError, invalid, unauthorized
from gateway.tenants.accounts import authenticate_staff, authenticate_tenant
from gateway.web.common import json_response, read_json, services
from gateway.web.console import auth, sessions

STATIC_DIR = Path(__file__).parent / "static"
# A sign-in body is one short token; anything bigger is not a sign-in.
MAX_SIGN_IN_BYTES = 4096

# No inline script or style anywhere ('self' only), no plugins, no framing, no other
# origin for anything. media-src 'self' covers the recordings (/v1/recordings/.../audio),
# which the <audio> element streams with Range requests; data: images are the charts' none.
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
               " media-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self';"
               " base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                  ".svg": "image/svg+xml", ".txt": "text/plain", ".json": "application/json"}

routes = web.RouteTableDef()


def _load_assets() -> dict[str, tuple[bytes, str, str]]:
    """relative path -> (bytes, content type, etag), for every file under static/."""
    assets = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            ctype = _CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
                or "application/octet-stream"
            etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
            assets[path.relative_to(STATIC_DIR).as_posix()] = (data, ctype, etag)
    return assets


_ASSETS = _load_assets()


def _asset(request: web.Request, name: str) -> web.Response:
    found = _ASSETS.get(name)
    if found is None:
        raise DomainError(404, "not-found", "not found")
    data, ctype, etag = found
    # no-cache: always revalidate (cheap 304), so a gateway upgrade is seen at once.
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if ctype.startswith("text/") or ctype.endswith(("json", "xml")) else None
    return web.Response(body=data, content_type=ctype, charset=charset, headers=headers)


@routes.get("/console")
async def console_root(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console/"})


@routes.get("/console/")
async def tenant_page(request: web.Request) -> web.Response:
    return _asset(request, "index.html")


@routes.get("/console/staff/")
async def staff_page(request: web.Request) -> web.Response:
    return _asset(request, "staff.html")


@routes.get("/console/assets/{path:[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*[.][a-z]+}")
async def asset(request: web.Request) -> web.Response:
    return _asset(request, "assets/" + request.match_info["path"])


# -- sessions -------------------------------------------------------------------------------
def _secure(request: web.Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says
    so, or at the configured public https URL)."""
    if request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return True
    public = urlsplit(services(request).config.server.public_base_url)
    return public.scheme == "https" and public.netloc == request.host


def _session_body(kind: str, secret: str, session: sessions.Session) -> dict:
    body = {"kind": kind, "csrf_token": sessions.csrf_token(secret),
            "expires_at": isoformat(session.expires_at),
            "idle_timeout_seconds": sessions.IDLE_SECONDS}
    principal = session.principal
    if kind == "tenant":
        body["tenant_id"] = principal.tenant_id
    else:
        body.update({"staff_id": principal.staff_id, "pseudonym": principal.pseudonym,
                     "employer": principal.employer, "country": principal.country})
    return body


async def _sign_in(request: web.Request, kind: str) -> web.Response:
    auth.check_same_site(request)
    body = await read_json(request, MAX_SIGN_IN_BYTES)
    field = "api_key" if kind == "tenant" else "token"
    if not isinstance(body, dict) or not isinstance(body.get(field), str):
        raise invalid(field, "is required")
    svc = services(request)
    authenticate = authenticate_tenant if kind == "tenant" else authenticate_staff
    principal = await authenticate(svc.db, body[field].strip())
    if principal is None:
        raise unauthorized()
    secret, session = await sessions.start_session(svc.db, svc.clock, principal)
    response = json_response(_session_body(kind, secret, session), status=201,
                             headers={"Cache-Control": "no-store"})
    secure = _secure(request)
    response.set_cookie(auth.cookie_name(kind, secure), secret, path="/", httponly=True,
                        samesite="Strict", secure=secure, max_age=sessions.MAX_SECONDS)
    return response


async def _current(request: web.Request, kind: str) -> web.Response:
    svc = services(request)
    secret = auth.cookie_secret(request, kind)
    lookup = sessions.lookup_tenant if kind == "tenant" else sessions.lookup_staff
    session = await lookup(svc.db, svc.clock, secret)
    if session is None or secret is None:
        raise unauthorized()
    return json_response(_session_body(kind, secret, session),
                         headers={"Cache-Control": "no-store"})


async def _sign_out(request: web.Request, kind: str) -> web.Response:
    svc = services(request)
    secret = auth.cookie_secret(request, kind)
    if secret is not None:
        auth.check_same_site(request)
        if not sessions.csrf_matches(secret, request.headers.get(auth.CSRF_HEADER)):
            raise auth.csrf_failed(f"missing or wrong {auth.CSRF_HEADER} header")
        await sessions.end_session(svc.db, secret)
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    for secure in (True, False):
        response.del_cookie(auth.cookie_name(kind, secure), path="/", secure=secure,
                            samesite="Strict")
    return response


@routes.post("/console/session")
async def tenant_sign_in(request: web.Request) -> web.Response:
    return await _sign_in(request, "tenant")


@routes.get("/console/session")
async def tenant_session(request: web.Request) -> web.Response:
    return await _current(request, "tenant")


@routes.delete("/console/session")
async def tenant_sign_out(request: web.Request) -> web.Response:
    return await _sign_out(request, "tenant")


@routes.post("/console/staff/session")
async def staff_sign_in(request: web.Request) -> web.Response:
    return await _sign_in(request, "staff")


@routes.get("/console/staff/session")
async def staff_session(request: web.Request) -> web.Response:
    return await _current(request, "staff")


@routes.delete("/console/staff/session")
async def staff_sign_out(request: web.Request) -> web.Response:
    return await _sign_out(request, "staff")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/console" or request.path.startswith("/console/"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


def setup_console(app: web.Application) -> None:
    """Add the console's routes and its security headers to the gateway's app."""
    app.add_routes(routes)
    app.on_response_prepare.append(_security_headers)
