"""The one HTTP error renderer: a DomainError becomes RFC 9457 problem details.

Any other exception becomes a generic 500 in the middleware, whose body says nothing about
the cause (the log line has the exception class and a request id, never request data)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.errors import DomainError

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:vgw:problem:"

# DomainError hints -> the HTTP header that carries each.
_HINT_HEADERS = {"challenge": "WWW-Authenticate", "retry_after": "Retry-After",
                 "allow": "Allow"}


def problem_body(error: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_PREFIX + error.slug, "title": error.title,
                            "status": error.status_hint}
    if error.detail:
        body["detail"] = error.detail
    body.update(error.extra)
    return body


def problem_response(error: DomainError) -> web.Response:
    response = web.Response(status=error.status_hint, text=json.dumps(problem_body(error)),
                            content_type=PROBLEM_CONTENT_TYPE)
    for hint, value in error.hints.items():
        if hint == "close":     # the connection cannot be reused (e.g. a body left unread)
            response.force_close()
            continue
        response.headers[_HINT_HEADERS.get(hint, hint)] = value
    return response
