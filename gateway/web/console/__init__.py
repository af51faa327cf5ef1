"""The tenant and staff console: static pages served by the gateway at /console/, plus the
session endpoints that exchange an API key or staff token for a cookie (docs/console.md).

Invariants:
- The console uses only the public API (gateway/web/*) plus the session endpoints in
  `routes`, so it can do nothing the API forbids; the session cookie is just another way
  to present a principal to `require_tenant` / `require_staff` (gateway/web/common.py,
  through `auth`).
- Every asset ships inside this package (static/); nothing is fetched from elsewhere, and
  every console response carries `routes.SECURITY_HEADERS` (a CSP with no inline script or
  style, no framing, same-origin only).
- This module imports nothing: gateway/web/common.py imports `gateway.web.console.auth`, and
  `routes` imports gateway/web/common.py, so an eager import here would be a cycle.
"""
