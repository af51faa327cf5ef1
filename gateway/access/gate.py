"""The read gate: every staff diagnostic read (technical view or audio) is decided and
logged here before anything about the call is rendered.

Invariants:
- Log before access: the `diagnostic_read` (or `refused_read`) entry is appended inside
  the same write unit that checks the grant, and `authorise_read` returns only after that
  unit is durable. If the append (or anything in the unit) fails, it raises, and the
  caller must refuse the read: fail closed.
- The grant is checked inside the writer transaction, after expiring what is due for this
  staff member, so a revocation or expiry committed before the read always wins.
- An unknown call is refused exactly like a call without a grant (403, reason
  `no_grant`), so staff cannot probe which call ids exist.
- A refusal names a grant only when that grant is about this call (or was named).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gateway.access.grants import Grants, entry, in_scope, principal_actor
from gateway.core.clock import Clock, isoformat
from gateway.errors import DomainError
from gateway.store import Database, WriteTx
from gateway.tenants.accounts import StaffPrincipal

log = logging.getLogger("gateway.staff_access")


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
# Reasons that are about this call's own grant, so the refusal may name it.
_ABOUT_THIS_CALL = ("restricted", "level", "used", "revoked", "expired")


def refusal_problem(reason: str) -> DomainError:
    return DomainError(403, "forbidden", "access denied", _REFUSALS.get(reason, "access denied"),
                       reason=reason)


class ReadGate:
    def __init__(self, db: Database, clock: Clock, grants: Grants,
                 registry: CollectorRegistry | None = None) -> None:
        self.db = db
        self.clock = clock
        self.grants = grants
        # (tx, tenant_id, staff) -> extra details for a served read's entry (the transfer,
        # gateway/access/transfers.py); set by get_staff_access.
        self.read_details: Any = None
        self._reads = None
        if registry is not None:
            self._reads = Counter("gateway_staff_diagnostic_reads",
                                  "Staff diagnostic reads by endpoint and outcome",
                                  ["endpoint", "outcome"], registry=registry)

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
        now = self.clock.now()

        def unit(tx: WriteTx) -> ReadDecision:
            self.grants.expire_in_tx(tx, now, tenant_id, staff_id=staff.staff_id)
            # Re-read inside the transaction: restriction or scope data may have changed.
            current = tx.fetchone("SELECT tenant_id, sort_time, restricted_at FROM calls"
                                  " WHERE id = ?", (call_id,))
            if current is None or current["tenant_id"] != tenant_id:
                return ReadDecision(False, None, reason="no_grant")
            decision, row = self._choose_grant(tx, staff, tenant_id, call_id, current, level,
                                               grant_id, now)
            scope = {"calls": [call_id], "level": level}
            actor = principal_actor(staff)
            if decision.allowed and level == "audio":
                chosen = _recording_for(tx, call_id, recording_id)
                if chosen is None:
                    self.grants.audit.append_in_tx(tx, tenant_id, entry(
                        row, "diagnostic_read", "not_found", actor=actor, scope=scope,
                        details={"endpoint": endpoint}))
                    return ReadDecision(False, tenant_id, row["id"], level, "not_found")
                decision = ReadDecision(True, tenant_id, decision.grant_id, level,
                                        expires_at=decision.expires_at,
                                        single_use=decision.single_use,
                                        recording_id=chosen)
            if decision.allowed:
                details = {"endpoint": endpoint}
                if self.read_details is not None:
                    details.update(self.read_details(tx, tenant_id, staff))
                if decision.recording_id:
                    details["recording_id"] = decision.recording_id
                self.grants.serve_read_in_tx(tx, row, now, entry(
                    row, "diagnostic_read", "served", actor=actor, scope=scope,
                    details=details))
                return decision
            refused = {"kind": "refused_read", "actor": actor, "scope": scope,
                       "outcome": "refused",
                       "details": {"endpoint": endpoint, "reason": decision.reason}}
            if row is not None:
                refused.update(purpose=row["purpose"], reference=row["reference"],
                               grant_id=row["id"])
            self.grants.audit.append_in_tx(tx, tenant_id, refused)
            return decision

        decision = await self.db.write(unit)
        self._count(endpoint, "served" if decision.allowed else (
            "not_found" if decision.reason == "not_found" else "refused"))
        return decision

    def _count(self, endpoint: str, outcome: str) -> None:
        if self._reads is not None:
            self._reads.labels(endpoint, outcome).inc()

    @staticmethod
    def _choose_grant(tx: WriteTx, staff: StaffPrincipal, tenant_id: str, call_id: str,
                      call: Any, level: str, grant_id: str | None, now: datetime
                      ) -> tuple[ReadDecision, Any]:
        """The grant that allows this read (reusable grants before single-use ones, then
        the one ending first), or the refusal with its most telling reason."""
        if grant_id is not None:
            rows = tx.fetchall("SELECT * FROM access_grants WHERE id = ? AND staff_id = ?"
                               " AND tenant_id = ?", (grant_id, staff.staff_id, tenant_id),
                               for_update=True)
        else:
            rows = tx.fetchall("SELECT * FROM access_grants WHERE staff_id = ? AND tenant_id = ?"
                               " ORDER BY single_use, expires_at", (staff.staff_id, tenant_id),
                               for_update=True)
        best: tuple[int, Any] | None = None
        for row in rows:
            reason = _grant_refusal(row, call_id, call, level, now)
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
        row = best[1] if grant_id is not None or reason in _ABOUT_THIS_CALL else None
        return ReadDecision(False, tenant_id, row["id"] if row else None, reason=reason), row


def _grant_refusal(row: Any, call_id: str, call: Any, level: str, now: datetime) -> str | None:
    """Why this grant does not allow this read, or None if it does."""
    state = row["state"]
    covered = in_scope(row, call_id, call["sort_time"])
    if state != "approved":
        if not covered:
            return "out_of_scope"
        return {"used": "used", "revoked": "revoked", "expired": "expired",
                "denied": "denied", "pending": "pending"}.get(state, "no_grant")
    if row["expires_at"] <= isoformat(now):
        return "expired"
    if not covered:
        return "out_of_scope"
    if level == "audio" and row["level"] != "audio":
        return "level"
    if level == "audio" and call["restricted_at"] is not None:
        return "restricted"
    return None


def _recording_for(tx: WriteTx, call_id: str, recording_id: str | None) -> str | None:
    """The named recording, or the call's newest readable one."""
    if recording_id is not None:
        row = tx.fetchone("SELECT id FROM recordings WHERE id = ? AND call_id = ? AND"
                          " state IN ('available', 'incomplete')", (recording_id, call_id))
    else:
        row = tx.fetchone("SELECT id FROM recordings WHERE call_id = ? AND state IN"
                          " ('available', 'incomplete') ORDER BY created_at DESC, id DESC"
                          " LIMIT 1", (call_id,))
    return row["id"] if row else None
