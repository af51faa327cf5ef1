"""The grant state machine: every transition of an `access_grants` row, inside the caller's
write unit, with its audit entry and its tenant notice.

A request and its grant are one row (one id). Life of a row::

    pending --approve--> approved --(expires_at)--> expired
       |                    |------revoke--------> revoked
       |                    '------one read------> used        (single-use grants)
       |--deny-----------> denied
       '--(pending_until)--> expired

Invariants:
- Every transition reads its row `for_update` and is a guarded UPDATE (`... AND state =
  <from>`), so two processes racing on one row cannot both move it; each transition appends its audit entry
  (`AuditLog.append_in_tx`) and queues its notice (`Outbox.enqueue_in_tx`) in the same
  write unit, so state, log and notice never disagree.
- Two clocks: the pending clock (`pending_until`, set at creation) and the grant clock
  (`starts_at`..`expires_at`), which starts at approval, never at request time.
- Expiry is recorded at the moment it became due (`ended_at` = `pending_until` or
  `expires_at`), whenever the sweep or a read happens to notice it.
- Log entries name staff by pseudonym, employer and country; tenant admins by key id.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gateway.access.notifier import Outbox
from gateway.access.requests import NewRequest
from gateway.core.clock import isoformat
from gateway.store import WriteTx
from gateway.tenants.accounts import StaffPrincipal, TenantPrincipal
from gateway.transparency.log import AuditLog

STATES = ("pending", "approved", "denied", "expired", "revoked", "used")
# Expired rows handled per write unit by the sweep; more wait for the next round.
SWEEP_BATCH = 200
POLICY_ACTOR = {"type": "system", "id": "access-policy"}
CLOCK_ACTOR = {"type": "system", "id": "access-clock"}


def grant_row(tx: WriteTx, grant_id: str, *, for_update: bool = False) -> Any:
    """The row; `for_update` before a transition keeps another replica off it until the
    unit commits (SQLite's single writer needs nothing)."""
    return tx.fetchone("SELECT * FROM access_grants WHERE id = ?", (grant_id,),
                       for_update=for_update)


def in_scope(row: Any, call_id: str, sort_time: str) -> bool:
    if row["window_since"] is not None:
        return row["window_since"] <= sort_time < row["window_until"]
    return call_id in json.loads(row["scope"]).get("calls", [])


def staff_actor(row: Any) -> dict[str, Any]:
    return {"type": "staff", "id": row["staff_pseudonym"], "employer": row["staff_employer"],
            "country": row["staff_country"]}


def principal_actor(staff: StaffPrincipal) -> dict[str, Any]:
    return {"type": "staff", "id": staff.pseudonym, "employer": staff.employer,
            "country": staff.country}


def tenant_actor(tenant: TenantPrincipal) -> dict[str, Any]:
    # "key-" keeps a 16-hex-digit key id from ever reading as a run of digits.
    return {"type": "tenant", "id": f"key-{tenant.key_id}"}


def render_grant(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "tenant_id": row["tenant_id"],
        "staff": {"id": row["staff_pseudonym"], "employer": row["staff_employer"],
                  "country": row["staff_country"]},
        "purpose": row["purpose"], "level": row["level"], "reference": row["reference"],
        "scope": json.loads(row["scope"]), "duration_seconds": row["duration_seconds"],
        "single_use": bool(row["single_use"]), "state": row["state"],
        "created_at": row["created_at"], "pending_until": row["pending_until"],
        "decided_at": row["decided_at"],
        "decided_by": row["decided_by"],
        "starts_at": row["starts_at"], "expires_at": row["expires_at"],
        "ended_at": row["ended_at"], "reads": row["reads"],
    }


def entry(row: Any, kind: str, outcome: str, *, actor: dict[str, Any],
          details: dict[str, Any] | None = None, scope: Any = None) -> dict[str, Any]:
    """An audit entry about one request/grant: who asked (as the actor, or in
    details.staff when someone else acts), why, under which ticket, for what."""
    details = dict(details or {})
    if actor.get("type") != "staff":
        details["staff"] = staff_actor(row)
    if scope is None:
        scope = {**json.loads(row["scope"]), "level": row["level"]}
    return {"kind": kind, "actor": actor, "purpose": row["purpose"],
            "reference": row["reference"], "scope": scope, "grant_id": row["id"],
            "outcome": outcome, "details": details}


class Grants:
    """The transitions. Each `*_in_tx` runs inside a `Database.write` unit."""

    def __init__(self, audit: AuditLog, outbox: Outbox) -> None:
        self.audit = audit
        self.outbox = outbox

    def _announce(self, tx: WriteTx, grant_id: str, event_type: str) -> None:
        row = grant_row(tx, grant_id)
        self.outbox.enqueue_in_tx(tx, row["tenant_id"], event_type, render_grant(row))

    def create_in_tx(self, tx: WriteTx, grant_id: str, staff: StaffPrincipal,
                     req: NewRequest, duration: int, now: datetime,
                     pending_until: datetime) -> Any:
        """-> pending. Returns the new row."""
        tx.execute(
            "INSERT INTO access_grants (id, tenant_id, staff_id, staff_pseudonym,"
            " staff_employer, staff_country, purpose, level, reference, scope, window_since,"
            " window_until, duration_seconds, single_use, state, created_at, pending_until)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (grant_id, req.tenant_id, staff.staff_id, staff.pseudonym, staff.employer,
             staff.country, req.purpose, req.level, req.reference, json.dumps(req.scope()),
             req.window[0] if req.window else None, req.window[1] if req.window else None,
             duration, int(req.single_use), isoformat(now), isoformat(pending_until)))
        row = grant_row(tx, grant_id)
        self.audit.append_in_tx(tx, req.tenant_id, entry(
            row, "access_request", "pending", actor=staff_actor(row),
            details={"duration_seconds": duration, "single_use": req.single_use,
                     "pending_until": isoformat(pending_until)}))
        self._announce(tx, grant_id, "access_request.created")
        return row

    def approve_in_tx(self, tx: WriteTx, row: Any, now: datetime, max_grant: int,
                      actor: dict[str, Any], decided_by: str,
                      details: dict[str, Any]) -> None:
        """pending -> approved: the grant clock starts now, for at most `max_grant` s."""
        seconds = min(row["duration_seconds"], max_grant)
        expires_at = isoformat(now + timedelta(seconds=seconds))
        tx.execute("UPDATE access_grants SET state = 'approved', decided_at = ?, decided_by = ?,"
                   " starts_at = ?, expires_at = ? WHERE id = ? AND state = 'pending'",
                   (isoformat(now), decided_by, isoformat(now), expires_at, row["id"]))
        self.audit.append_in_tx(tx, row["tenant_id"], entry(
            row, "decision", "approved", actor=actor,
            details={**details, "expires_at": expires_at, "duration_seconds": seconds}))
        self._announce(tx, row["id"], "access_request.approved")

    def deny_in_tx(self, tx: WriteTx, row: Any, now: datetime, actor: dict[str, Any],
                   decided_by: str, details: dict[str, Any]) -> None:
        """pending -> denied."""
        tx.execute("UPDATE access_grants SET state = 'denied', decided_at = ?, decided_by = ?,"
                   " ended_at = ? WHERE id = ? AND state = 'pending'",
                   (isoformat(now), decided_by, isoformat(now), row["id"]))
        self.audit.append_in_tx(tx, row["tenant_id"], entry(
            row, "decision", "denied", actor=actor, details=details))
        self._announce(tx, row["id"], "access_request.denied")

    def revoke_in_tx(self, tx: WriteTx, row: Any, now: datetime,
                     actor: dict[str, Any]) -> None:
        """approved -> revoked: the next read is refused."""
        tx.execute("UPDATE access_grants SET state = 'revoked', ended_at = ? WHERE id = ?"
                   " AND state = 'approved'", (isoformat(now), row["id"]))
        self.audit.append_in_tx(tx, row["tenant_id"], entry(
            row, "revocation", "revoked", actor=actor))
        self._announce(tx, row["id"], "grant.revoked")

    def serve_read_in_tx(self, tx: WriteTx, row: Any, now: datetime,
                         read_entry: dict[str, Any]) -> None:
        """A read served under this grant: counted, logged (`read_entry`), and a
        single-use grant goes approved -> used (and the tenant is told)."""
        if row["single_use"]:
            changed = tx.execute(
                "UPDATE access_grants SET state = 'used', ended_at = ?, reads = reads + 1"
                " WHERE id = ? AND state = 'approved'", (isoformat(now), row["id"]))
            if changed != 1:  # pragma: no cover - the gate saw it approved in this unit
                raise RuntimeError("single-use grant changed under the read")
        else:
            tx.execute("UPDATE access_grants SET reads = reads + 1 WHERE id = ?",
                       (row["id"],))
        self.audit.append_in_tx(tx, row["tenant_id"], read_entry)
        if row["single_use"]:
            self._announce(tx, row["id"], "grant.used")

    def expire_in_tx(self, tx: WriteTx, now: datetime, tenant_id: str | None = None, *,
                     grant_id: str | None = None, staff_id: str | None = None) -> int:
        """pending -> expired past `pending_until`, approved -> expired past `expires_at`
        (at most SWEEP_BATCH rows, oldest first); returns how many."""
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
                           f" ORDER BY created_at LIMIT {SWEEP_BATCH}", params,
                           for_update=True)
        for row in rows:
            was = row["state"]
            ended = row["pending_until"] if was == "pending" else row["expires_at"]
            tx.execute("UPDATE access_grants SET state = 'expired', ended_at = ? WHERE id = ?"
                       " AND state = ?", (ended, row["id"], was))
            self.audit.append_in_tx(tx, row["tenant_id"], entry(
                row, "expiry", "expired", actor=CLOCK_ACTOR,
                details={"was": was, "at": ended}))
            self._announce(tx, row["id"],
                           "access_request.expired" if was == "pending" else "grant.expired")
        return len(rows)
