"""Retention, assembled: the tenant's policy, legal holds, the preview, the sweep with its
tombstones, the in-process sweep job and one call's retention state, behind one service
that the web handlers, the CLI, the subject requests and the staff view reach through
`get_retention(services)`.

Where each part lives (docs/retention-and-dsr.md):
- data_classes.py  the registry of data classes (days, bounds, description)
- class_queries.py per class: how its items are found, counted and deleted
- settings.py      the [retention] section
- policy.py        days per class per tenant, within the operator's bounds
- holds.py         legal holds and the keep-or-delete verdict
- sweep.py         the batched, resumable sweep; tombstones.py its blob files
- preview.py       what the next sweep would do (read-only)
- call_state.py    one call's state per class (staff technical view)

Invariants:
- Nothing here imports gateway.services or gateway.cli: services arrive as an argument.
- One sweep job per process (a `PeriodicJob`); replicas each run theirs, and the
  database's write lock makes every deletion happen once (see sweep.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.core.clock import Clock
from gateway.core.jobs import PeriodicJob
from gateway.lifecycle.call_state import call_retention_state
from gateway.lifecycle.holds import LegalHolds
from gateway.lifecycle.policy import RetentionPolicies
from gateway.lifecycle.preview import RetentionPreview
from gateway.lifecycle.report import SweepReport
from gateway.lifecycle.settings import RetentionConfig
from gateway.lifecycle.sweep import Sweeper
from gateway.lifecycle.tombstones import BlobReaper
from gateway.store import Database
from gateway.tenants.keyring import KeyRing
from gateway.transparency.log import get_audit_log

if TYPE_CHECKING:  # the blob store's interface; the backend is chosen in gateway/services.py
    from gateway.store import BlobStore

log = logging.getLogger("gateway.retention")


class RetentionService:
    def __init__(self, db: Database, keyring: KeyRing, blobs: BlobStore, clock: Clock,
                 cfg: RetentionConfig, *, audit: Any = None, registry: Any = None,
                 ingest: Any = None, default_region: str = "") -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.audit = audit
        self.default_region = default_region
        self.policies = RetentionPolicies(db, clock, cfg)
        self.holds = LegalHolds(db, keyring, clock, default_region)
        self.previews = RetentionPreview(db, keyring, clock, self.policies, self.holds)
        self.reaper = BlobReaper(db, blobs)
        self.sweeper = Sweeper(db, keyring, clock, cfg, self.policies, self.holds,
                               self.previews, self.reaper, audit=audit, registry=registry,
                               ingest=ingest)
        self._job: PeriodicJob | None = None

    # -- the sweep ------------------------------------------------------------------------
    async def sweep(self, **kwargs: Any) -> SweepReport:
        """One pass over every active tenant (sweep.Sweeper.sweep: dry_run, tenant_ids,
        progress)."""
        return await self.sweeper.sweep(**kwargs)

    async def estimate(self, tenant_ids: list[str] | None = None) -> int:
        return await self.sweeper.estimate(tenant_ids)

    async def scan_orphans(self) -> dict[str, int]:
        return await self.reaper.scan_orphans()

    async def remove_blobs(self, tenant_id: str, object_ids: list[str]) -> None:
        await self.reaper.remove(tenant_id, object_ids)

    @property
    def fault_hook(self) -> Callable[[str], None] | None:
        return self.sweeper.fault_hook

    @fault_hook.setter
    def fault_hook(self, hook: Callable[[str], None] | None) -> None:
        self.sweeper.fault_hook = hook

    # -- reads ----------------------------------------------------------------------------
    async def preview(self, tenant_id: str) -> dict[str, Any]:
        return await self.previews.preview(tenant_id)

    async def call_retention_state(self, tenant_id: str, call_id: str
                                   ) -> list[dict[str, Any]] | None:
        return await call_retention_state(self.db, self.keyring, self.clock, self.policies,
                                          self.holds, tenant_id, call_id)

    # -- the in-process job ---------------------------------------------------------------
    async def start(self) -> None:
        """Sweep every `sweep_interval_seconds` (read now: 0 leaves the job off)."""
        if self._job is None:
            self._job = PeriodicJob("retention-sweep", self._tick,
                                    self.cfg.sweep_interval_seconds)
            await self._job.start()

    async def stop(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            await job.stop()

    async def _tick(self) -> bool:
        totals = (await self.sweep()).totals()
        if any(totals.values()):
            log.info("retention sweep: %s", json.dumps(totals))
        return False


def get_retention(services: Any) -> RetentionService:
    """The gateway's RetentionService, created on first use (app or CLI)."""
    existing = services.features.get("retention")
    if existing is not None:
        return existing
    service = RetentionService(
        services.db, services.keyring, services.blobs, services.clock,
        services.config.section("retention"), audit=get_audit_log(services),
        registry=services.metrics.registry, ingest=services.ingest,
        default_region=services.config.privacy.default_region)
    services.features["retention"] = service
    return service
