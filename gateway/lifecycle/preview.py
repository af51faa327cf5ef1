"""What the next sweep would delete for a tenant, per data class, with what it keeps and
why: the tenant API's preview and `gateway retention run --dry-run`.

Invariants:
- Read-only: never writes, never appends to the audit log.
- Mirrors the sweep's order and verdicts (`holds.classify`): a call's events and
  recordings are counted with the call that takes them along, never twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat
from gateway.lifecycle.class_queries import QUERIES, marks
from gateway.lifecycle.data_classes import BY_NAME, ENFORCED, ROOT, SWEPT
from gateway.lifecycle.holds import LegalHolds, classify
from gateway.lifecycle.policy import RetentionPolicies, cutoffs
from gateway.lifecycle.report import TenantSweep
from gateway.store import Database
from gateway.tenants.keyring import KeyRing

# Candidates read per query: reads do not hold the writer, so larger than a sweep batch.
_CHUNK = 2000


class RetentionPreview:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock,
                 policies: RetentionPolicies, holds: LegalHolds) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.policies = policies
        self.holds = holds

    async def preview(self, tenant_id: str) -> dict[str, Any]:
        result = await self.tenant(tenant_id, None)
        policy = await self.policies.effective(tenant_id)
        cut = cutoffs(policy, self.clock.now())
        classes: dict[str, Any] = {}
        for name in SWEPT:
            kept = result.kept.get(name, {})
            classes[name] = {"days": policy[name], "cutoff": cut[name],
                             "would_delete": result.deleted.get(name, 0),
                             "held": kept.get("held", 0),
                             "restricted": kept.get("restricted", 0),
                             "in_use": kept.get("busy", 0)}
        for data_class in BY_NAME.values():
            if not data_class.swept:
                classes[data_class.name] = {"days": policy[data_class.name], "would_delete": 0,
                                            "enforced": data_class.name in ENFORCED}
        return {"as_of": isoformat(self.clock.now()), "tenant_held": result.held,
                "classes": classes}

    async def tenant(self, tenant_id: str, progress: Callable[[int], None] | None
                     ) -> TenantSweep:
        result = TenantSweep(tenant_id)
        try:
            ring = await self.keyring.for_tenant(tenant_id)
        except keys.DecryptionError:
            return result
        holds = await self.holds.active(tenant_id, ring)
        if holds.tenant:
            result.held = True
            return result
        now = self.clock.now()
        cut = cutoffs(await self.policies.effective(tenant_id), now)
        gone_calls: set[str] = set()
        gone_recordings: set[str] = set()
        for data_class in SWEPT:
            queries = QUERIES[data_class]
            cursor = queries.start
            while True:
                rows = await self.db.fetchall(queries.select, {
                    "tenant": queries.tenant_key(tenant_id),
                    "cutoff": queries.time_key(cut[data_class]), "ct": cursor[0],
                    "cid": cursor[1], "now": isoformat(now), "limit": _CHUNK})
                if not rows:
                    break
                cursor = (rows[-1]["t"], rows[-1]["item_id"])
                # A number hold's candidates are decrypted: their unit keys, for this chunk.
                units = await self.keyring.prefetch_units(
                    tenant_id, [r["parties"] for r in rows]) if holds.numbers else None
                doomed = []
                for row in rows:
                    if row["call_id"] in gone_calls or (
                            data_class == "diagnostics" and row["item_id"] in gone_recordings):
                        continue  # already counted: it goes with its call or recording
                    verdict = classify(row, holds, ring, units)
                    if verdict == "delete":
                        doomed.append(row["item_id"])
                    else:
                        result.keep(data_class, verdict)
                result.deleted[data_class] += len(doomed)
                if data_class == ROOT and doomed:
                    gone_calls.update(doomed)
                    events = await self.db.fetchone(
                        f"SELECT COUNT(*) FROM call_events WHERE call_id IN ({marks(doomed)})",
                        doomed)
                    result.deleted["call_events"] += events[0]
                    rec_rows = await self.db.fetchall(
                        f"SELECT id FROM recordings WHERE call_id IN ({marks(doomed)})", doomed)
                    result.deleted["recordings"] += len(rec_rows)
                    gone_recordings.update(r[0] for r in rec_rows)
                elif data_class == "recordings":
                    gone_recordings.update(doomed)
                if progress is not None:
                    progress(len(rows))
                if len(rows) < _CHUNK:
                    break
        return result
