"""The retention sweep: per tenant and data class, delete what expired and is not kept.

Kept past expiry: anything under an active legal hold (the tenant, the call, or a phone
number that is one of the call's parties), calls restricted by a data-subject request, and
recordings still being written (gateway/lifecycle/holds.py `classify`).

Invariants:
- Per tenant and class, one write unit at a time until nothing expired is left: select
  the next batch by (time, id) after a cursor (gateway/lifecycle/class_queries.py),
  re-read the holds, drop what is kept, delete the rest and append the batch's deletion
  receipt to the tenant's audit log, all in one transaction on the single writer.
- Idempotent and resumable: run again, it finds nothing more; interrupted, the next run
  continues. Several processes sharing the database each run their units under the
  database's write lock, so a row is deleted by exactly one of them (no double work, no
  missed rows).
- Blob files go after the commit (gateway/lifecycle/tombstones.py); files of batch k are
  unlinked while batch k+1's unit runs, their tombstones cleared by the unit after that.
- A child never outlives its call: a call's expiry takes its events and recordings along.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

import keys
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.lifecycle.class_queries import QUERIES, delete_items_tx, marks
from gateway.lifecycle.data_classes import ROOT, SWEPT
from gateway.lifecycle.holds import LegalHolds, classify
from gateway.lifecycle.policy import RetentionPolicies, cutoffs
from gateway.lifecycle.preview import RetentionPreview
from gateway.lifecycle.report import SYSTEM_ACTOR, SweepReport, TenantSweep, hash_id
from gateway.lifecycle.settings import RetentionConfig
from gateway.lifecycle.tombstones import BlobReaper
from gateway.lifecycle.unit_keys import truncate_wal
from gateway.store import Database, WriteTx
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.retention")


class SweepInterrupted(RuntimeError):
    """Raised by a test's fault hook to simulate a crash at a chosen point."""


@dataclass
class _BatchResult:
    stop: bool = False
    tenant_held: bool = False
    cursor: tuple[Any, Any] = ("", "")
    examined: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    blobs: list[str] = field(default_factory=list)
    first_deleted_time: str | None = None
    deleted_ids: list[str] = field(default_factory=list)


class _SweepMetrics:
    def __init__(self, registry: Any) -> None:
        self.deleted = Counter("gateway_retention_deleted_items",
                               "Items the retention sweep deleted, by data class",
                               ["data_class"], registry=registry)
        self.duration = Histogram("gateway_retention_sweep_duration_seconds",
                                  "Duration of a retention sweep", registry=registry,
                                  buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800))
        self.lag = Gauge("gateway_retention_lag_seconds",
                         "Age past its expiry of the oldest item the last sweep found"
                         " due (0: on time), by data class", ["data_class"], registry=registry)
        self.runs = Counter("gateway_retention_sweeps", "Retention sweeps by outcome",
                            ["outcome"], registry=registry)
        for data_class in SWEPT:
            self.deleted.labels(data_class)
            self.lag.labels(data_class).set(0)

    def observe(self, report: SweepReport) -> None:
        self.runs.labels("ok").inc()
        self.duration.observe(report.duration_seconds)
        for name, n in report.totals().items():
            if n:
                self.deleted.labels(name).inc(n)
        for name in SWEPT:
            self.lag.labels(name).set(max([t.lag_seconds.get(name, 0.0)
                                           for t in report.tenants] or [0.0]))


class Sweeper:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, cfg: RetentionConfig,
                 policies: RetentionPolicies, holds: LegalHolds, preview: RetentionPreview,
                 reaper: BlobReaper, *, audit: Any = None, registry: Any = None,
                 ingest: Any = None) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.policies = policies
        self.holds = holds
        self.preview = preview
        self.reaper = reaper
        self.audit = audit
        self.ingest = ingest
        self.metrics = _SweepMetrics(registry) if registry is not None else None
        # Tests set this to raise SweepInterrupted at a chosen point: called with
        # "in_unit" (inside the write unit, after the deletes: rolls the batch back),
        # "after_commit" (before any blob is unlinked) and "after_unlink" (before the
        # tombstones are cleared).
        self.fault_hook: Callable[[str], None] | None = None

    def _fault(self, point: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point)

    async def tenants(self, only: Iterable[str] | None = None) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT id FROM tenants WHERE state NOT IN ('offboarding', 'offboarded')"
            " ORDER BY id")
        ids = [r["id"] for r in rows]
        if only is not None:
            wanted = set(only)
            ids = [i for i in ids if i in wanted]
        return ids

    async def estimate(self, tenant_ids: list[str] | None = None) -> int:
        """Upper bound of the items a sweep will examine (the progress bar's total)."""
        now = self.clock.now()
        total = 0
        for tenant_id in tenant_ids or await self.tenants():
            cut = cutoffs(await self.policies.effective(tenant_id), now)
            for name in SWEPT:
                queries = QUERIES[name]
                row = await self.db.fetchone(queries.count, (queries.tenant_key(tenant_id),
                                                             queries.time_key(cut[name])))
                total += row[0]
        return total

    async def sweep(self, *, dry_run: bool = False, tenant_ids: Iterable[str] | None = None,
                    progress: Callable[[int], None] | None = None) -> SweepReport:
        """One pass over every active tenant."""
        started = time.perf_counter()
        report = SweepReport(uuid.uuid4().hex, isoformat(self.clock.now()), dry_run)
        try:
            if not dry_run:
                report.blobs_unlinked += await self.reaper.collect()
            for tenant_id in await self.tenants(tenant_ids):
                if dry_run:
                    result = await self.preview.tenant(tenant_id, progress)
                else:
                    result = await self._sweep_tenant(tenant_id, report, progress)
                report.tenants.append(result)
            if not dry_run and self.cfg.orphan_scan_interval_seconds and (
                    time.monotonic() - self.reaper.last_orphan_scan
                    >= self.cfg.orphan_scan_interval_seconds):
                report.orphans = await self.reaper.scan_orphans()
        except BaseException:
            if self.metrics is not None and not dry_run:
                self.metrics.runs.labels("failed").inc()
            raise
        report.duration_seconds = time.perf_counter() - started
        if not dry_run and self.metrics is not None:
            self.metrics.observe(report)
        return report

    async def _sweep_tenant(self, tenant_id: str, report: SweepReport,
                            progress: Callable[[int], None] | None) -> TenantSweep:
        result = TenantSweep(tenant_id)
        try:
            ring = await self.keyring.for_tenant(tenant_id)
        except keys.DecryptionError:
            log.warning("retention: tenant without usable keys skipped")
            return result
        cut = cutoffs(await self.policies.effective(tenant_id), self.clock.now())
        # Pipelined: the files of batch k are unlinked (a thread) while batch k+1's unit
        # runs on the writer; their tombstones are cleared by the unit after that.
        unlinked: list[str] = []
        unlinking: tuple[asyncio.Task, list[str]] | None = None

        async def finish_unlink() -> None:
            nonlocal unlinking
            if unlinking is not None:
                task, ids = unlinking
                unlinking = None
                await task
                report.blobs_unlinked += len(ids)
                self._fault("after_unlink")
                unlinked.extend(ids)

        try:
            for data_class in SWEPT:
                cursor = QUERIES[data_class].start
                first = True
                while True:
                    batch = await self._sweep_batch(tenant_id, ring, data_class,
                                                    cut[data_class], cursor, report.run_id,
                                                    unlinked)
                    unlinked = []
                    await finish_unlink()
                    if batch.tenant_held:
                        result.held = True
                        break
                    if first and batch.first_deleted_time is not None:
                        lag = parse_iso(cut[data_class]) - parse_iso(batch.first_deleted_time)
                        result.lag_seconds[data_class] = max(lag.total_seconds(), 0.0)
                        first = False
                    for name, n in batch.counts.items():
                        result.deleted[name] = result.deleted.get(name, 0) + n
                    for reason, n in batch.kept.items():
                        result.keep(data_class, reason, n)
                    if batch.counts:
                        result.batches += 1
                    if progress is not None and batch.examined:
                        progress(batch.examined)
                    if batch.blobs:
                        self._fault("after_commit")
                        unlinking = (asyncio.create_task(
                            self.reaper.unlink(tenant_id, batch.blobs)), batch.blobs)
                    if batch.stop:
                        break
                    cursor = batch.cursor
                if result.held:
                    break
            await finish_unlink()
        finally:
            if unlinking is not None:  # interrupted: let the running unlink end first
                await asyncio.gather(unlinking[0], return_exceptions=True)
        if unlinked:
            await self.reaper.clear(unlinked)
        if any(result.deleted.values()):
            if self.ingest is not None and result.deleted.get(ROOT):
                self.ingest.forget_known_calls()
            if self.audit is not None:
                await self.audit.append(tenant_id, {
                    "kind": "deletion_receipt", "actor": SYSTEM_ACTOR,
                    "outcome": "run_completed",
                    "details": {"run_id": report.run_id, "trigger": "retention_sweep",
                                "started_at": report.started_at,
                                "finished_at": isoformat(self.clock.now()),
                                "deleted": result.deleted, "batches": result.batches,
                                "kept": result.kept}})
        return result

    async def _sweep_batch(self, tenant_id: str, ring: keys.TenantKeys, data_class: str,
                           cutoff: str, cursor: tuple[Any, Any], run_id: str,
                           clear_tombstones: list[str]) -> _BatchResult:
        now = isoformat(self.clock.now())
        limit = self.cfg.batch_size
        audit = self.audit

        queries = QUERIES[data_class]
        tenant, cutoff_key = queries.tenant_key(tenant_id), queries.time_key(cutoff)
        sealed_out: list[bytes | None] = []
        # The parties' unit keys for the hold check, kept for this batch whatever the
        # shared segment cache evicts before the unit runs (None: the ring's cache).
        units = None
        if data_class in ("call_metadata", "call_events"):
            # Load the unit keys of this batch's parties ahead (a number hold decrypts
            # candidates inside the unit, which cannot wait on the key store); the
            # deletion below rewrites the same segments, so the reads are not wasted.
            ahead = await self.db.fetchall(queries.select, {
                "tenant": tenant, "cutoff": cutoff_key, "ct": cursor[0], "cid": cursor[1],
                "now": now, "limit": limit})
            units = await self.keyring.prefetch_units(tenant_id,
                                                      [r["parties"] for r in ahead])

        def unit(tx: WriteTx) -> _BatchResult:
            del sealed_out[:]   # a retried unit starts over
            if clear_tombstones:
                tx.execute(f"DELETE FROM blob_tombstones WHERE object_id IN"
                           f" ({marks(clear_tombstones)})", clear_tombstones)
            holds = self.holds.active_tx(tx, tenant_id, ring)
            if holds.tenant:
                return _BatchResult(stop=True, tenant_held=True)
            # Locked until the commit: a sweep on another replica (PostgreSQL) waits, then
            # sees these rows gone, so no item is deleted twice or in two receipts.
            rows = tx.fetchall(queries.select, {
                "tenant": tenant, "cutoff": cutoff_key, "ct": cursor[0], "cid": cursor[1],
                "now": now, "limit": limit}, for_update=True)
            out = _BatchResult(stop=len(rows) < limit, examined=len(rows))
            if not rows:
                return out
            out.cursor = (rows[-1]["t"], rows[-1]["item_id"])
            doomed = []
            for row in rows:
                verdict = classify(row, holds, ring, units)
                if verdict == "delete":
                    if out.first_deleted_time is None:
                        out.first_deleted_time = queries.time_text(row["t"])
                    doomed.append(queries.item_text(row["item_id"]))
                else:
                    out.kept[verdict] = out.kept.get(verdict, 0) + 1
            if not doomed:
                return out
            counts, blobs = delete_items_tx(tx, data_class, doomed, sealed_out)
            out.deleted_ids = doomed
            out.counts = {k: v for k, v in counts.items() if v}
            out.blobs = blobs
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "deletion_receipt", "actor": SYSTEM_ACTOR, "outcome": "deleted",
                    "details": {"run_id": run_id, "trigger": "retention_sweep",
                                "data_class": data_class, "deleted": out.counts,
                                "ids_sha256": [hash_id(i) for i in doomed]}})
            self._fault("in_unit")
            return out

        result = await self.db.write(unit)
        if self.keyring.units is not None and result.deleted_ids:
            await self.keyring.units.erase(tenant_id, sealed_out, rows={
                "calls" if data_class == "call_metadata" else data_class: result.deleted_ids})
        if result.deleted_ids:
            await truncate_wal(self.db)
        return result
