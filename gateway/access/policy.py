"""The tenant's access policy: who may even ask (the staff rule: countries and employers),
then for each purpose x level, auto-approve, require approval or deny. Pure: no storage, no
clock (the service stores and loads the rules).

Invariants:
- Deny wins: when several rules match, the most restrictive action is the decision.
- An `audio` grant also opens the technical view, so a technical deny for a purpose
  denies audio for it too.
- No rule matching means `require_approval`: silence never auto-approves.
- The tenant's own limits never exceed the operator's (`parse_policy` bounds them).
- The staff rule is checked before any purpose x level rule: a staff member outside its
  lists is refused whatever the rules say (the refusal names the list that refused).
  No staff rule (or no list) means that list does not restrict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.access.settings import (
    MIN_GRANT_SECONDS,
    MIN_PENDING_TTL_SECONDS,
    StaffAccessConfig,
)
from gateway.errors import invalid

PURPOSES = ("operability", "fault_diagnostics", "integration_analysis", "legal_request")
LEVELS = ("technical", "audio")
# Most permissive first: when several rules match, the most restrictive wins (deny wins).
ACTIONS = ("auto_approve", "require_approval", "deny")
DEFAULT_ACTION = "require_approval"
WILDCARD = "*"
# Bounds on the staff rule's lists: every ISO 3166-1 country fits; employers are the
# operator's few contracting companies.
MAX_STAFF_COUNTRIES = 250
MAX_STAFF_EMPLOYERS = 50
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
# The same shape as a staff account's employer (gateway.tenants.accounts.validate_name).
_EMPLOYER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")


@dataclass(frozen=True)
class StaffRule:
    """Who may even ask for access: None for a list means it does not restrict."""
    countries: tuple[str, ...] | None = None
    employers: tuple[str, ...] | None = None

    def refusal(self, country: str, employer: str) -> str | None:
        """The rule that refuses this staff member ("staff.countries" or
        "staff.employers"), or None if both lists allow them."""
        if self.countries is not None and country not in self.countries:
            return "staff.countries"
        if self.employers is not None and employer not in self.employers:
            return "staff.employers"
        return None

    def as_dict(self) -> dict[str, list[str]]:
        out = {}
        if self.countries is not None:
            out["countries"] = list(self.countries)
        if self.employers is not None:
            out["employers"] = list(self.employers)
        return out


@dataclass(frozen=True)
class Policy:
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    pending_ttl_seconds: int | None = None
    max_grant_seconds: int | None = None
    staff: StaffRule | None = None

    def staff_refusal(self, country: str, employer: str) -> str | None:
        """The staff rule refusing this staff member, or None (see StaffRule.refusal)."""
        return self.staff.refusal(country, employer) if self.staff is not None else None

    def decide(self, purpose: str, level: str) -> str:
        """The action for (purpose, level): the most restrictive of every rule that
        matches (purpose or "*") x (level or "*"); deny wins. An audio grant also opens
        the technical view, so a technical deny for the purpose denies audio too. No rule
        matching: require_approval."""
        matched = [self.rules.get(p, {}).get(lv) for p in (purpose, WILDCARD)
                   for lv in (level, WILDCARD)]
        if level == "audio":
            matched += ["deny" for p in (purpose, WILDCARD)
                        if self.rules.get(p, {}).get("technical") == "deny"]
        found = [a for a in matched if a is not None]
        if not found:
            return DEFAULT_ACTION
        return max(found, key=ACTIONS.index)

    def effective(self) -> dict[str, dict[str, str]]:
        return {p: {lv: self.decide(p, lv) for lv in LEVELS} for p in PURPOSES}

    def max_grant(self, cfg: StaffAccessConfig) -> int:
        """The longest grant this tenant allows: its own maximum, within the operator's."""
        bound = cfg.max_grant_seconds
        return min(bound, self.max_grant_seconds) if self.max_grant_seconds else bound

    def pending_ttl(self, cfg: StaffAccessConfig) -> int:
        """How long a request waits for this tenant's decision."""
        return self.pending_ttl_seconds or cfg.pending_ttl_seconds


def parse_policy(body: Any, cfg: StaffAccessConfig) -> Policy:
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    unknown = set(body) - {"rules", "pending_ttl_seconds", "max_grant_seconds", "staff"}
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    rules_in = body.get("rules", {})
    if not isinstance(rules_in, dict):
        raise invalid("rules", "must be an object {purpose: {level: action}}")
    rules: dict[str, dict[str, str]] = {}
    for purpose, levels in rules_in.items():
        if purpose not in (*PURPOSES, WILDCARD):
            raise invalid("rules", f"purpose must be one of {', '.join(PURPOSES)} or *")
        if not isinstance(levels, dict):
            raise invalid(f"rules.{purpose}", "must be an object {level: action}")
        for level, action in levels.items():
            if level not in (*LEVELS, WILDCARD):
                raise invalid(f"rules.{purpose}", "level must be technical, audio or *")
            if action not in ACTIONS:
                raise invalid(f"rules.{purpose}.{level}", "must be " + ", ".join(ACTIONS))
        rules[purpose] = dict(levels)
    ttl = _optional_seconds(body, "pending_ttl_seconds", MIN_PENDING_TTL_SECONDS,
                            cfg.max_pending_ttl_seconds)
    max_grant = _optional_seconds(body, "max_grant_seconds", MIN_GRANT_SECONDS,
                                  cfg.max_grant_seconds)
    return Policy(rules, ttl, max_grant, parse_staff_rule(body.get("staff")))


def parse_staff_rule(value: Any) -> StaffRule | None:
    """`{"countries": ["DE", ...], "employers": ["Operator GmbH", ...]}`; either may be
    left out (no restriction by it); null or absent: no staff rule."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("staff", 'must be {"countries": [...], "employers": [...]}')
    unknown = set(value) - {"countries", "employers"}
    if unknown:
        raise invalid(f"staff.{sorted(unknown)[0]}", "unknown field")
    countries = _string_list(value, "countries", _COUNTRY_RE, MAX_STAFF_COUNTRIES,
                             "ISO 3166-1 alpha-2 codes such as DE")
    employers = _string_list(value, "employers", _EMPLOYER_RE, MAX_STAFF_EMPLOYERS,
                             "employer names as staff accounts carry them")
    return StaffRule(countries, employers)


def _string_list(value: dict, name: str, pattern: re.Pattern, limit: int,
                 what: str) -> tuple[str, ...] | None:
    items = value.get(name)
    if items is None:
        return None
    if (not isinstance(items, list) or len(items) > limit
            or not all(isinstance(i, str) and pattern.fullmatch(i) for i in items)):
        raise invalid(f"staff.{name}", f"must be a list of at most {limit} {what}")
    return tuple(dict.fromkeys(items))


def staff_rule_from_json(data: dict[str, Any] | None) -> StaffRule | None:
    """A stored staff rule (StaffRule.as_dict) back as a StaffRule."""
    if data is None:
        return None
    countries, employers = data.get("countries"), data.get("employers")
    return StaffRule(tuple(countries) if countries is not None else None,
                     tuple(employers) if employers is not None else None)


def render_policy(policy: Policy, cfg: StaffAccessConfig,
                  webhook: dict[str, Any] | None) -> dict[str, Any]:
    """The tenant's view: its rules, what they decide, the operator's limits, its endpoint."""
    return {"rules": policy.rules, "effective": policy.effective(),
            "staff": policy.staff.as_dict() if policy.staff is not None else None,
            "pending_ttl_seconds": policy.pending_ttl_seconds,
            "max_grant_seconds": policy.max_grant_seconds,
            "operator_limits": {"max_grant_seconds": cfg.max_grant_seconds,
                                "default_pending_ttl_seconds": cfg.pending_ttl_seconds,
                                "max_pending_ttl_seconds": cfg.max_pending_ttl_seconds},
            "webhook": webhook}


def _optional_seconds(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(name, f"must be an integer between {low} and {high}")
    return value
