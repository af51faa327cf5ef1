"""Audit retention (policy 9.5): an audit entry older than its tenant's audit retention
loses its bytes, and the tenant's tree stays verifiable (docs/transparency.md §7).

What expiry does to entry n: `audit_entries.entry` becomes empty and `expired_at` is set
(the only UPDATE the table's trigger allows, migration 0012). Its leaf hash stays in
`audit_nodes` (level 0), as do every interior node and every signed checkpoint, so roots,
inclusion and consistency proofs and `gateway audit verify` are unchanged; exports and
`GET /v1/transparency/entries` show the entry as `{"state": "expired", "leaf_hash": ...}`.
With SQLite's secure_delete on and the WAL truncated after each run, the bytes do not
survive in the live files either.

Invariants:
- Expired entries are a prefix of the log: entry times never go backwards within a log
  (AuditLog), and expiry is by age, so the first entry still kept bounds them; the
  verifier flags an expired entry after a kept one.
- The retention of a tenant is its effective `audit` days (retention policy), remembered
  in `audit_retention` at every run and every PUT /v1/retention: offboarding deletes the
  tenant's policy rows but not the audit_* tables, so an offboarded tenant's log is kept
  for the retention it had, then expires the same way (its last entry, the offboarding
  receipt, goes `days` after offboarding). A tenant never seen keeps the operator default.
- Idempotent and safe on every replica at once: the UPDATE only touches entries not yet
  expired, and the watermark only grows.
- An active tenant gets one `deletion_receipt` entry per run that expired something (an
  offboarded tenant does not: nobody can read it, and a receipt would restart its clock).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import PeriodicJob
from gateway.store import Database, WriteTx
from gateway.transparency.entries import format_time

__all__ = ["AUDIT_CLASS", "AuditRetention"]

log = logging.getLogger("gateway.audit_retention")

AUDIT_CLASS = "audit"
RETENTION_ACTOR = {"type": "system", "id": "retention"}
# Entries emptied per write unit: keeps the single writer responsive.
_CHUNK = 1000
# Tenant states whose policy rows are gone (offboarding deletes them).
_GONE_STATES = ("offboarding", "offboarded")


class AuditRetention:
    """Expires audit entries by age. `run()` is the job's tick (every sweep interval)."""

    def __init__(self, db: Database, audit: Any, clock: Clock, policies: Any, *,
                 default_days: int, interval: float) -> None:
        self.db = db
        self.audit = audit            # gateway.transparency.log.AuditLog
        self.clock = clock
        self.policies = policies      # gateway.lifecycle.policy.RetentionPolicies
        self.default_days = default_days
        self.job = PeriodicJob("audit-retention", self.run, interval)

    async def start(self) -> None:
        await self.job.start()

    async def stop(self) -> None:
        await self.job.stop()

    async def remember_days(self, tenant_id: str, stored: int | None = None) -> int:
        """Store the tenant's effective audit days (so they outlive offboarding), unless
        they are the `stored` ones already."""
        days = (await self.policies.effective(tenant_id))[AUDIT_CLASS]
        if days == stored:
            return days
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO audit_retention (tenant_id, days, expired_size, updated_at)"
            " VALUES (?, ?, 0, ?) ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days,"
            " updated_at = excluded.updated_at", (tenant_id, days, now)))
        return days

    async def run(self) -> dict[str, int]:
        """Expire what is due in every log; returns entries expired per tenant (non-zero)."""
        rows = await self.db.fetchall(
            "SELECT h.tenant_id, t.state, r.days FROM audit_heads h"
            " LEFT JOIN tenants t ON t.id = h.tenant_id"
            " LEFT JOIN audit_retention r ON r.tenant_id = h.tenant_id ORDER BY h.tenant_id")
        out: dict[str, int] = {}
        for row in rows:
            tenant_id = row["tenant_id"]
            gone = row["state"] is None or row["state"] in _GONE_STATES
            days = (row["days"] if row["days"] is not None else self.default_days) if gone \
                else await self.remember_days(tenant_id, row["days"])
            n = await self.expire_tenant(tenant_id, days, receipt=not gone)
            if n:
                out[tenant_id] = n
        truncate_wal = getattr(self.db, "truncate_wal", None)  # SQLite: drop old page images
        if out and truncate_wal is not None:
            await truncate_wal()
            log.info("audit retention: %d entries expired in %d logs", sum(out.values()),
                     len(out))
        return out

    async def expire_tenant(self, tenant_id: str, days: int, *, receipt: bool = True) -> int:
        """Expire the tenant's entries older than `days`; returns how many."""
        cutoff = format_time(self.clock.now() - timedelta(days=days))
        head = await self.db.fetchone(
            "SELECT h.size, r.expired_size FROM audit_heads h LEFT JOIN audit_retention r"
            " ON r.tenant_id = h.tenant_id WHERE h.tenant_id = ?", (tenant_id,))
        if head is None:
            return 0
        start = head["expired_size"] or 0
        end = await self._first_kept(tenant_id, start, head["size"], cutoff)
        if end <= start:
            return 0
        expired_at = isoformat(self.clock.now())
        total = 0
        for lo in range(start, end, _CHUNK):
            hi = min(end, lo + _CHUNK)
            total += await self.db.write(
                lambda tx, lo=lo, hi=hi: self._expire_chunk(tx, tenant_id, lo, hi, days,
                                                            expired_at))
        if total and receipt:
            await self.audit.append(tenant_id, {
                "kind": "deletion_receipt", "actor": RETENTION_ACTOR, "outcome": "deleted",
                "details": {"trigger": "audit_retention", "data_class": AUDIT_CLASS,
                            "days": days, "expired_entries": total, "expired_before": end}})
        return total

    @staticmethod
    def _expire_chunk(tx: WriteTx, tenant_id: str, lo: int, hi: int, days: int,
                      expired_at: str) -> int:
        n = tx.execute(
            "UPDATE audit_entries SET entry = ?, expired_at = ? WHERE tenant_id = ?"
            " AND seq >= ? AND seq < ? AND expired_at IS NULL",
            (b"", expired_at, tenant_id, lo, hi))
        tx.execute(
            "INSERT INTO audit_retention (tenant_id, days, expired_size, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET expired_size ="
            " CASE WHEN excluded.expired_size > audit_retention.expired_size"
            " THEN excluded.expired_size ELSE audit_retention.expired_size END",
            (tenant_id, days, hi, expired_at))
        return n

    async def _first_kept(self, tenant_id: str, low: int, high: int, cutoff: str) -> int:
        """The first seq in [low, high) whose time is >= cutoff (high if none): entry
        times never go backwards within a log, so a binary search of single-entry reads."""
        while low < high:
            mid = (low + high) // 2
            row = await self.db.fetchone(
                "SELECT entry FROM audit_entries WHERE tenant_id = ? AND seq = ?",
                (tenant_id, mid))
            data = bytes(row["entry"]) if row is not None else b""
            # An empty entry was expired by another run (its time was older still).
            if not data or json.loads(data)["time"] < cutoff:
                low = mid + 1
            else:
                high = mid
        return low


def get_audit_retention(services: Any, policies: Any) -> AuditRetention:
    """The gateway's AuditRetention, created on first use (`services.features`)."""
    existing = services.features.get("audit_retention")
    if existing is not None:
        return existing
    from gateway.transparency.log import get_audit_log

    cfg = services.config.section("retention")
    service = AuditRetention(services.db, get_audit_log(services), services.clock, policies,
                             default_days=cfg.classes[AUDIT_CLASS]["default_days"],
                             interval=cfg.sweep_interval_seconds)
    services.features["audit_retention"] = service
    return service
