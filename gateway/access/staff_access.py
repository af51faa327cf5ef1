"""Technical-access-only: staff access requests, the tenant's policy, grants, and the gate
every diagnostic read passes through. docs/staff-access.md has the user's view.

A request and its grant are one row (`access_grants`, one id). Life of a row::

    pending --approve--> approved --(expires_at)--> expired
       |                    |------revoke--------> revoked
       |                    '------one read------> used        (single-use grants)
       |--deny-----------> denied
       '--(pending_until)--> expired

The tenant's policy decides at creation per purpose x level: auto_approve (approved at
once, by the policy), require_approval (pending until a tenant admin decides), deny. The
pending clock (`pending_until`) and the grant clock (`starts_at`..`expires_at`, starting at
approval) are separate. Every transition is an audit entry written in the same write unit
as the transition (`AuditLog.append_in_tx`), and a notification to the tenant's webhook
goes into the outbox in that same unit, so state, log and notice never disagree.

The gate (`authorise_read`) checks the grant inside the writer transaction and appends the
`diagnostic_read` (or `refused_read`) entry there too; the caller answers only after that
commit, and if the append fails nothing is served (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from gateway.config import register_section
from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import cancel_and_wait
from gateway.errors import DomainError, invalid, not_found
from gateway.store.sqlite import Database, WriteTx
from gateway.tenants.accounts import StaffPrincipal, TenantPrincipal
from gateway.tenants.keyring import KeyRing
from gateway.transparency.entries import find_phone_like
from gateway.transparency.log import AuditLog, get_audit_log

log = logging.getLogger("gateway.staff_access")

PURPOSES = ("operability", "fault_diagnostics", "integration_analysis", "legal_request")
LEVELS = ("technical", "audio")
# Most permissive first: when several rules match, the most restrictive wins (deny wins).
ACTIONS = ("auto_approve", "require_approval", "deny")
DEFAULT_ACTION = "require_approval"
WILDCARD = "*"
WEBHOOK_SECRET_RECORD = "access-webhook-secret"

_REFERENCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Standard Webhooks secrets: "whsec_" + base64 of 24..64 random bytes (the spec suggests 24-64).
_WHSEC_RE = re.compile(r"whsec_([A-Za-z0-9+/]{32,88}={0,2})")
MIN_GRANT_SECONDS = 60
MIN_PENDING_TTL_SECONDS = 60
MAX_PAGE = 200
# Expired rows handled per write unit by the sweep; more wait for the next round.
SWEEP_BATCH = 200


@dataclass
class StaffAccessConfig:
    # Longest grant any tenant can allow (seconds). A tenant's own maximum may be lower.
    max_grant_seconds: int = 86400
    # Grant length when a request names none (seconds; clamped to the maximum).
    default_grant_seconds: int = 3600
    # How long a request waits for the tenant's decision unless the tenant set its own TTL.
    pending_ttl_seconds: int = 86400
    # Longest pending TTL a tenant may set (seconds).
    max_pending_ttl_seconds: int = 604800
    # Most call ids one request may name.
    max_scope_calls: int = 100
    # Longest time window one request may name (seconds).
    max_window_seconds: int = 2678400
    # How often expired requests and grants are swept and logged (seconds). Reads and
    # tenant listings also expire what is due, so this only bounds the log's lag.
    sweep_interval_seconds: float = 30.0
    # Tenant notifications (Standard Webhooks): per-attempt timeout, attempts before
    # giving up, first retry delay (doubling each time) and its cap, all in seconds.
    notify_timeout_seconds: float = 10.0
    notify_max_attempts: int = 10
    notify_backoff_seconds: float = 10.0
    notify_backoff_max_seconds: float = 3600.0
    # Allow http:// notification endpoints (development only; https otherwise).
    notify_allow_http: bool = False


register_section("staff_access", StaffAccessConfig)


def _register_sealed_columns() -> None:
    """The webhook secret is a sealed record: key rotation reseals it with the rest."""
    try:
        from gateway.lifecycle.key_rotation import SealedColumn, register_sealed_column
    except ImportError:  # pragma: no cover - a build without key rotation
        return
    register_sealed_column(SealedColumn("access_webhooks", "secret", WEBHOOK_SECRET_RECORD,
                                        id_column="tenant_id"))


_register_sealed_columns()


def section(config: Any) -> StaffAccessConfig:
    return config.section("staff_access")


# -- policy -----------------------------------------------------------------------------------
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


def _optional_seconds(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(name, f"must be an integer between {low} and {high}")
    return value


# -- requests ---------------------------------------------------------------------------------
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
    allowed = {"tenant", "scope", "purpose", "reference", "level", "duration_seconds",
               "single_use"}
    unknown = set(body) - allowed
    if unknown:
        raise invalid(sorted(unknown)[0], "unknown field")
    tenant = body.get("tenant")
    if not isinstance(tenant, str) or not _UUID_RE.fullmatch(tenant):
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
    scope = body.get("scope")
    if not isinstance(scope, dict) or len(scope) != 1 or not set(scope) <= {"calls",
                                                                                "window"}:
        raise invalid("scope", 'must be {"calls": [call ids]} or {"window": {"since", '
                      '"until"}}')
    calls = window = None
    if "calls" in scope:
        ids = scope["calls"]
        if (not isinstance(ids, list) or not 1 <= len(ids) <= cfg.max_scope_calls
                or not all(isinstance(i, str) and _UUID_RE.fullmatch(i) for i in ids)):
            raise invalid("scope.calls", f"must be 1-{cfg.max_scope_calls} call ids")
        calls = tuple(dict.fromkeys(ids))
    else:
        w = scope["window"]
        if not isinstance(w, dict) or set(w) != {"since", "until"}:
            raise invalid("scope.window", "must be {since, until}")
        since, until = _time(w["since"], "scope.window.since"), _time(
            w["until"], "scope.window.until")
        if until <= since:
            raise invalid("scope.window", "until must be after since")
        if (until - since).total_seconds() > cfg.max_window_seconds:
            raise invalid("scope.window", f"must span at most {cfg.max_window_seconds} s")
        window = (isoformat(since), isoformat(until))
    return NewRequest(tenant, purpose, level, reference, calls, window, duration, single_use)


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise invalid(name, "must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, "must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise invalid(name, "must carry a time zone")
    return parsed


# -- the gate's answer --------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadDecision:
    allowed: bool
    tenant_id: str | None
    grant_id: str | None = None
    level: str | None = None
    reason: str | None = None
    expires_at: str | None = None
    single_use: bool = False
    recording_id: str | None = None


_REFUSALS = {
    "no_grant": "no active grant covers this call",
    "expired": "the grant has expired",
    "revoked": "the grant was revoked",
    "used": "the single-use grant was already used",
    "pending": "the request is not approved",
    "denied": "the request was denied",
    "out_of_scope": "the call is outside the grant's scope",
    "level": "the grant does not cover audio",
    "restricted": "processing of this call is restricted",
}
# When no grant fits, the refusal names the most telling reason among the staff member's
# grants for the tenant (a grant that would fit but for its level says more than one for
# other calls).
_REASON_ORDER = ("restricted", "level", "used", "revoked", "expired", "out_of_scope",
                 "denied", "pending", "no_grant")


def refusal_problem(reason: str) -> DomainError:
    return DomainError(403, "forbidden", "access denied", _REFUSALS.get(reason, "access denied"),
                   reason=reason)


# -- the service --------------------------------------------------------------------------------
class StaffAccessService:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, audit: AuditLog,
                 cfg: StaffAccessConfig, registry: CollectorRegistry | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.audit = audit
        self.cfg = cfg
        self.notifier: AccessNotifier | None = None
        self._requests = self._reads = None
        if registry is not None:
            self._requests = Counter("gateway_staff_access_requests",
                                     "Staff access requests by outcome at creation",
                                     ["outcome"], registry=registry)
            self._reads = Counter("gateway_staff_diagnostic_reads",
                                  "Staff diagnostic reads by endpoint and outcome",
                                  ["endpoint", "outcome"], registry=registry)

    def _now(self) -> datetime:
        return self.clock.now()

    # -- policy -------------------------------------------------------------------------
    async def get_policy(self, tenant_id: str) -> Policy:
        row = await self.db.fetchone(
            "SELECT rules, pending_ttl_seconds, max_grant_seconds FROM access_policies"
            " WHERE tenant_id = ?", (tenant_id,))
        if row is None:
            return Policy()
        return Policy(json.loads(row["rules"]), row["pending_ttl_seconds"],
                      row["max_grant_seconds"])

    async def put_policy(self, tenant_id: str, body: Any) -> Policy:
        policy = parse_policy(body, self.cfg)
        now = isoformat(self._now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO access_policies (tenant_id, rules, pending_ttl_seconds,"
            " max_grant_seconds, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id)"
            " DO UPDATE SET rules = excluded.rules, pending_ttl_seconds ="
            " excluded.pending_ttl_seconds, max_grant_seconds = excluded.max_grant_seconds,"
            " updated_at = excluded.updated_at",
            (tenant_id, json.dumps(policy.rules), policy.pending_ttl_seconds,
             policy.max_grant_seconds, now)))
        return policy

    def render_policy(self, policy: Policy, webhook: dict[str, Any] | None) -> dict[str, Any]:
        return {"rules": policy.rules, "effective": policy.effective(),
                "pending_ttl_seconds": policy.pending_ttl_seconds,
                "max_grant_seconds": policy.max_grant_seconds,
                "operator_limits": {"max_grant_seconds": self.cfg.max_grant_seconds,
                                    "default_pending_ttl_seconds": self.cfg.pending_ttl_seconds,
                                    "max_pending_ttl_seconds": self.cfg.max_pending_ttl_seconds},
                "webhook": webhook}

    def _max_grant(self, policy: Policy) -> int:
        bound = self.cfg.max_grant_seconds
        return min(bound, policy.max_grant_seconds) if policy.max_grant_seconds else bound

    def _pending_ttl(self, policy: Policy) -> int:
        return policy.pending_ttl_seconds or self.cfg.pending_ttl_seconds

    # -- webhook endpoint ---------------------------------------------------------------
    async def get_webhook(self, tenant_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT url, updated_at FROM access_webhooks WHERE tenant_id = ?", (tenant_id,))
        return {"url": row["url"], "updated_at": row["updated_at"]} if row else None

    async def put_webhook(self, tenant_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"url", "secret"}:
            raise invalid("body", 'must be {"url", "secret"}')
        url = body.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        schemes = ("https", "http") if self.cfg.notify_allow_http else ("https",)
        if parts is None or parts.scheme not in schemes or not parts.hostname or len(url) > 2000:
            raise invalid("url", "must be an " + " or ".join(schemes) + " URL")
        secret = body.get("secret")
        match = _WHSEC_RE.fullmatch(secret) if isinstance(secret, str) else None
        try:
            key = base64.b64decode(match.group(1), validate=True) if match else b""
        except (binascii.Error, ValueError):
            key = b""
        if not 24 <= len(key) <= 64:
            raise invalid("secret", "must be a Standard Webhooks secret: whsec_ + base64 of "
                          "24-64 random bytes")
        ring = await self.keyring.for_tenant(tenant_id)
        sealed = ring.seal_record(WEBHOOK_SECRET_RECORD, tenant_id, key)
        now = isoformat(self._now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO access_webhooks (tenant_id, url, secret, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, secret = excluded.secret,"
            " updated_at = excluded.updated_at", (tenant_id, url, sealed, now)))
        return {"url": url, "updated_at": now}

    async def delete_webhook(self, tenant_id: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM access_webhooks WHERE tenant_id = ?", (tenant_id,)))

    # -- requests -----------------------------------------------------------------------
    async def create_request(self, staff: StaffPrincipal, body: Any) -> dict[str, Any]:
        req = parse_request(body, self.cfg)
        if await self.db.fetchone("SELECT 1 FROM tenants WHERE id = ? AND state = 'active'",
                                  (req.tenant_id,)) is None:
            raise invalid("tenant", "no such tenant")
        policy = await self.get_policy(req.tenant_id)
        max_grant = self._max_grant(policy)
        duration = req.duration_seconds or min(self.cfg.default_grant_seconds, max_grant)
        if duration > max_grant:
            raise invalid("duration_seconds", f"must be at most {max_grant}")
        action = policy.decide(req.purpose, req.level)
        now_dt = self._now()
        now = isoformat(now_dt)
        grant_id = str(uuid.uuid4())
        scope = req.scope()
        pending_until = isoformat(now_dt + timedelta(seconds=self._pending_ttl(policy)))

        def unit(tx: WriteTx) -> None:
            tx.execute(
                "INSERT INTO access_grants (id, tenant_id, staff_id, staff_pseudonym,"
                " staff_employer, staff_country, purpose, level, reference, scope, window_since,"
                " window_until, duration_seconds, single_use, state, created_at, pending_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (grant_id, req.tenant_id, staff.staff_id, staff.pseudonym, staff.employer,
                 staff.country, req.purpose, req.level, req.reference, json.dumps(scope),
                 req.window[0] if req.window else None, req.window[1] if req.window else None,
                 duration, int(req.single_use), now, pending_until))
            row = _grant_row(tx, grant_id)
            self.audit.append_in_tx(tx, req.tenant_id, self._entry(
                row, "access_request", "pending", actor=_staff_actor(row),
                details={"duration_seconds": duration, "single_use": req.single_use,
                         "pending_until": pending_until}))
            self._notify_in_tx(tx, row, "access_request.created")
            if action == "auto_approve":
                self._approve_in_tx(tx, row, now_dt, max_grant, {"type": "system",
                                                                  "id": "access-policy"},
                                    "policy", {"rule": action})
            elif action == "deny":
                self._deny_in_tx(tx, row, now_dt, {"type": "system", "id": "access-policy"},
                                 "policy", {"rule": action})

        await self.db.write(unit)
        if self._requests is not None:
            self._requests.labels({"auto_approve": "approved", "deny": "denied"}.get(
                action, "pending")).inc()
        self._kick_notifier()
        return await self.get_for_staff(staff, grant_id)

    def _entry(self, row: Any, kind: str, outcome: str, *, actor: dict[str, Any],
               details: dict[str, Any] | None = None, scope: Any = None) -> dict[str, Any]:
        """An audit entry about one request/grant: who asked (as the actor, or in
        details.staff when someone else acts), why, under which ticket, for what."""
        details = dict(details or {})
        if actor.get("type") != "staff":
            details["staff"] = _staff_actor(row)
        if scope is None:
            scope = {**json.loads(row["scope"]), "level": row["level"]}
        return {"kind": kind, "actor": actor, "purpose": row["purpose"],
                "reference": row["reference"], "scope": scope, "grant_id": row["id"],
                "outcome": outcome, "details": details}

    def _approve_in_tx(self, tx: WriteTx, row: Any, now: datetime, max_grant: int,
                       actor: dict[str, Any], decided_by: str,
                       details: dict[str, Any]) -> None:
        seconds = min(row["duration_seconds"], max_grant)
        expires_at = isoformat(now + timedelta(seconds=seconds))
        tx.execute("UPDATE access_grants SET state = 'approved', decided_at = ?, decided_by = ?,"
                   " starts_at = ?, expires_at = ? WHERE id = ? AND state = 'pending'",
                   (isoformat(now), decided_by, isoformat(now), expires_at, row["id"]))
        self.audit.append_in_tx(tx, row["tenant_id"], self._entry(
            row, "decision", "approved", actor=actor,
            details={**details, "expires_at": expires_at, "duration_seconds": seconds}))
        self._notify_in_tx(tx, _grant_row(tx, row["id"]), "access_request.approved")

    def _deny_in_tx(self, tx: WriteTx, row: Any, now: datetime, actor: dict[str, Any],
                    decided_by: str, details: dict[str, Any]) -> None:
        tx.execute("UPDATE access_grants SET state = 'denied', decided_at = ?, decided_by = ?,"
                   " ended_at = ? WHERE id = ? AND state = 'pending'",
                   (isoformat(now), decided_by, isoformat(now), row["id"]))
        self.audit.append_in_tx(tx, row["tenant_id"], self._entry(
            row, "decision", "denied", actor=actor, details=details))
        self._notify_in_tx(tx, _grant_row(tx, row["id"]), "access_request.denied")

    async def decide(self, tenant: TenantPrincipal, grant_id: str, approve: bool
                     ) -> dict[str, Any]:
        """A tenant admin approves or denies a pending request."""
        policy = await self.get_policy(tenant.tenant_id)
        max_grant = self._max_grant(policy)
        now = self._now()
        actor = _tenant_actor(tenant)

        def unit(tx: WriteTx) -> str:
            self._expire_in_tx(tx, now, tenant.tenant_id, grant_id=grant_id)
            row = _grant_row(tx, grant_id)
            if row is None or row["tenant_id"] != tenant.tenant_id:
                return "missing"
            if row["state"] != "pending":
                return row["state"]
            if approve:
                self._approve_in_tx(tx, row, now, max_grant, actor, "tenant", {})
            else:
                self._deny_in_tx(tx, row, now, actor, "tenant", {})
            return "ok"

        outcome = await self.db.write(unit)
        self._kick_notifier()
        if outcome == "missing":
            raise not_found("access request")
        if outcome != "ok":
            raise DomainError(409, "conflict", "the request is not pending",
                          f"the request is {outcome}", state=outcome)
        return await self.get_for_tenant(tenant.tenant_id, grant_id)

    async def revoke(self, tenant: TenantPrincipal, grant_id: str) -> dict[str, Any]:
        now = self._now()
        actor = _tenant_actor(tenant)

        def unit(tx: WriteTx) -> str:
            self._expire_in_tx(tx, now, tenant.tenant_id, grant_id=grant_id)
            row = _grant_row(tx, grant_id)
            if row is None or row["tenant_id"] != tenant.tenant_id:
                return "missing"
            if row["state"] != "approved":
                return row["state"]
            tx.execute("UPDATE access_grants SET state = 'revoked', ended_at = ? WHERE id = ?"
                       " AND state = 'approved'", (isoformat(now), grant_id))
            self.audit.append_in_tx(tx, row["tenant_id"], self._entry(
                row, "revocation", "revoked", actor=actor))
            self._notify_in_tx(tx, _grant_row(tx, grant_id), "grant.revoked")
            return "ok"

        outcome = await self.db.write(unit)
        self._kick_notifier()
        if outcome == "missing":
            raise not_found("grant")
        if outcome != "ok":
            raise DomainError(409, "conflict", "the grant is not active", f"the grant is {outcome}",
                          state=outcome)
        return await self.get_for_tenant(tenant.tenant_id, grant_id)

    # -- expiry -------------------------------------------------------------------------
    def _expire_in_tx(self, tx: WriteTx, now: datetime, tenant_id: str | None = None, *,
                      grant_id: str | None = None, staff_id: str | None = None) -> int:
        """Expire (and log) pending requests past their TTL and grants past their end."""
        now_text = isoformat(now)
        where = ["((state = 'pending' AND pending_until <= ?) OR (state = 'approved' AND"
                 " expires_at <= ?))"]
        params: list[Any] = [now_text, now_text]
        for column, value in (("tenant_id", tenant_id), ("id", grant_id),
                              ("staff_id", staff_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = tx.fetchall(f"SELECT * FROM access_grants WHERE {' AND '.join(where)}"
                           f" ORDER BY created_at LIMIT {SWEEP_BATCH}", params)
        for row in rows:
            was = row["state"]
            ended = row["pending_until"] if was == "pending" else row["expires_at"]
            tx.execute("UPDATE access_grants SET state = 'expired', ended_at = ? WHERE id = ?"
                       " AND state = ?", (ended, row["id"], was))
            self.audit.append_in_tx(tx, row["tenant_id"], self._entry(
                row, "expiry", "expired", actor={"type": "system", "id": "access-clock"},
                details={"was": was, "at": ended}))
            self._notify_in_tx(tx, _grant_row(tx, row["id"]),
                               "access_request.expired" if was == "pending" else "grant.expired")
        return len(rows)

    async def expire_due(self, tenant_id: str | None = None) -> int:
        now = self._now()
        total = 0
        while True:
            n = await self.db.write(lambda tx: self._expire_in_tx(tx, now, tenant_id))
            total += n
            if n < SWEEP_BATCH:
                break
        if total:
            self._kick_notifier()
        return total

    # -- listing ------------------------------------------------------------------------
    async def list_for_tenant(self, tenant_id: str, *, state: str | None = None,
                              limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        await self.expire_due(tenant_id)
        return await self._list("tenant_id = ?", [tenant_id], state, limit, cursor)

    async def list_for_staff(self, staff: StaffPrincipal, *, state: str | None = None,
                             limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        await self.db.write(lambda tx: self._expire_in_tx(tx, self._now(),
                                                          staff_id=staff.staff_id))
        return await self._list("staff_id = ?", [staff.staff_id], state, limit, cursor)

    async def _list(self, where: str, params: list[Any], state: str | None, limit: int,
                    cursor: str | None) -> dict[str, Any]:
        states = ("pending", "approved", "denied", "expired", "revoked", "used")
        if state is not None and state not in states:
            raise invalid("state", "must be one of " + ", ".join(states))
        if not 1 <= limit <= MAX_PAGE:
            raise invalid("limit", f"must be between 1 and {MAX_PAGE}")
        clauses, args = [where], list(params)
        if state:
            clauses.append("state = ?")
            args.append(state)
        if cursor:
            try:
                created, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            except (ValueError, TypeError, binascii.Error):
                raise invalid("cursor", "not a cursor this API issued") from None
            clauses.append("(created_at, id) < (?, ?)")
            args.extend([created, last_id])
        rows = await self.db.fetchall(
            f"SELECT * FROM access_grants WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = base64.urlsafe_b64encode(
                json.dumps([last["created_at"], last["id"]]).encode()).decode()
        return {"items": [render_grant(r) for r in rows[:limit]], "next_cursor": next_cursor}

    async def get_for_tenant(self, tenant_id: str, grant_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            "SELECT * FROM access_grants WHERE id = ? AND tenant_id = ?", (grant_id, tenant_id))
        if row is None:
            raise not_found("access request")
        return render_grant(row)

    async def get_for_staff(self, staff: StaffPrincipal, grant_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            "SELECT * FROM access_grants WHERE id = ? AND staff_id = ?", (grant_id,
                                                                         staff.staff_id))
        if row is None:
            raise not_found("access request")
        return render_grant(row)

    # -- the gate -----------------------------------------------------------------------
    async def authorise_read(self, staff: StaffPrincipal, call_id: str, *, level: str,
                             endpoint: str, grant_id: str | None = None,
                             recording_id: str | None = None) -> ReadDecision:
        """Decide a diagnostic read and log it durably before returning (served or
        refused, in the tenant's log). Raises if the log append fails: the caller must
        then refuse (fail closed)."""
        call = await self.db.fetchone(
            "SELECT tenant_id FROM calls WHERE id = ?", (call_id,))
        if call is None:
            # No tenant to log to, and nothing to serve: the same 403 as any refusal, so a
            # staff member cannot probe which call ids exist.
            log.info("diagnostic read refused", extra={"outcome": "unknown_call"})
            self._count(endpoint, "refused")
            return ReadDecision(False, None, reason="no_grant")
        tenant_id = call["tenant_id"]
        now = self._now()

        def unit(tx: WriteTx) -> ReadDecision:
            self._expire_in_tx(tx, now, tenant_id, staff_id=staff.staff_id)
            # Re-read inside the transaction: restriction or scope data may have changed.
            current = tx.fetchone("SELECT tenant_id, sort_time, restricted_at FROM calls"
                                  " WHERE id = ?", (call_id,))
            if current is None or current["tenant_id"] != tenant_id:
                return ReadDecision(False, None, reason="no_grant")
            decision, row = self._choose_grant(tx, staff, tenant_id, call_id, current, level,
                                               grant_id, now)
            scope = {"calls": [call_id], "level": level}
            actor = {"type": "staff", "id": staff.pseudonym, "employer": staff.employer,
                     "country": staff.country}
            if decision.allowed and level == "audio":
                chosen = self._recording_for(tx, call_id, recording_id)
                if chosen is None:
                    self.audit.append_in_tx(tx, tenant_id, self._entry(
                        row, "diagnostic_read", "not_found", actor=actor, scope=scope,
                        details={"endpoint": endpoint}))
                    return ReadDecision(False, tenant_id, row["id"], level, "not_found")
                decision = ReadDecision(True, tenant_id, decision.grant_id, level,
                                        expires_at=decision.expires_at,
                                        single_use=decision.single_use,
                                        recording_id=chosen)
            if decision.allowed:
                if row["single_use"]:
                    changed = tx.execute(
                        "UPDATE access_grants SET state = 'used', ended_at = ?, reads = reads + 1"
                        " WHERE id = ? AND state = 'approved'", (isoformat(now), row["id"]))
                    if changed != 1:  # pragma: no cover - _choose_grant saw it approved
                        raise RuntimeError("single-use grant changed under the read")
                else:
                    tx.execute("UPDATE access_grants SET reads = reads + 1 WHERE id = ?",
                               (row["id"],))
                details = {"endpoint": endpoint}
                if decision.recording_id:
                    details["recording_id"] = decision.recording_id
                self.audit.append_in_tx(tx, tenant_id, self._entry(
                    row, "diagnostic_read", "served", actor=actor, scope=scope,
                    details=details))
                if row["single_use"]:
                    self._notify_in_tx(tx, _grant_row(tx, row["id"]), "grant.used")
                return decision
            entry = {"kind": "refused_read", "actor": actor, "scope": scope,
                     "outcome": "refused",
                     "details": {"endpoint": endpoint, "reason": decision.reason}}
            if row is not None:
                entry.update(purpose=row["purpose"], reference=row["reference"],
                             grant_id=row["id"])
            self.audit.append_in_tx(tx, tenant_id, entry)
            return decision

        decision = await self.db.write(unit)
        self._count(endpoint, "served" if decision.allowed else (
            "not_found" if decision.reason == "not_found" else "refused"))
        self._kick_notifier()
        return decision

    def _count(self, endpoint: str, outcome: str) -> None:
        if self._reads is not None:
            self._reads.labels(endpoint, outcome).inc()

    def _choose_grant(self, tx: WriteTx, staff: StaffPrincipal, tenant_id: str, call_id: str,
                      call: Any, level: str, grant_id: str | None, now: datetime
                      ) -> tuple[ReadDecision, Any]:
        """The grant that allows this read (reusable grants before single-use ones, then
        the one ending first), or the refusal with its most telling reason."""
        if grant_id is not None:
            rows = tx.fetchall("SELECT * FROM access_grants WHERE id = ? AND staff_id = ?"
                               " AND tenant_id = ?", (grant_id, staff.staff_id, tenant_id))
        else:
            rows = tx.fetchall("SELECT * FROM access_grants WHERE staff_id = ? AND tenant_id = ?"
                               " ORDER BY single_use, expires_at", (staff.staff_id, tenant_id))
        best: tuple[int, Any] | None = None
        for row in rows:
            reason = self._grant_refusal(row, call_id, call, level, now)
            if reason is None:
                return ReadDecision(True, tenant_id, row["id"], level,
                                    expires_at=row["expires_at"],
                                    single_use=bool(row["single_use"])), row
            rank = _REASON_ORDER.index(reason)
            if best is None or rank < best[0]:
                best = (rank, row)
        if best is None:
            return ReadDecision(False, tenant_id, reason="no_grant"), None
        reason = _REASON_ORDER[best[0]]
        # Only name the grant when it is about this call (or the staff member named it).
        row = best[1] if grant_id is not None or reason in ("restricted", "level", "used",
                                                             "revoked", "expired") else None
        return ReadDecision(False, tenant_id, row["id"] if row else None, reason=reason), row

    @staticmethod
    def _grant_refusal(row: Any, call_id: str, call: Any, level: str, now: datetime
                       ) -> str | None:
        state = row["state"]
        in_scope = _in_scope(row, call_id, call["sort_time"])
        if state != "approved":
            if not in_scope:
                return "out_of_scope"
            return {"used": "used", "revoked": "revoked", "expired": "expired",
                    "denied": "denied", "pending": "pending"}.get(state, "no_grant")
        if row["expires_at"] <= isoformat(now):
            return "expired"
        if not in_scope:
            return "out_of_scope"
        if level == "audio" and row["level"] != "audio":
            return "level"
        if level == "audio" and call["restricted_at"] is not None:
            return "restricted"
        return None

    @staticmethod
    def _recording_for(tx: WriteTx, call_id: str, recording_id: str | None) -> str | None:
        if recording_id is not None:
            row = tx.fetchone("SELECT id FROM recordings WHERE id = ? AND call_id = ? AND"
                              " state IN ('available', 'incomplete')", (recording_id, call_id))
        else:
            row = tx.fetchone("SELECT id FROM recordings WHERE call_id = ? AND state IN"
                              " ('available', 'incomplete') ORDER BY created_at DESC, id DESC"
                              " LIMIT 1", (call_id,))
        return row["id"] if row else None

    # -- notifications ------------------------------------------------------------------
    def _notify_in_tx(self, tx: WriteTx, row: Any, event_type: str) -> None:
        """Queue a notification if the tenant has an endpoint (outbox, same transaction)."""
        if tx.fetchone("SELECT 1 FROM access_webhooks WHERE tenant_id = ?",
                       (row["tenant_id"],)) is None:
            return
        now = isoformat(self._now())
        notification_id = "msg_" + uuid.uuid4().hex
        payload = {"type": event_type, "timestamp": now, "data": render_grant(row)}
        tx.execute("INSERT INTO access_notifications (id, tenant_id, type, payload, state,"
                   " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                   (notification_id, row["tenant_id"], event_type,
                    json.dumps(payload, separators=(",", ":")), now, now))

    def _kick_notifier(self) -> None:
        if self.notifier is not None:
            self.notifier.kick()


def _grant_row(tx: WriteTx, grant_id: str) -> Any:
    return tx.fetchone("SELECT * FROM access_grants WHERE id = ?", (grant_id,))


def _in_scope(row: Any, call_id: str, sort_time: str) -> bool:
    if row["window_since"] is not None:
        return row["window_since"] <= sort_time < row["window_until"]
    return call_id in json.loads(row["scope"]).get("calls", [])


def _staff_actor(row: Any) -> dict[str, Any]:
    return {"type": "staff", "id": row["staff_pseudonym"], "employer": row["staff_employer"],
            "country": row["staff_country"]}


def _tenant_actor(tenant: TenantPrincipal) -> dict[str, Any]:
    # "key-" keeps a 16-hex-digit key id from ever reading as a run of digits.
    return {"type": "tenant", "id": f"key-{tenant.key_id}"}


def render_grant(row: Any) -> dict[str, Any]:
    decided_by = row["decided_by"]
    return {
        "id": row["id"], "tenant_id": row["tenant_id"],
        "staff": {"id": row["staff_pseudonym"], "employer": row["staff_employer"],
                  "country": row["staff_country"]},
        "purpose": row["purpose"], "level": row["level"], "reference": row["reference"],
        "scope": json.loads(row["scope"]), "duration_seconds": row["duration_seconds"],
        "single_use": bool(row["single_use"]), "state": row["state"],
        "created_at": row["created_at"], "pending_until": row["pending_until"],
        "decided_at": row["decided_at"],
        "decided_by": decided_by,
        "starts_at": row["starts_at"], "expires_at": row["expires_at"],
        "ended_at": row["ended_at"], "reads": row["reads"],
    }


# -- notifier -------------------------------------------------------------------------------------
def sign_standard_webhook(secret_key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature: base64(HMAC-SHA256(key, id "." timestamp "." body))."""
    mac = hmac.new(secret_key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class AccessNotifier:
    """Delivers the outbox to each tenant's endpoint: Standard Webhooks headers signed with
    the tenant's secret, the same webhook-id on every retry (receivers dedupe on it),
    exponential backoff, given up (state 'failed') after `notify_max_attempts`."""

    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, cfg: StaffAccessConfig,
                 registry: CollectorRegistry | None = None, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._outcomes = None
        if registry is not None:
            self._outcomes = Counter("gateway_access_notifications",
                                     "Tenant access notifications by attempt outcome",
                                     ["outcome"], registry=registry)

    def kick(self) -> None:
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        return min(self.cfg.notify_backoff_seconds * (2 ** max(0, attempts - 1)),
                   self.cfg.notify_backoff_max_seconds)

    async def start(self) -> None:
        if self._task is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.notify_timeout_seconds))
            self._task = asyncio.create_task(self._run(), name="access-notifier")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("notification delivery failed: %s", type(exc).__name__)

    async def deliver_due(self, limit: int = 50) -> int:
        """Attempt every due notification once; returns how many were attempted."""
        now = self.clock.now()
        rows = await self.db.fetchall(
            "SELECT n.*, w.url, w.secret FROM access_notifications n LEFT JOIN access_webhooks w"
            " ON w.tenant_id = n.tenant_id WHERE n.state = 'pending' AND n.next_attempt_at <= ?"
            " ORDER BY n.next_attempt_at, n.created_at LIMIT ?", (isoformat(now), limit))
        attempted = 0
        for row in rows:
            # Claim it (another process may be delivering the same outbox): move its next
            # attempt past this attempt's timeout, only if nobody else did first.
            lease = isoformat(now + timedelta(seconds=self.cfg.notify_timeout_seconds * 2))
            claimed = await self.db.write(lambda tx, r=row, lease=lease: tx.execute(
                "UPDATE access_notifications SET next_attempt_at = ? WHERE id = ? AND"
                " state = 'pending' AND next_attempt_at = ?", (lease, r["id"],
                                                               r["next_attempt_at"])))
            if claimed != 1:
                continue
            attempted += 1
            await self._attempt(row)
        return attempted

    async def _attempt(self, row: Any) -> None:
        if row["url"] is None:
            await self._record(row, "failed", "no_endpoint", final=True)
            return
        ring = await self.keyring.for_tenant(row["tenant_id"])
        key = ring.open_record(WEBHOOK_SECRET_RECORD, row["tenant_id"], bytes(row["secret"]))
        body = row["payload"].encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {"content-type": "application/json", "webhook-id": row["id"],
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign_standard_webhook(key, row["id"], timestamp, body)}
        session = self._session
        own = session is None
        if own:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.notify_timeout_seconds))
        try:
            async with session.post(row["url"], data=body, headers=headers,
                                    allow_redirects=False) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = None
            code = "timeout" if isinstance(exc, TimeoutError) else "connect_error"
        finally:
            if own:
                await session.close()
        if status is not None and 200 <= status < 300:
            await self._record(row, "delivered", str(status), final=True)
        else:
            await self._record(row, "failed", str(status) if status is not None else code,
                               final=row["attempts"] + 1 >= self.cfg.notify_max_attempts)

    async def _record(self, row: Any, outcome: str, last_status: str, *, final: bool) -> None:
        now = self.clock.now()
        attempts = row["attempts"] + 1
        if outcome == "delivered":
            state, next_at = "delivered", isoformat(now)
        elif final:
            state, next_at = "failed", isoformat(now)
        else:
            state, next_at = "pending", isoformat(now + timedelta(seconds=self.backoff(attempts)))
        await self.db.write(lambda tx: tx.execute(
            "UPDATE access_notifications SET state = ?, attempts = ?, next_attempt_at = ?,"
            " last_status = ?, delivered_at = ? WHERE id = ?",
            (state, attempts, next_at, last_status,
             isoformat(now) if state == "delivered" else None, row["id"])))
        if self._outcomes is not None:
            self._outcomes.labels("delivered" if state == "delivered" else
                                  "gave_up" if state == "failed" else "retry").inc()


class Sweeper:
    """Expires due requests and grants on a timer (reads and listings also do it)."""

    def __init__(self, service: StaffAccessService, interval: float) -> None:
        self.service = service
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.service.expire_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("access sweep failed: %s", type(exc).__name__)


def get_staff_access(services: Any) -> StaffAccessService:
    existing = services.features.get("staff_access")
    if existing is not None:
        return existing
    cfg = section(services.config)
    service = StaffAccessService(services.db, services.keyring, services.clock,
                                 get_audit_log(services), cfg, services.metrics.registry)
    service.notifier = AccessNotifier(services.db, services.keyring, services.clock, cfg,
                                      services.metrics.registry)
    services.features["staff_access"] = service
    return service


async def startup(app: Any, services: Any) -> None:
    """Feature hook: the service, its notifier and its sweeper."""
    service = get_staff_access(services)
    sweeper = Sweeper(service, section(services.config).sweep_interval_seconds)
    assert service.notifier is not None
    await service.notifier.start()
    await sweeper.start()

    async def stop(_app: Any) -> None:
        await sweeper.stop()
        if service.notifier is not None:
            await service.notifier.stop()
    app.on_cleanup.append(stop)
