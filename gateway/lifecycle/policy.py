"""A tenant's retention policy: days per data class, chosen within the operator's bounds.

Invariants:
- The effective days of a class are the tenant's choice, else the operator default, and
  always inside the operator's current bounds (bounds tightened after a tenant chose win).
- A child class is never kept longer than its parent (`effective_days` shows the minimum).
- PUT semantics: the classes given are set, the classes left out (or null) go back to the
  operator default; a value outside the bounds is a 422 naming the bound.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway.core.clock import Clock, isoformat
from gateway.errors import DomainError, invalid
from gateway.lifecycle.data_classes import BY_NAME, ENFORCED, NAMES, SWEPT
from gateway.lifecycle.settings import RetentionConfig
from gateway.store import Database, WriteTx


def cutoffs(policy: dict[str, int], now: datetime) -> dict[str, str]:
    """Per swept class, the time before which its items are due."""
    return {name: isoformat(now - timedelta(days=policy[name])) for name in SWEPT}


def _out_of_bounds(name: str, bound: str, limit: int) -> DomainError:
    least = "at least" if bound == "min_days" else "at most"
    return DomainError(422, "retention-out-of-bounds", "retention outside the operator's bounds",
                       f"{name}: must be {least} {limit} days (operator bound {bound})",
                       field=name, bound=bound, limit=limit)


class RetentionPolicies:
    def __init__(self, db: Database, clock: Clock, cfg: RetentionConfig) -> None:
        self.db = db
        self.clock = clock
        self.cfg = cfg

    async def effective(self, tenant_id: str) -> dict[str, int]:
        """Effective days per data class: the tenant's choice, else the operator default."""
        rows = await self.db.fetchall(
            "SELECT data_class, days FROM retention_policies WHERE tenant_id = ?", (tenant_id,))
        chosen = {r["data_class"]: r["days"] for r in rows}
        out = {}
        for name, bounds in self.cfg.classes.items():
            days = chosen.get(name, bounds["default_days"])
            # Bounds may have tightened since the tenant chose: the operator's bound wins.
            out[name] = min(max(days, bounds["min_days"]), bounds["max_days"])
        return out

    async def render(self, tenant_id: str) -> dict[str, Any]:
        rows = await self.db.fetchall(
            "SELECT data_class, days, updated_at FROM retention_policies WHERE tenant_id = ?",
            (tenant_id,))
        chosen = {r["data_class"]: r for r in rows}
        effective = await self.effective(tenant_id)
        classes = {}
        for name, bounds in self.cfg.classes.items():
            row = chosen.get(name)
            days = effective[name]
            entry = {"days": days, "source": "tenant" if row is not None else "default",
                     "default_days": bounds["default_days"], "min_days": bounds["min_days"],
                     "max_days": bounds["max_days"], "enforced": name in ENFORCED}
            parent = BY_NAME[name].parent
            if parent is not None:
                # A child goes with its parent's item at the latest.
                entry["effective_days"] = min(days, effective[parent])
            if row is not None:
                entry["updated_at"] = row["updated_at"]
            classes[name] = entry
        return {"classes": classes,
                "sweep_interval_seconds": self.cfg.sweep_interval_seconds}

    async def set(self, tenant_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object of days per data class")
        # Either {"recordings": 30, ...} or the GET shape {"classes": {"recordings":
        # {"days": 30, ...}}} (so a client can PUT back what it read, edited).
        raw = body["classes"] if isinstance(body.get("classes"), dict) else body
        chosen: dict[str, int] = {}
        for name, days in raw.items():
            if name not in self.cfg.classes:
                raise invalid(name, "unknown data class; one of " + ", ".join(NAMES))
            if isinstance(days, dict):
                if days.get("source") == "default":
                    continue
                days = days.get("days")
            if days is None:
                continue
            if not isinstance(days, int) or isinstance(days, bool):
                raise invalid(name, "must be a whole number of days")
            bounds = self.cfg.classes[name]
            if days < bounds["min_days"]:
                raise _out_of_bounds(name, "min_days", bounds["min_days"])
            if days > bounds["max_days"]:
                raise _out_of_bounds(name, "max_days", bounds["max_days"])
            chosen[name] = days
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> None:
            tx.execute("DELETE FROM retention_policies WHERE tenant_id = ?", (tenant_id,))
            tx.executemany(
                "INSERT INTO retention_policies (tenant_id, data_class, days, updated_at)"
                " VALUES (?, ?, ?, ?)", [(tenant_id, k, v, now) for k, v in chosen.items()])

        await self.db.write(unit)
        return await self.render(tenant_id)
