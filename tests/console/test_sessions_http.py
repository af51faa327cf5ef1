"""The console's server side over real HTTP (no browser): security headers, the session
cookie's flags, CSRF on every state-changing request, sign-out ending the session on the
server, tenant and staff sessions kept apart, bad input answered with problem+json."""

from __future__ import annotations

import hashlib
import sqlite3

import aiohttp
import pytest

from tests.console.conftest import ServedGateway


async def sign_in(http: aiohttp.ClientSession, served: ServedGateway, kind: str = "tenant",
                  headers: dict[str, str] | None = None) -> tuple[str, dict, aiohttp.ClientResponse]:
    """(cookie secret, body, response) of a fresh sign-in."""
    path, body = (("/console/session", {"api_key": served.api_key}) if kind == "tenant"
                  else ("/console/staff/session", {"token": served.staff["token"]}))
    async with http.post(served.url + path, json=body, headers=headers or {}) as response:
        assert response.status == 201, await response.text()
        data = await response.json()
        morsel = next(iter(response.cookies.values()))
        return morsel.value, data, response


def cookie_jar_free() -> aiohttp.ClientSession:
    # Cookies are sent by hand, so each request says exactly which session it carries.
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


async def test_console_pages_carry_strict_security_headers(served):
    async with cookie_jar_free() as http:
        for path in ("/console/", "/console/staff/", "/console/assets/js/tenant.js",
                     "/console/assets/console.css", "/console/assets/nope.js"):
            async with http.get(served.url + path) as response:
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "style-src 'self'" in csp
                assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
                assert "unsafe-inline" not in csp and "http" not in csp.replace("https", "")
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
        async with http.get(served.url + "/console/assets/js/tenant.js") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/javascript")
            etag = response.headers["ETag"]
        async with http.get(served.url + "/console/assets/js/tenant.js",
                            headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        async with http.get(served.url + "/console/assets/../../config.py") as response:
            assert response.status == 404
        async with http.get(served.url + "/console/", allow_redirects=False) as response:
            assert "<script" in await response.text()
        async with http.get(served.url + "/console", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/console/"


async def test_no_inline_script_or_style_in_pages(served):
    async with cookie_jar_free() as http:
        for path in ("/console/", "/console/staff/"):
            async with http.get(served.url + path) as response:
                html = await response.text()
            assert "style=" not in html and "<style" not in html
            for tag in html.split("<script")[1:]:
                assert 'src="/console/assets/' in tag.split(">")[0]
                assert tag.split(">", 1)[1].startswith("</script")


async def test_sign_in_sets_a_short_lived_httponly_strict_cookie(served):
    async with cookie_jar_free() as http:
        secret, body, response = await sign_in(http, served)
        header = response.headers["Set-Cookie"]
        assert header.startswith("vgw_console=")
        assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
        assert "Secure" not in header  # plain http here
        assert "Max-Age=28800" in header
        assert secret not in str(body) and served.api_key not in str(body)
        assert response.headers["Cache-Control"] == "no-store"
        assert body["tenant_id"] == served.tenant_id and len(body["csrf_token"]) == 64
        # Behind an https proxy: Secure, and the __Host- prefix.
        _, _, secure = await sign_in(http, served, headers={"X-Forwarded-Proto": "https"})
        header = secure.headers["Set-Cookie"]
        assert header.startswith("__Host-vgw_console=") and "Secure" in header
    # Only the hash of the secret is stored.
    conn = sqlite3.connect(served.database_path)
    try:
        rows = conn.execute("SELECT token_hash FROM console_sessions").fetchall()
    finally:
        conn.close()
    assert hashlib.sha256(secret.encode()).digest() in {bytes(r[0]) for r in rows}
    assert not any(secret.encode() in bytes(r[0]) for r in rows)


async def test_cookie_authenticates_reads_and_csrf_guards_writes(served):
    async with cookie_jar_free() as http:
        secret, body, _ = await sign_in(http, served)
        cookie = {"Cookie": f"vgw_console={secret}"}
        async with http.get(served.url + "/v1/retention", headers=cookie) as response:
            assert response.status == 200
        policy = {"recordings": 30}
        async with http.put(served.url + "/v1/retention", json=policy, headers=cookie) as r:
            assert r.status == 403
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert (await r.json())["type"] == "urn:vgw:problem:csrf-failed"
        async with http.put(served.url + "/v1/retention", json=policy,
                            headers={**cookie, "X-CSRF-Token": "0" * 64}) as r:
            assert r.status == 403
        async with http.put(served.url + "/v1/retention", json=policy,
                            headers={**cookie, "X-CSRF-Token": body["csrf_token"],
                                     "Origin": "https://evil.example"}) as r:
            assert r.status == 403
        async with http.put(served.url + "/v1/retention", json=policy,
                            headers={**cookie, "X-CSRF-Token": body["csrf_token"],
                                     "Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403
        async with http.put(served.url + "/v1/retention", json=policy,
                            headers={**cookie, "X-CSRF-Token": body["csrf_token"],
                                     "Origin": served.url}) as r:
            assert r.status == 200, await r.text()
        # Bearer auth is unchanged and needs no CSRF token.
        async with http.put(served.url + "/v1/retention", json={},
                            headers=served.tenant_auth) as r:
            assert r.status == 200
        # An Authorization header that is not a valid bearer is not rescued by the cookie.
        async with http.get(served.url + "/v1/retention",
                            headers={**cookie, "Authorization": "Basic eA=="}) as r:
            assert r.status == 401


async def test_sign_out_ends_the_session_on_the_server(served):
    async with cookie_jar_free() as http:
        secret, body, _ = await sign_in(http, served)
        cookie = {"Cookie": f"vgw_console={secret}"}
        async with http.delete(served.url + "/console/session", headers=cookie) as r:
            assert r.status == 403  # sign-out needs the CSRF token too
        async with http.delete(served.url + "/console/session",
                               headers={**cookie, "X-CSRF-Token": body["csrf_token"]}) as r:
            assert r.status == 204
            assert "vgw_console=" in r.headers.getall("Set-Cookie")[0]
        # The old cookie, replayed, is dead everywhere.
        async with http.get(served.url + "/v1/calls", headers=cookie) as r:
            assert r.status == 401
        async with http.get(served.url + "/console/session", headers=cookie) as r:
            assert r.status == 401


async def test_tenant_and_staff_sessions_are_kept_apart(served):
    async with cookie_jar_free() as http:
        tenant_secret, _, _ = await sign_in(http, served, "tenant")
        staff_secret, staff_body, _ = await sign_in(http, served, "staff")
        assert staff_body["pseudonym"] == served.staff["pseudonym"]
        tenant_as_staff = {"Cookie": f"vgw_staff_console={tenant_secret}"}
        staff_as_tenant = {"Cookie": f"vgw_console={staff_secret}"}
        async with http.get(served.url + "/v1/staff/access-requests",
                            headers=tenant_as_staff) as r:
            assert r.status == 401
        async with http.get(served.url + "/v1/calls", headers=staff_as_tenant) as r:
            assert r.status == 401
        async with http.get(served.url + "/console/staff/session",
                            headers={"Cookie": f"vgw_console={tenant_secret}"}) as r:
            assert r.status == 401
        async with http.get(served.url + "/v1/staff/access-requests",
                            headers={"Cookie": f"vgw_staff_console={staff_secret}"}) as r:
            assert r.status == 200


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"api_key": 5}', b'{"api_key": "vgw_nope"}',
    b'{"api_key": "' + b"x" * 5000 + b'"}', b'{"token": "vgws_x"}'])
async def test_bad_sign_in_is_a_problem_not_a_500(served, body):
    async with cookie_jar_free() as http:
        async with http.post(served.url + "/console/session", data=body,
                             headers={"Content-Type": "application/json"}) as r:
            assert 400 <= r.status < 500
            assert r.headers["Content-Type"].startswith("application/problem+json")
            text = await r.text()
            assert "vgw_nope" not in text and "Set-Cookie" not in r.headers
        async with http.post(served.url + "/console/session",
                             json={"api_key": served.api_key},
                             headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403  # login CSRF: another site cannot sign us in
