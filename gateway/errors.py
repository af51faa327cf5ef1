"""Domain errors: what a service says went wrong, without speaking HTTP.

Invariants:
- Services raise `DomainError` (or a constructor below); only `gateway/web/problems.py`
  turns one into an RFC 9457 `application/problem+json` response. This is h11's split:
  the protocol-free layer carries a `status_hint`, the HTTP layer decides.
- `slug` is stable: it becomes the problem `type` (`urn:vgw:problem:<slug>`) clients match on.
- A detail never holds a phone number, token, secret or audio: name the field, never echo
  the value.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key (never a secret value)."""


class DomainError(Exception):
    def __init__(self, status_hint: int, slug: str, title: str, detail: str | None = None,
                 **extra: Any) -> None:
        super().__init__(title)
        self.status_hint = status_hint
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra
        # Protocol-level hints the web layer may turn into headers (e.g. retry_after
        # seconds, an authentication challenge). Plain names, not header names.
        self.hints: dict[str, str] = {}


# Constructors for the errors more than one place raises, so each has one wording.
def not_found(what: str = "resource") -> DomainError:
    return DomainError(404, "not-found", f"{what} not found")


def unauthorized() -> DomainError:
    error = DomainError(401, "unauthorized", "missing or invalid credentials")
    error.hints["challenge"] = 'Bearer realm="gateway"'
    return error


def forbidden(detail: str) -> DomainError:
    return DomainError(403, "forbidden", "access denied", detail)


def invalid(field: str, reason: str) -> DomainError:
    """422: the request was understood but a field is wrong. Names the field, never echoes
    the value (it may be a phone number or a secret)."""
    return DomainError(422, "validation-error", "request validation failed",
                       f"{field}: {reason}", field=field)


def too_large(limit: int) -> DomainError:
    return DomainError(413, "payload-too-large", "request body too large",
                       f"the limit is {limit} bytes", limit=limit)


def unavailable(component: str, retry_after: int = 5) -> DomainError:
    """503: a backend this request needs cannot serve it now; the caller should retry."""
    error = DomainError(503, "unavailable", "service temporarily unavailable",
                        f"{component} is not available", component=component)
    error.hints["retry_after"] = str(retry_after)
    return error


def insufficient_storage(component: str, retry_after: int = 60) -> DomainError:
    """507 (RFC 4918 §11.5): a store has no space left for this upload; retry later."""
    error = DomainError(507, "insufficient-storage", "insufficient storage",
                        f"the {component} has no space left; retry later", component=component)
    error.hints["retry_after"] = str(retry_after)
    return error
