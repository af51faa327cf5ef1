"""One call's retention state, per swept data class: the class, its days for the tenant,
when the call's data of that class is due for deletion, and whether it is kept anyway.
Shown in the staff technical view (gateway/access/diagnostics.py allow-lists the fields).

Invariants:
- Read-only, and technical only: tokens, times, days and booleans; never a party, an id
  of another item, or content.
- Computes what the sweep would decide (same queries, same hold test): a child class is
  due at its own oldest item's expiry or its call's, whichever comes first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.lifecycle.class_queries import QUERIES
from gateway.lifecycle.data_classes import BY_NAME, SWEPT
from gateway.lifecycle.holds import LegalHolds
from gateway.lifecycle.policy import RetentionPolicies
from gateway.store import Database
from gateway.tenants.keyring import KeyRing


async def call_retention_state(db: Database, keyring: KeyRing, clock: Clock,
                               policies: RetentionPolicies, holds: LegalHolds,
                               tenant_id: str, call_id: str) -> list[dict[str, Any]] | None:
    """`[{data_class, policy_days, delete_after, legal_hold, state}]` in sweep order, or
    None for a call the tenant does not have. `state` is one of: `retained` (kept until
    `delete_after`), `due` (the next sweep deletes it), `held` (a legal hold applies),
    `restricted` (a data-subject restriction keeps it), `unreadable` (a hold may apply but
    the parties do not decrypt: kept), `none` (the call has no data of this class)."""
    call = await db.fetchone(
        "SELECT id, from_index, to_index, parties, restricted_at FROM calls"
        " WHERE id = ? AND tenant_id = ?", (call_id, tenant_id))
    if call is None:
        return None
    ring = await keyring.for_tenant(tenant_id)
    await keyring.prefetch_units(tenant_id, [call["parties"]])
    active = await holds.active(tenant_id, ring)
    held: bool | None
    try:
        held = active.call_held(ring, call_id, call["from_index"], call["to_index"],
                                call["parties"])
    except keys.DecryptionError:
        held = None
    policy = await policies.effective(tenant_id)
    now = clock.now()
    due: dict[str, datetime | None] = {}
    out = []
    for name in SWEPT:
        row = await db.fetchone(QUERIES[name].oldest_for_call, (call_id,))
        oldest = QUERIES[name].time_text(row[0]) if row is not None else None
        when = None
        if oldest is not None:
            when = parse_iso(oldest) + timedelta(days=policy[name])
            parent = BY_NAME[name].parent
            if parent is not None and due.get(parent) is not None:
                when = min(when, due[parent])
        due[name] = when
        out.append({"data_class": name, "policy_days": policy[name],
                    "delete_after": isoformat(when) if when is not None else None,
                    "legal_hold": held, "state": _state(when, held, call, now)})
    return out


def _state(when: datetime | None, held: bool | None, call: Any, now: datetime) -> str:
    if when is None:
        return "none"
    if held is None:
        return "unreadable"
    if held:
        return "held"
    if call["restricted_at"] is not None:
        return "restricted"
    return "due" if when <= now else "retained"
