"""Technical-access-only: the staff access service that ties the area together, and its
background jobs. docs/staff-access.md has the user's view.

    requests.py  parse a staff request          policy.py    purpose x level -> action
    grants.py    the grant state machine        gate.py      the read gate (log first)
    notifier.py  tenant endpoint, outbox, delivery            settings.py  [staff_access]

The tenant's policy decides at creation per purpose x level: auto_approve (approved at
once, by the policy), require_approval (pending until a tenant admin decides), deny.

Invariants:
- Every state change runs as one `Database.write` unit through `Grants`, which logs it and
  queues its notice in that unit; the notifier is kicked only after the commit.
- Anything that reads grant state (a read, a decision, a listing) first expires what is
  due, so a late sweep never lets an expired grant act.
- Nothing here speaks HTTP: errors are `gateway.errors.DomainError`s; `gateway/web/`
  renders them. Nothing here imports gateway.services or gateway.cli (the accessor takes
  the services object it is given).
- Background work is two PeriodicJobs: the expiry sweep and the notifier's delivery.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gateway.access.gate import ReadDecision, ReadGate
from gateway.access.grants import (
    POLICY_ACTOR,
    STATES,
    SWEEP_BATCH,
    Grants,
    grant_row,
    principal_actor,
    render_grant,
    tenant_actor,
)
from gateway.access.notifier import AccessNotifier, Outbox, WebhookEndpoints
from gateway.access.policy import Policy, parse_policy, render_policy, staff_rule_from_json
from gateway.access.requests import parse_request, refused_request_entry, staff_rule_refused
from gateway.access.settings import SECTION, StaffAccessConfig
from gateway.access.transfers import Transfers
from gateway.calls.service import decode_cursor, encode_cursor
from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import PeriodicJob
from gateway.errors import DomainError, invalid, not_found
from gateway.store import Database, WriteTx
from gateway.tenants.accounts import StaffPrincipal, TenantPrincipal
from gateway.tenants.keyring import KeyRing
from gateway.transparency.log import AuditLog, get_audit_log

FEATURE_KEY = "staff_access"
MAX_PAGE = 200


def section(config: Any) -> StaffAccessConfig:
    return config.section(SECTION)


class StaffAccessService:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, audit: AuditLog,
                 cfg: StaffAccessConfig, registry: CollectorRegistry | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.audit = audit
        self.cfg = cfg
        self.notifier: AccessNotifier | None = None
        self.grants = Grants(audit, Outbox(clock))
        self.gate = ReadGate(db, clock, self.grants, registry)
        self.webhooks = WebhookEndpoints(db, keyring, clock, cfg)
        self._requests = None
        # Cross-border rules and transfer records (gateway/access/transfers.py).
        self.transfers: Transfers | None = None
        if registry is not None:
            self._requests = Counter("gateway_staff_access_requests",
                                     "Staff access requests by outcome at creation",
                                     ["outcome"], registry=registry)

    # -- policy -------------------------------------------------------------------------
    async def get_policy(self, tenant_id: str) -> Policy:
        row = await self.db.fetchone(
            "SELECT rules, pending_ttl_seconds, max_grant_seconds, staff_rule FROM"
            " access_policies WHERE tenant_id = ?", (tenant_id,))
        if row is None:
            return Policy()
        staff = json.loads(row["staff_rule"]) if row["staff_rule"] else None
        return Policy(json.loads(row["rules"]), row["pending_ttl_seconds"],
                      row["max_grant_seconds"], staff_rule_from_json(staff))

    async def put_policy(self, tenant_id: str, body: Any) -> Policy:
        policy = parse_policy(body, self.cfg)
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO access_policies (tenant_id, rules, pending_ttl_seconds,"
            " max_grant_seconds, updated_at, staff_rule) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT"
            " (tenant_id) DO UPDATE SET rules = excluded.rules, pending_ttl_seconds ="
            " excluded.pending_ttl_seconds, max_grant_seconds = excluded.max_grant_seconds,"
            " updated_at = excluded.updated_at, staff_rule = excluded.staff_rule",
            (tenant_id, json.dumps(policy.rules), policy.pending_ttl_seconds,
             policy.max_grant_seconds, now,
             json.dumps(policy.staff.as_dict()) if policy.staff is not None else None)))
        return policy

    def render_policy(self, policy: Policy, webhook: dict[str, Any] | None) -> dict[str, Any]:
        return render_policy(policy, self.cfg, webhook)

    # -- the tenant's notification endpoint ------------------------------------------------
    async def get_webhook(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.webhooks.get(tenant_id)

    async def put_webhook(self, tenant_id: str, body: Any) -> dict[str, Any]:
        return await self.webhooks.put(tenant_id, body)

    async def delete_webhook(self, tenant_id: str) -> None:
        await self.webhooks.delete(tenant_id)

    # -- requests and decisions -----------------------------------------------------------
    async def create_request(self, staff: StaffPrincipal, body: Any) -> dict[str, Any]:
        req = parse_request(body, self.cfg)
        if await self.db.fetchone("SELECT 1 FROM tenants WHERE id = ? AND state = 'active'",
                                  (req.tenant_id,)) is None:
            raise invalid("tenant", "no such tenant")
        policy = await self.get_policy(req.tenant_id)
        rule = policy.staff_refusal(staff.country, staff.employer)
        if rule is None and self.transfers is not None:
            rule = await self.transfers.request_refusal(req.tenant_id, staff)
        if rule is not None:
            # Logged durably before the refusal is answered, as every access decision is.
            await self.audit.append(req.tenant_id, refused_request_entry(
                principal_actor(staff), req, rule))
            if self._requests is not None:
                self._requests.labels("refused").inc()
            raise staff_rule_refused(rule)
        max_grant = policy.max_grant(self.cfg)
        duration = req.duration_seconds or min(self.cfg.default_grant_seconds, max_grant)
        if duration > max_grant:
            raise invalid("duration_seconds", f"must be at most {max_grant}")
        action = policy.decide(req.purpose, req.level)
        now = self.clock.now()
        grant_id = str(uuid.uuid4())
        pending_until = now + timedelta(seconds=policy.pending_ttl(self.cfg))

        def unit(tx: WriteTx) -> None:
            if req.calls is not None:
                # Every named call must be this tenant's, checked in the same transaction
                # that logs the request: a foreign id would otherwise be written into this
                # tenant's log. One answer for "another tenant's" and "no such call", so the
                # refusal tells a staff member nothing about other tenants.
                found = tx.fetchone(
                    f"SELECT COUNT(*) AS n FROM calls WHERE tenant_id = ? AND id IN"
                    f" ({','.join('?' * len(req.calls))})", (req.tenant_id, *req.calls))
                if found["n"] != len(req.calls):
                    raise invalid("scope.calls", "every call must be one of this tenant's")
            row = self.grants.create_in_tx(tx, grant_id, staff, req, duration, now,
                                           pending_until)
            if action == "auto_approve":
                self.grants.approve_in_tx(tx, row, now, max_grant, POLICY_ACTOR, "policy",
                                          {"rule": action})
            elif action == "deny":
                self.grants.deny_in_tx(tx, row, now, POLICY_ACTOR, "policy", {"rule": action})

        await self.db.write(unit)
        if self._requests is not None:
            self._requests.labels({"auto_approve": "approved", "deny": "denied"}.get(
                action, "pending")).inc()
        self._kick_notifier()
        return await self.get_for_staff(staff, grant_id)

    async def decide(self, tenant: TenantPrincipal, grant_id: str, approve: bool
                     ) -> dict[str, Any]:
        """A tenant admin approves or denies a pending request."""
        max_grant = (await self.get_policy(tenant.tenant_id)).max_grant(self.cfg)
        actor = tenant_actor(tenant)

        def apply(tx: WriteTx, row: Any, now: datetime) -> None:
            if approve:
                self.grants.approve_in_tx(tx, row, now, max_grant, actor, "tenant", {})
            else:
                self.grants.deny_in_tx(tx, row, now, actor, "tenant", {})

        return await self._tenant_transition(tenant, grant_id, "pending", apply,
                                             noun="request", what="access request",
                                             title="the request is not pending")

    async def revoke(self, tenant: TenantPrincipal, grant_id: str) -> dict[str, Any]:
        actor = tenant_actor(tenant)
        return await self._tenant_transition(
            tenant, grant_id, "approved",
            lambda tx, row, now: self.grants.revoke_in_tx(tx, row, now, actor),
            noun="grant", what="grant", title="the grant is not active")

    async def _tenant_transition(self, tenant: TenantPrincipal, grant_id: str, expect: str,
                                 apply: Callable[[WriteTx, Any, datetime], None], *,
                                 noun: str, what: str, title: str) -> dict[str, Any]:
        """Run `apply` on the tenant's row if (after expiring what is due) it is in state
        `expect`; 404 if it is not the tenant's, 409 naming its state otherwise."""
        now = self.clock.now()

        def unit(tx: WriteTx) -> str:
            self.grants.expire_in_tx(tx, now, tenant.tenant_id, grant_id=grant_id)
            row = grant_row(tx, grant_id, for_update=True)
            if row is None or row["tenant_id"] != tenant.tenant_id:
                return "missing"
            if row["state"] != expect:
                return row["state"]
            apply(tx, row, now)
            return "ok"

        outcome = await self.db.write(unit)
        self._kick_notifier()
        if outcome == "missing":
            raise not_found(what)
        if outcome != "ok":
            raise DomainError(409, "conflict", title, f"the {noun} is {outcome}",
                              state=outcome)
        return await self.get_for_tenant(tenant.tenant_id, grant_id)

    # -- expiry ---------------------------------------------------------------------------
    async def sweep_once(self, tenant_id: str | None = None) -> bool:
        """Expire one batch of what is due; True if a full batch (more may be due)."""
        now = self.clock.now()
        expired = await self.db.write(lambda tx: self.grants.expire_in_tx(tx, now, tenant_id))
        if expired:
            self._kick_notifier()
        return expired >= SWEEP_BATCH

    async def expire_due(self, tenant_id: str | None = None) -> int:
        """Expire (and log) everything due; returns how many rows."""
        now = self.clock.now()
        total, batch = 0, SWEEP_BATCH
        while batch >= SWEEP_BATCH:  # a full batch: more may be due
            batch = await self.db.write(
                lambda tx: self.grants.expire_in_tx(tx, now, tenant_id))
            total += batch
        if total:
            self._kick_notifier()
        return total

    # -- listing --------------------------------------------------------------------------
    async def list_for_tenant(self, tenant_id: str, *, state: str | None = None,
                              limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        await self.expire_due(tenant_id)
        return await self._list("tenant_id = ?", [tenant_id], state, limit, cursor)

    async def list_for_staff(self, staff: StaffPrincipal, *, state: str | None = None,
                             limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        now = self.clock.now()
        await self.db.write(lambda tx: self.grants.expire_in_tx(tx, now,
                                                                staff_id=staff.staff_id))
        return await self._list("staff_id = ?", [staff.staff_id], state, limit, cursor)

    async def _list(self, where: str, params: list[Any], state: str | None, limit: int,
                    cursor: str | None) -> dict[str, Any]:
        if state is not None and state not in STATES:
            raise invalid("state", "must be one of " + ", ".join(STATES))
        if not 1 <= limit <= MAX_PAGE:
            raise invalid("limit", f"must be between 1 and {MAX_PAGE}")
        clauses, args = [where], list(params)
        if state:
            clauses.append("state = ?")
            args.append(state)
        if cursor:
            created, last_id = decode_cursor(cursor)
            clauses.append("(created_at, id) < (?, ?)")
            args.extend([created, last_id])
        rows = await self.db.fetchall(
            f"SELECT * FROM access_grants WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["created_at"], last["id"])
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

    # -- the gate -------------------------------------------------------------------------
    async def authorise_read(self, staff: StaffPrincipal, call_id: str, *, level: str,
                             endpoint: str, grant_id: str | None = None,
                             recording_id: str | None = None) -> ReadDecision:
        """See ReadGate.authorise_read: durable log entry first; raises = refuse."""
        decision = await self.gate.authorise_read(staff, call_id, level=level,
                                                  endpoint=endpoint, grant_id=grant_id,
                                                  recording_id=recording_id)
        self._kick_notifier()
        return decision

    def _kick_notifier(self) -> None:
        if self.notifier is not None:
            self.notifier.kick()


def get_staff_access(services: Any) -> StaffAccessService:
    """The gateway's StaffAccessService (with its notifier), created on first use and kept
    in `services.features["staff_access"]`."""
    existing = services.features.get(FEATURE_KEY)
    if existing is not None:
        return existing
    cfg = section(services.config)
    service = StaffAccessService(services.db, services.keyring, services.clock,
                                 get_audit_log(services), cfg, services.metrics.registry)
    service.transfers = Transfers(services.config, services.db)
    service.gate.read_details = service.transfers.read_details
    service.notifier = AccessNotifier(services.db, services.keyring, services.clock, cfg,
                                      services.metrics.registry)
    services.features[FEATURE_KEY] = service
    return service


async def startup(app: Any, services: Any) -> None:
    """Feature hook: the service, its notifier's delivery job and the expiry sweep job."""
    service = get_staff_access(services)
    assert service.notifier is not None
    notifier = service.notifier
    sweeper = PeriodicJob("access-sweeper", service.sweep_once,
                          section(services.config).sweep_interval_seconds)
    await notifier.start()
    await sweeper.start()

    async def stop(_app: Any) -> None:
        await sweeper.stop()
        await notifier.stop()
    app.on_cleanup.append(stop)
