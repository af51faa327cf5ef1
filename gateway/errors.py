"""The one HTTP error helper: RFC 9457 problem details with a stable `type`.

Handlers and services raise `Problem`; the middleware in app.py renders it. Any other
exception becomes a generic 500 whose body says nothing about the cause (the log line has
the exception class and a request id, never request data).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:vgw:problem:"


class Problem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str | None = None,
                 **extra: Any) -> None:
        super().__init__(title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_PREFIX + self.slug, "title": self.title,
                                "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body


def problem_response(problem: Problem) -> web.Response:
    response = web.Response(status=problem.status, text=json.dumps(problem.to_dict()),
                            content_type=PROBLEM_CONTENT_TYPE)
    response.headers.update(problem.headers)
    return response


# Constructors for the problems more than one place raises, so each has one wording.
def not_found(what: str = "resource") -> Problem:
    return Problem(404, "not-found", f"{what} not found")


def unauthorized() -> Problem:
    p = Problem(401, "unauthorized", "missing or invalid credentials")
    p.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return p


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "access denied", detail)


def invalid(field: str, reason: str) -> Problem:
    """422: the request was understood but a field is wrong. Names the field, never echoes
    the value (it may be a phone number or a secret)."""
    return Problem(422, "validation-error", "request validation failed",
                   f"{field}: {reason}", field=field)


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", "request body too large",
                   f"the limit is {limit} bytes", limit=limit)
