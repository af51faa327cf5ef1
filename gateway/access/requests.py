"""Parsing a staff member's access request (`POST /v1/staff/access-requests` body) into a
`NewRequest`. Pure: no storage, no clock.

Invariants:
- Unknown fields are refused (422 naming the field), never ignored or stored.
- The ticket reference is a short code and never something that reads as a phone number,
  because it is copied into the tenant's log and notifications.
- The scope is either a bounded list of call ids or a bounded, zoned time window.
- Errors name the field, never echo the value.
- A request the tenant's staff rule (or the operator's transfer rule) refuses is answered
  403 naming the rule (`staff_rule_refused`), after its `access_request` entry with
  outcome `refused` (`refused_request_entry`) is in the tenant's log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.access.policy import LEVELS, PURPOSES
from gateway.access.settings import MIN_GRANT_SECONDS, StaffAccessConfig
from gateway.core.clock import isoformat, parse_time_field
from gateway.errors import DomainError, invalid
from gateway.transparency.entries import find_phone_like

_REFERENCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FIELDS = {"tenant", "scope", "purpose", "reference", "level", "duration_seconds",
           "single_use"}


@dataclass(frozen=True)
class NewRequest:
    tenant_id: str
    purpose: str
    level: str
    reference: str
    calls: tuple[str, ...] | None
    window: tuple[str, str] | None
    duration_seconds: int | None
    single_use: bool

    def scope(self) -> dict[str, Any]:
        if self.calls is not None:
            return {"calls": list(self.calls)}
        assert self.window is not None
        return {"window": {"since": self.window[0], "until": self.window[1]}}


def parse_request(body: Any, cfg: StaffAccessConfig) -> NewRequest:
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    tenant = body.get("tenant")
    if not isinstance(tenant, str) or not UUID_RE.fullmatch(tenant):
        raise invalid("tenant", "must be a tenant id")
    purpose = body.get("purpose")
    if purpose not in PURPOSES:
        raise invalid("purpose", "must be one of " + ", ".join(PURPOSES))
    level = body.get("level", "technical")
    if level not in LEVELS:
        raise invalid("level", "must be technical or audio")
    reference = body.get("reference")
    if not isinstance(reference, str) or not reference:
        raise invalid("reference", "a ticket reference is required")
    if not _REFERENCE_RE.fullmatch(reference) or find_phone_like(reference) is not None:
        raise invalid("reference", "must be a ticket reference such as OPS-4711 (1-64 "
                      "letters, digits and ._:#/-, not a phone number)")
    single_use = body.get("single_use", False)
    if not isinstance(single_use, bool):
        raise invalid("single_use", "must be true or false")
    duration = body.get("duration_seconds")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)
                                 or duration < MIN_GRANT_SECONDS):
        raise invalid("duration_seconds", f"must be an integer of at least {MIN_GRANT_SECONDS}")
    calls, window = _scope(body.get("scope"), cfg)
    return NewRequest(tenant, purpose, level, reference, calls, window, duration, single_use)


# What each refusing rule means, for the 403's detail (no value of the staff member's).
_RULE_DETAILS = {
    "staff.countries": "the tenant's access policy (staff.countries) does not list the"
                       " country this staff member works from",
    "staff.employers": "the tenant's access policy (staff.employers) does not list this"
                       " staff member's employer",
    "transfers.legal_basis": "this staff member works outside the tenant's region and the"
                             " operator has no legal basis configured for transfers to"
                             " that country ([transfers] legal_basis)",
}


def staff_rule_refused(rule: str) -> DomainError:
    """403: a rule refuses this staff member before any purpose x level rule is asked."""
    return DomainError(403, "access-rule-refused", "access request refused by a rule",
                       _RULE_DETAILS.get(rule, rule), rule=rule)


def refused_request_entry(actor: dict[str, Any], req: NewRequest, rule: str
                          ) -> dict[str, Any]:
    """The tenant's log entry for a request refused by `rule` (no grant was created)."""
    return {"kind": "access_request", "actor": actor, "purpose": req.purpose,
            "reference": req.reference, "scope": {**req.scope(), "level": req.level},
            "outcome": "refused", "details": {"rule": rule}}


def _scope(scope: Any, cfg: StaffAccessConfig
           ) -> tuple[tuple[str, ...] | None, tuple[str, str] | None]:
    """(call ids, None) or (None, (since, until)) as stored RFC 3339 UTC text."""
    if not isinstance(scope, dict) or len(scope) != 1 or not set(scope) <= {"calls",
                                                                                "window"}:
        raise invalid("scope", 'must be {"calls": [call ids]} or {"window": {"since", '
                      '"until"}}')
    if "calls" in scope:
        ids = scope["calls"]
        if (not isinstance(ids, list) or not 1 <= len(ids) <= cfg.max_scope_calls
                or not all(isinstance(i, str) and UUID_RE.fullmatch(i) for i in ids)):
            raise invalid("scope.calls", f"must be 1-{cfg.max_scope_calls} call ids")
        return tuple(dict.fromkeys(ids)), None
    w = scope["window"]
    if not isinstance(w, dict) or set(w) != {"since", "until"}:
        raise invalid("scope.window", "must be {since, until}")
    since = parse_time_field("scope.window.since", w["since"])
    until = parse_time_field("scope.window.until", w["until"])
    if until <= since:
        raise invalid("scope.window", "until must be after since")
    if (until - since).total_seconds() > cfg.max_window_seconds:
        raise invalid("scope.window", f"must span at most {cfg.max_window_seconds} s")
    return None, (isoformat(since), isoformat(until))
