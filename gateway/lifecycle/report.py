"""What a sweep (or its dry run, the preview) did: per tenant and data class, the items
deleted and the items kept with the reason, and the run's totals.

Invariants:
- Reports carry counts, reasons and tenant ids only: never an item id, number or content
  (receipts in the audit log carry ids as SHA-256 hashes, see `hash_id`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from gateway.lifecycle.data_classes import SWEPT

# Who the audit log names as the actor of a retention deletion.
SYSTEM_ACTOR = {"type": "system", "id": "retention"}


def hash_id(value: str) -> str:
    """How receipts name a deleted item: SHA-256 of its id, hex."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class TenantSweep:
    tenant_id: str
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SWEPT, 0))
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    lag_seconds: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    held: bool = False

    def keep(self, data_class: str, reason: str, n: int = 1) -> None:
        per = self.kept.setdefault(data_class, {})
        per[reason] = per.get(reason, 0) + n


@dataclass
class SweepReport:
    run_id: str
    started_at: str
    dry_run: bool
    tenants: list[TenantSweep] = field(default_factory=list)
    blobs_unlinked: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(SWEPT, 0)
        for t in self.tenants:
            for k, v in t.deleted.items():
                out[k] += v
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started_at": self.started_at, "dry_run": self.dry_run,
                "deleted": self.totals(), "blobs_unlinked": self.blobs_unlinked,
                "orphans": self.orphans, "duration_seconds": round(self.duration_seconds, 3),
                "tenants": [{"tenant_id": t.tenant_id, "deleted": t.deleted, "kept": t.kept,
                             "tenant_held": t.held} for t in self.tenants]}
