"""The tenant's access policy: for each purpose x level, auto-approve, require approval or
deny. Pure: no storage, no clock (the service stores and loads the rules).

Invariants:
- Deny wins: when several rules match, the most restrictive action is the decision.
- An `audio` grant also opens the technical view, so a technical deny for a purpose
  denies audio for it too.
- No rule matching means `require_approval`: silence never auto-approves.
- The tenant's own limits never exceed the operator's (`parse_policy` bounds them).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Policy:
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    pending_ttl_seconds: int | None = None
    max_grant_seconds: int | None = None

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
    unknown = set(body) - {"rules", "pending_ttl_seconds", "max_grant_seconds"}
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
    return Policy(rules, ttl, max_grant)


def render_policy(policy: Policy, cfg: StaffAccessConfig,
                  webhook: dict[str, Any] | None) -> dict[str, Any]:
    """The tenant's view: its rules, what they decide, the operator's limits, its endpoint."""
    return {"rules": policy.rules, "effective": policy.effective(),
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
