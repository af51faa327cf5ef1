"""Retention: per-tenant policy within operator bounds, legal holds, preview, and the sweep.

Data classes and what the sweep does to each (docs/retention-and-dsr.md):

| class          | rows                       | age counted from         | on expiry                      |
| -------------- | -------------------------- | ------------------------ | ------------------------------ |
| call_metadata  | calls                      | calls.sort_time (start)  | call deleted with its events,  |
|                |                            |                          | recordings and their keys      |
| call_events    | call_events                | received_at              | event row deleted              |
| recordings     | recordings (+ blob, key)   | created_at               | key, then blob, then row       |
| diagnostics    | recordings.stats           | recording created_at     | stats set to NULL              |
| audit          | the transparency log       | -                        | not pruned: the log is         |
|                |                            |                          | append-only (see the docs)     |

A child never outlives its call: when a call's metadata expires, its events and recordings
go with it whatever their own days say.

Kept past expiry: anything under an active legal hold (the tenant, the call, or a phone
number that is one of the call's parties; number holds match by blind index and then by
exact comparison of the decrypted parties), calls restricted by a data-subject request
(restriction is GDPR Art. 18's alternative to erasure), and recordings still being written.

The sweep, per tenant and class, repeats one write unit until nothing expired is left:
select the next batch by (time, id) after a cursor through an index led by tenant and time
(cost follows the expired rows, never the table size), re-read the holds, drop what is
kept, delete the rest, and append the batch's deletion receipt to the tenant's audit log,
all in one transaction on the single writer. Two processes sharing the database each run
their units under SQLite's write lock, so a row is deleted by exactly one of them and the
other's next select no longer sees it (no double work, no missed rows). Deleting a
recording row deletes its wrapped data key in the same transaction (crypto-shred; a
trigger does the same for any other way a recording row goes) and leaves a tombstone; the
blob file is unlinked after the commit and the tombstone cleared after that, so a crash
at any point leaves at worst an unreadable file that the next sweep removes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

import keys
from gateway.config import ConfigError, register_section
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.core.jobs import cancel_and_wait, start_for_app_lifetime
from gateway.core.phone import PartyError, normalise_party
from gateway.errors import DomainError, invalid, not_found
from gateway.ingest.pipeline import PARTIES_RECORD
from gateway.store.files import FileBlobStore
from gateway.store.sqlite import Database, WriteTx
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.retention")

DATA_CLASSES = ("call_metadata", "call_events", "recordings", "diagnostics", "audit")
# Classes the sweep enforces, in the order it runs them: a call first (its children go
# with it), then what is left of each child class by its own days.
SWEPT_CLASSES = ("call_metadata", "call_events", "recordings", "diagnostics")
HOLD_SCOPES = ("tenant", "call", "phone_number")
HOLD_NUMBER_RECORD = "legal-hold-number"
HOLD_REASON_RECORD = "legal-hold-reason"
MAX_REASON_LENGTH = 500
# A receipt lists the SHA-256 of each id it deleted: 1000 ids is ~70 KB, well inside the
# audit log's 256 KiB entry limit (gateway/transparency/entries.py MAX_ENTRY_SIZE).
MAX_BATCH_SIZE = 1000
SYSTEM_ACTOR = {"type": "system", "id": "retention"}
_TOMBSTONE_CHUNK = 1000
_PREVIEW_CHUNK = 2000


# -- configuration -------------------------------------------------------------------------
DEFAULT_BOUNDS: dict[str, dict[str, int]] = {
    # days: default when the tenant set nothing; min/max: what a tenant may choose.
    "call_metadata": {"default_days": 365, "min_days": 0, "max_days": 3650},
    "call_events": {"default_days": 90, "min_days": 0, "max_days": 3650},
    "recordings": {"default_days": 30, "min_days": 0, "max_days": 3650},
    "diagnostics": {"default_days": 30, "min_days": 0, "max_days": 365},
    # Deletion receipts and access records: at least a year (accountability).
    "audit": {"default_days": 2190, "min_days": 365, "max_days": 3650},
}


@dataclass
class RetentionConfig:
    # Seconds between in-process sweeps; 0 turns the in-process sweep off (run
    # `gateway retention run` from cron instead).
    sweep_interval_seconds: float = 300.0
    # Items one write unit deletes. Each unit holds the single writer for its statements
    # (~20-40 us per call with its children), so 500 keeps ingest waiting < ~20 ms.
    batch_size: int = 500
    # Seconds between full orphan scans (blob files and data keys with no recording row,
    # e.g. from a writer that crashed mid-rename); 0 turns it off. Costs a walk of the blob
    # directory, so it runs rarely; crash leftovers of the sweep itself need no scan.
    orphan_scan_interval_seconds: float = 86400.0
    # Days a data-subject request has before it is due (GDPR Art. 12(3): one month).
    dsr_due_days: int = 30
    # Operator bounds per data class (see DEFAULT_BOUNDS); a class or key left out keeps
    # its default.
    classes: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_BOUNDS.items()})

    def __post_init__(self) -> None:
        merged: dict[str, dict[str, int]] = {}
        for name, given in (self.classes or {}).items():
            if name not in DEFAULT_BOUNDS:
                raise ConfigError(f"unknown data class retention.classes.{name}")
            if not isinstance(given, dict):
                raise ConfigError(f"retention.classes.{name} must be a table")
            for key, value in given.items():
                if key not in DEFAULT_BOUNDS[name]:
                    raise ConfigError(f"unknown key retention.classes.{name}.{key}")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"retention.classes.{name}.{key} must be an integer >= 0")
        for name, defaults in DEFAULT_BOUNDS.items():
            bounds = {**defaults, **(self.classes or {}).get(name, {})}
            if not bounds["min_days"] <= bounds["default_days"] <= bounds["max_days"]:
                raise ConfigError(f"retention.classes.{name}: need min_days <= default_days"
                                  " <= max_days")
            merged[name] = bounds
        self.classes = merged
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"retention.batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if self.sweep_interval_seconds < 0 or self.orphan_scan_interval_seconds < 0:
            raise ConfigError("retention intervals must be >= 0")
        if self.dsr_due_days < 1:
            raise ConfigError("retention.dsr_due_days must be >= 1")


register_section("retention", RetentionConfig)


def hash_id(value: str) -> str:
    """How receipts name a deleted item: SHA-256 of its id, hex."""
    return hashlib.sha256(value.encode()).hexdigest()


# -- legal holds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Holds:
    """A tenant's active holds at one moment, ready to test rows against."""

    tenant: bool = False
    calls: frozenset[str] = frozenset()
    # blind index -> the held E.164 numbers with that index
    numbers: dict[int, frozenset[str]] = field(default_factory=dict)

    def call_held(self, ring: keys.TenantKeys | None, call_id: str, from_index: int | None,
                  to_index: int | None, parties: bytes | None) -> bool:
        if self.tenant or call_id in self.calls:
            return True
        if not self.numbers or parties is None:
            return False
        if from_index not in self.numbers and to_index not in self.numbers:
            return False
        # A blind-index hit is only a candidate (16 bits: many numbers share a value).
        assert ring is not None
        decoded = json.loads(ring.open_record(PARTIES_RECORD, call_id, bytes(parties)))
        for role, index in (("from", from_index), ("to", to_index)):
            if index in self.numbers and decoded.get(role) in self.numbers[index]:
                return True
        return False


_ACTIVE_HOLDS_SQL = (
    "SELECT id, scope, call_id, number_index, number_sealed FROM legal_holds"
    " WHERE tenant_id = ? AND released_at IS NULL AND (ends_at IS NULL OR ends_at > ?)")


class _HoldNumbers:
    """Decrypted held numbers by hold id (a hold's sealed number never changes)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def build(self, rows: Iterable[Any], ring: keys.TenantKeys | None) -> Holds:
        tenant = False
        calls: set[str] = set()
        numbers: dict[int, set[str]] = {}
        for row in rows:
            if row["scope"] == "tenant":
                tenant = True
            elif row["scope"] == "call":
                calls.add(row["call_id"])
            elif row["scope"] == "phone_number":
                number = self._cache.get(row["id"])
                if number is None:
                    assert ring is not None
                    number = ring.open_record(HOLD_NUMBER_RECORD, row["id"],
                                              bytes(row["number_sealed"])).decode()
                    self._cache[row["id"]] = number
                numbers.setdefault(row["number_index"], set()).add(number)
        return Holds(tenant, frozenset(calls), {k: frozenset(v) for k, v in numbers.items()})

    def forget(self, hold_id: str) -> None:
        self._cache.pop(hold_id, None)


# -- what the sweep scans ------------------------------------------------------------------
# Each select returns, per candidate: item_id, t (its time), call_id, the call's blind
# indexes, sealed parties and restriction, and `busy` (a recording still being written).
# CROSS JOIN keeps SQLite driving from the (tenant, time) index of the scanned table.
_SELECTS = {
    "call_metadata": (
        "SELECT c.id AS item_id, c.sort_time AS t, c.id AS call_id, c.from_index,"
        " c.to_index, c.parties, c.restricted_at, EXISTS (SELECT 1 FROM recordings r"
        " WHERE r.call_id = c.id AND r.state = 'writing' AND r.lease_until >= :now) AS busy"
        " FROM calls c WHERE c.tenant_id = :tenant AND c.sort_time < :cutoff"
        " AND (c.sort_time, c.id) > (:ct, :cid) ORDER BY c.sort_time, c.id LIMIT :limit"),
    "call_events": (
        "SELECT e.id AS item_id, e.received_at AS t, e.call_id, c.from_index, c.to_index,"
        " c.parties, c.restricted_at, 0 AS busy FROM call_events e CROSS JOIN calls c"
        " ON c.id = e.call_id WHERE e.tenant_id = :tenant AND e.received_at < :cutoff"
        " AND (e.received_at, e.id) > (:ct, :cid) ORDER BY e.received_at, e.id LIMIT :limit"),
    "recordings": (
        "SELECT r.id AS item_id, r.created_at AS t, r.call_id, c.from_index, c.to_index,"
        " c.parties, c.restricted_at, (r.state = 'writing' AND r.lease_until >= :now) AS busy"
        " FROM recordings r CROSS JOIN calls c ON c.id = r.call_id"
        " WHERE r.tenant_id = :tenant AND r.created_at < :cutoff"
        " AND (r.created_at, r.id) > (:ct, :cid) ORDER BY r.created_at, r.id LIMIT :limit"),
    "diagnostics": (
        "SELECT r.id AS item_id, r.created_at AS t, r.call_id, c.from_index, c.to_index,"
        " c.parties, c.restricted_at, (r.state = 'writing' AND r.lease_until >= :now) AS busy"
        " FROM recordings r CROSS JOIN calls c ON c.id = r.call_id"
        " WHERE r.tenant_id = :tenant AND r.stats IS NOT NULL AND r.created_at < :cutoff"
        " AND (r.created_at, r.id) > (:ct, :cid) ORDER BY r.created_at, r.id LIMIT :limit"),
}
# Upper bounds of the work per class, for the progress bar (index range counts).
_COUNTS = {
    "call_metadata": "SELECT COUNT(*) FROM calls WHERE tenant_id = ? AND sort_time < ?",
    "call_events": "SELECT COUNT(*) FROM call_events WHERE tenant_id = ? AND received_at < ?",
    "recordings": "SELECT COUNT(*) FROM recordings WHERE tenant_id = ? AND created_at < ?",
    "diagnostics": "SELECT COUNT(*) FROM recordings WHERE tenant_id = ? AND stats IS NOT NULL"
                   " AND created_at < ?",
}


def classify(row: Any, holds: Holds, ring: keys.TenantKeys | None) -> str:
    """'delete', or why the row stays: 'held', 'restricted', 'busy' (a recording being
    written) or 'unreadable' (a hold candidate whose parties do not decrypt: kept, since
    the sweep cannot tell whether the hold covers it)."""
    try:
        held = holds.call_held(ring, row["call_id"], row["from_index"], row["to_index"],
                               row["parties"])
    except keys.DecryptionError:
        return "unreadable"
    if held:
        return "held"
    if row["restricted_at"] is not None:
        return "restricted"
    if row["busy"]:
        return "busy"
    return "delete"


def _in(values: list[str]) -> str:
    return ",".join("?" * len(values))


def delete_calls_tx(tx: WriteTx, call_ids: list[str]) -> tuple[dict[str, int], list[str]]:
    """Delete calls with their events and recordings (wrapped keys first). Returns counts
    per class and the recording ids whose blob files are now to be unlinked (their
    tombstones exist). Used by the sweep, erasure and nothing else."""
    if not call_ids:
        return {}, []
    marks = _in(call_ids)
    recordings = [r[0] for r in tx.fetchall(
        f"SELECT id FROM recordings WHERE call_id IN ({marks})", call_ids)]
    if recordings:
        tx.execute(f"DELETE FROM blob_keys WHERE object_id IN ({_in(recordings)})", recordings)
    n_recordings = tx.execute(f"DELETE FROM recordings WHERE call_id IN ({marks})", call_ids)
    n_events = tx.execute(f"DELETE FROM call_events WHERE call_id IN ({marks})", call_ids)
    n_calls = tx.execute(f"DELETE FROM calls WHERE id IN ({marks})", call_ids)
    return ({"call_metadata": n_calls, "call_events": n_events, "recordings": n_recordings},
            recordings)


def _delete_items_tx(tx: WriteTx, data_class: str, ids: list[str]
                     ) -> tuple[dict[str, int], list[str]]:
    if not ids:
        return {}, []
    if data_class == "call_metadata":
        return delete_calls_tx(tx, ids)
    marks = _in(ids)
    if data_class == "call_events":
        return {"call_events": tx.execute(f"DELETE FROM call_events WHERE id IN ({marks})",
                                          ids)}, []
    if data_class == "recordings":
        # Crypto-shred first: the wrapped data key, then the row (the blob after commit).
        tx.execute(f"DELETE FROM blob_keys WHERE object_id IN ({marks})", ids)
        return {"recordings": tx.execute(f"DELETE FROM recordings WHERE id IN ({marks})",
                                         ids)}, ids
    if data_class == "diagnostics":
        return {"diagnostics": tx.execute(
            f"UPDATE recordings SET stats = NULL WHERE id IN ({marks}) AND stats IS NOT NULL",
            ids)}, []
    raise ValueError(f"unknown data class {data_class}")


# -- results -------------------------------------------------------------------------------
@dataclass
class TenantSweep:
    tenant_id: str
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SWEPT_CLASSES, 0))
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
        out = dict.fromkeys(SWEPT_CLASSES, 0)
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


@dataclass
class _BatchResult:
    stop: bool = False
    tenant_held: bool = False
    cursor: tuple[str, str] = ("", "")
    examined: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    blobs: list[str] = field(default_factory=list)
    first_deleted_time: str | None = None


class SweepInterrupted(RuntimeError):
    """Raised by a test's fault hook to simulate a crash at a chosen point."""


class ProgressBar:
    """A one-line progress bar on a terminal (the CLI's `retention run`)."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream or sys.stdout
        self.width = width
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 0.1 or self.done >= self.total:
            self._last = now
            self.render()

    def render(self) -> None:
        total = max(self.total, self.done, 1)
        filled = int(self.width * self.done / total)
        self.stream.write(f"\rretention [{'#' * filled}{'-' * (self.width - filled)}]"
                          f" {100 * self.done // total:3d}% {self.done}/{total} items")
        self.stream.flush()

    def close(self) -> None:
        # The total was an upper bound (held items, classes a call took along): done is 100%.
        self.total = self.done = max(self.done, self.total)
        self.render()
        self.stream.write("\n")
        self.stream.flush()


# -- the service ---------------------------------------------------------------------------
class RetentionService:
    def __init__(self, db: Database, keyring: KeyRing, blobs: FileBlobStore, clock: Clock,
                 cfg: RetentionConfig, *, audit: Any = None, registry: Any = None,
                 ingest: Any = None, default_region: str = "") -> None:
        self.db = db
        self.keyring = keyring
        self.blobs = blobs
        self.clock = clock
        self.cfg = cfg
        self.audit = audit
        self.ingest = ingest
        self.default_region = default_region
        self.owner = uuid.uuid4().hex
        self._hold_numbers = _HoldNumbers()
        self._task: asyncio.Task | None = None
        self._last_orphan_scan = time.monotonic()
        # Tests set this to raise SweepInterrupted at a chosen point: called with
        # "in_unit" (inside the write unit, after the deletes: rolls the batch back),
        # "after_commit" (before any blob is unlinked) and "after_unlink" (before the
        # tombstones are cleared).
        self.fault_hook: Callable[[str], None] | None = None
        self.deleted = self.duration = self.lag = self.runs = None
        if registry is not None:
            self.deleted = Counter("gateway_retention_deleted_items",
                                   "Items the retention sweep deleted, by data class",
                                   ["data_class"], registry=registry)
            self.duration = Histogram("gateway_retention_sweep_duration_seconds",
                                      "Duration of a retention sweep", registry=registry,
                                      buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800))
            self.lag = Gauge("gateway_retention_lag_seconds",
                             "Age past its expiry of the oldest item the last sweep found"
                             " due (0: on time), by data class", ["data_class"],
                             registry=registry)
            self.runs = Counter("gateway_retention_sweeps", "Retention sweeps by outcome",
                                ["outcome"], registry=registry)
            for data_class in SWEPT_CLASSES:
                self.deleted.labels(data_class)
                self.lag.labels(data_class).set(0)

    def _fault(self, point: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point)

    # -- policy ---------------------------------------------------------------------------
    async def policy(self, tenant_id: str) -> dict[str, int]:
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

    async def render_policy(self, tenant_id: str) -> dict[str, Any]:
        rows = await self.db.fetchall(
            "SELECT data_class, days, updated_at FROM retention_policies WHERE tenant_id = ?",
            (tenant_id,))
        chosen = {r["data_class"]: r for r in rows}
        effective = await self.policy(tenant_id)
        classes = {}
        for name, bounds in self.cfg.classes.items():
            row = chosen.get(name)
            days = effective[name]
            entry = {"days": days, "source": "tenant" if row is not None else "default",
                     "default_days": bounds["default_days"], "min_days": bounds["min_days"],
                     "max_days": bounds["max_days"], "enforced": name in SWEPT_CLASSES}
            if name in ("call_events", "recordings", "diagnostics"):
                # A child goes with its call at the latest.
                entry["effective_days"] = min(days, effective["call_metadata"])
            if row is not None:
                entry["updated_at"] = row["updated_at"]
            classes[name] = entry
        return {"classes": classes,
                "sweep_interval_seconds": self.cfg.sweep_interval_seconds}

    async def set_policy(self, tenant_id: str, body: Any) -> dict[str, Any]:
        """PUT semantics: the classes given are set, the classes left out (or null) go back
        to the operator default. 422 naming the bound for a value outside it."""
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object of days per data class")
        # Either {"recordings": 30, ...} or the GET shape {"classes": {"recordings":
        # {"days": 30, ...}}} (so a client can PUT back what it read, edited).
        raw = body["classes"] if isinstance(body.get("classes"), dict) else body
        chosen: dict[str, int] = {}
        for name, days in raw.items():
            if name not in self.cfg.classes:
                raise invalid(name, "unknown data class; one of " + ", ".join(DATA_CLASSES))
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
                raise DomainError(422, "retention-out-of-bounds", "retention outside the operator's"
                              " bounds", f"{name}: must be at least {bounds['min_days']} days"
                              " (operator bound min_days)", field=name, bound="min_days",
                              limit=bounds["min_days"])
            if days > bounds["max_days"]:
                raise DomainError(422, "retention-out-of-bounds", "retention outside the operator's"
                              " bounds", f"{name}: must be at most {bounds['max_days']} days"
                              " (operator bound max_days)", field=name, bound="max_days",
                              limit=bounds["max_days"])
            chosen[name] = days
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> None:
            tx.execute("DELETE FROM retention_policies WHERE tenant_id = ?", (tenant_id,))
            tx.executemany(
                "INSERT INTO retention_policies (tenant_id, data_class, days, updated_at)"
                " VALUES (?, ?, ?, ?)", [(tenant_id, k, v, now) for k, v in chosen.items()])

        await self.db.write(unit)
        return await self.render_policy(tenant_id)

    # -- holds ----------------------------------------------------------------------------
    async def create_hold(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        scope = body.get("scope")
        if scope not in HOLD_SCOPES:
            raise invalid("scope", "must be one of " + ", ".join(HOLD_SCOPES))
        reason = body.get("reason")
        if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= MAX_REASON_LENGTH:
            raise invalid("reason", f"must be 1-{MAX_REASON_LENGTH} characters")
        now = self.clock.now()
        ends_at = None
        if body.get("ends_at") is not None:
            ends = _parse_time("ends_at", body["ends_at"])
            if ends <= now:
                raise invalid("ends_at", "must be in the future")
            ends_at = isoformat(ends)
        extra = set(body) - {"scope", "reason", "ends_at", "call_id", "phone_number"}
        if extra:
            raise invalid(sorted(extra)[0], "unknown field")
        hold_id = str(uuid.uuid4())
        ring = await self.keyring.for_tenant(tenant_id)
        call_id = number_index = number_sealed = None
        if scope == "call":
            call_id = body.get("call_id")
            if not isinstance(call_id, str) or await self.db.fetchone(
                    "SELECT 1 FROM calls WHERE id = ? AND tenant_id = ?",
                    (call_id, tenant_id)) is None:
                raise not_found("call")
        elif scope == "phone_number":
            number = self.normalise(body.get("phone_number"), "phone_number")
            number_index = ring.blind_index(number)
            number_sealed = ring.seal_record(HOLD_NUMBER_RECORD, hold_id, number.encode())
        elif "call_id" in body or "phone_number" in body:
            raise invalid("scope", "a tenant hold takes no call_id or phone_number")
        sealed_reason = ring.seal_record(HOLD_REASON_RECORD, hold_id, reason.strip().encode())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO legal_holds (id, tenant_id, scope, call_id, number_index,"
            " number_sealed, reason, created_by, created_at, ends_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hold_id, tenant_id, scope, call_id, number_index, number_sealed, sealed_reason,
             actor, isoformat(now), ends_at)))
        return await self.get_hold(tenant_id, hold_id)

    def normalise(self, raw: Any, name: str) -> str:
        if not isinstance(raw, str):
            raise invalid(name, "must be a phone number (any formatting) or address")
        try:
            return normalise_party(raw, self.default_region)
        except PartyError:
            raise invalid(name, "not a phone number or address") from None

    _HOLD_COLUMNS = ("id, scope, call_id, number_sealed, reason, created_by, created_at,"
                     " ends_at, released_at")

    def _render_hold(self, ring: keys.TenantKeys, row: Any) -> dict[str, Any]:
        now = isoformat(self.clock.now())
        active = row["released_at"] is None and (row["ends_at"] is None or row["ends_at"] > now)
        return {"id": row["id"], "scope": row["scope"], "call_id": row["call_id"],
                "phone_number": ring.open_record(HOLD_NUMBER_RECORD, row["id"],
                                                 bytes(row["number_sealed"])).decode()
                if row["number_sealed"] is not None else None,
                "reason": ring.open_record(HOLD_REASON_RECORD, row["id"],
                                           bytes(row["reason"])).decode(),
                "created_at": row["created_at"], "ends_at": row["ends_at"],
                "released_at": row["released_at"], "active": active}

    async def get_hold(self, tenant_id: str, hold_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            f"SELECT {self._HOLD_COLUMNS} FROM legal_holds WHERE id = ? AND tenant_id = ?",
            (hold_id, tenant_id))
        if row is None:
            raise not_found("legal hold")
        return self._render_hold(await self.keyring.for_tenant(tenant_id), row)

    async def list_holds(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            f"SELECT {self._HOLD_COLUMNS} FROM legal_holds WHERE tenant_id = ?"
            " ORDER BY created_at, id", (tenant_id,))
        if not rows:
            return []
        ring = await self.keyring.for_tenant(tenant_id)
        return [self._render_hold(ring, r) for r in rows]

    async def release_hold(self, tenant_id: str, hold_id: str) -> None:
        now = isoformat(self.clock.now())
        changed = await self.db.write(lambda tx: tx.execute(
            "UPDATE legal_holds SET released_at = COALESCE(released_at, ?)"
            " WHERE id = ? AND tenant_id = ?", (now, hold_id, tenant_id)))
        if not changed:
            raise not_found("legal hold")
        self._hold_numbers.forget(hold_id)

    def holds_tx(self, tx: WriteTx, tenant_id: str, ring: keys.TenantKeys | None) -> Holds:
        """The tenant's active holds, read inside a write unit (so a hold committed before
        the unit is always seen by it)."""
        return self._hold_numbers.build(
            tx.fetchall(_ACTIVE_HOLDS_SQL, (tenant_id, isoformat(self.clock.now()))), ring)

    async def holds(self, tenant_id: str, ring: keys.TenantKeys | None) -> Holds:
        return self._hold_numbers.build(await self.db.fetchall(
            _ACTIVE_HOLDS_SQL, (tenant_id, isoformat(self.clock.now()))), ring)

    # -- the sweep ------------------------------------------------------------------------
    def cutoffs(self, policy: dict[str, int], now: datetime) -> dict[str, str]:
        return {name: isoformat(now - timedelta(days=policy[name])) for name in SWEPT_CLASSES}

    async def _tenants(self, only: Iterable[str] | None = None) -> list[str]:
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
        for tenant_id in tenant_ids or await self._tenants():
            cutoffs = self.cutoffs(await self.policy(tenant_id), now)
            for name in SWEPT_CLASSES:
                row = await self.db.fetchone(_COUNTS[name], (tenant_id, cutoffs[name]))
                total += row[0]
        return total

    async def sweep(self, *, dry_run: bool = False, tenant_ids: Iterable[str] | None = None,
                    progress: Callable[[int], None] | None = None) -> SweepReport:
        """One pass over every active tenant. Idempotent: run it again and it finds nothing
        more to do; interrupted, the next run continues where this one stopped."""
        started = time.perf_counter()
        report = SweepReport(uuid.uuid4().hex, isoformat(self.clock.now()), dry_run)
        try:
            if not dry_run:
                report.blobs_unlinked += await self.collect_tombstones()
            for tenant_id in await self._tenants(tenant_ids):
                if dry_run:
                    result = await self._preview_tenant(tenant_id, progress)
                else:
                    result = await self._sweep_tenant(tenant_id, report, progress)
                report.tenants.append(result)
            if not dry_run and self.cfg.orphan_scan_interval_seconds and (
                    time.monotonic() - self._last_orphan_scan
                    >= self.cfg.orphan_scan_interval_seconds):
                report.orphans = await self.scan_orphans()
        except BaseException:
            if self.runs is not None and not dry_run:
                self.runs.labels("failed").inc()
            raise
        report.duration_seconds = time.perf_counter() - started
        if not dry_run:
            self._observe(report)
        return report

    def _observe(self, report: SweepReport) -> None:
        if self.runs is None:
            return
        self.runs.labels("ok").inc()
        self.duration.observe(report.duration_seconds)
        for name, n in report.totals().items():
            if n:
                self.deleted.labels(name).inc(n)
        for name in SWEPT_CLASSES:
            self.lag.labels(name).set(max([t.lag_seconds.get(name, 0.0)
                                           for t in report.tenants] or [0.0]))

    async def _sweep_tenant(self, tenant_id: str, report: SweepReport,
                            progress: Callable[[int], None] | None) -> TenantSweep:
        result = TenantSweep(tenant_id)
        try:
            ring = await self.keyring.for_tenant(tenant_id)
        except keys.DecryptionError:
            log.warning("retention: tenant without usable keys skipped")
            return result
        now = self.clock.now()
        cutoffs = self.cutoffs(await self.policy(tenant_id), now)
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
            for data_class in SWEPT_CLASSES:
                cursor = ("", "")
                first = True
                while True:
                    batch = await self._sweep_batch(tenant_id, ring, data_class,
                                                    cutoffs[data_class], cursor, report.run_id,
                                                    unlinked)
                    unlinked = []
                    await finish_unlink()
                    if batch.tenant_held:
                        result.held = True
                        break
                    if first and batch.first_deleted_time is not None:
                        lag = parse_iso(cutoffs[data_class]) - parse_iso(
                            batch.first_deleted_time)
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
                        unlinking = (asyncio.create_task(self._unlink(tenant_id, batch.blobs)),
                                     batch.blobs)
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
            await self._clear_tombstones(unlinked)
        if any(result.deleted.values()):
            if self.ingest is not None and result.deleted.get("call_metadata"):
                self.ingest.forget_known_calls()
            await self._append(tenant_id, {
                "kind": "deletion_receipt", "actor": SYSTEM_ACTOR, "outcome": "run_completed",
                "details": {"run_id": report.run_id, "trigger": "retention_sweep",
                            "started_at": report.started_at,
                            "finished_at": isoformat(self.clock.now()),
                            "deleted": result.deleted, "batches": result.batches,
                            "kept": result.kept}})
        return result

    async def _sweep_batch(self, tenant_id: str, ring: keys.TenantKeys, data_class: str,
                           cutoff: str, cursor: tuple[str, str], run_id: str,
                           clear_tombstones: list[str]) -> _BatchResult:
        now = isoformat(self.clock.now())
        limit = self.cfg.batch_size
        audit = self.audit

        def unit(tx: WriteTx) -> _BatchResult:
            if clear_tombstones:
                tx.execute(f"DELETE FROM blob_tombstones WHERE object_id IN"
                           f" ({_in(clear_tombstones)})", clear_tombstones)
            holds = self.holds_tx(tx, tenant_id, ring)
            if holds.tenant:
                return _BatchResult(stop=True, tenant_held=True)
            rows = tx.fetchall(_SELECTS[data_class], {
                "tenant": tenant_id, "cutoff": cutoff, "ct": cursor[0], "cid": cursor[1],
                "now": now, "limit": limit})
            out = _BatchResult(stop=len(rows) < limit, examined=len(rows))
            if not rows:
                return out
            out.cursor = (rows[-1]["t"], rows[-1]["item_id"])
            doomed = []
            for row in rows:
                verdict = classify(row, holds, ring)
                if verdict == "delete":
                    if out.first_deleted_time is None:
                        out.first_deleted_time = row["t"]
                    doomed.append(row["item_id"])
                else:
                    out.kept[verdict] = out.kept.get(verdict, 0) + 1
            if not doomed:
                return out
            counts, blobs = _delete_items_tx(tx, data_class, doomed)
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

        return await self.db.write(unit)

    # -- blobs ----------------------------------------------------------------------------
    async def remove_blobs(self, tenant_id: str, object_ids: list[str]) -> None:
        """After a commit that deleted recording rows (their keys and rows gone, their
        tombstones written): unlink the files, then clear the tombstones."""
        if object_ids:
            await self._unlink(tenant_id, object_ids)
            await self._clear_tombstones(object_ids)

    async def _unlink(self, tenant_id: str, object_ids: list[str]) -> None:
        for i in range(0, len(object_ids), _TOMBSTONE_CHUNK):
            await self.blobs.delete_many(tenant_id, object_ids[i:i + _TOMBSTONE_CHUNK])

    async def _clear_tombstones(self, object_ids: list[str]) -> None:
        await self.db.write(lambda tx: tx.execute(
            f"DELETE FROM blob_tombstones WHERE object_id IN ({_in(object_ids)})", object_ids))

    async def collect_tombstones(self) -> int:
        """Unlink the files of every tombstone left (a crash's leftovers, and recordings
        deleted by a cascade); tenants being offboarded are left to the offboarding, which
        removes their whole directory. Returns how many."""
        total = 0
        after = ""
        while True:
            rows = await self.db.fetchall(
                "SELECT object_id, tenant_id FROM blob_tombstones b WHERE object_id > ?"
                " AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = b.tenant_id"
                " AND t.state = 'offboarding') ORDER BY object_id LIMIT ?",
                (after, _TOMBSTONE_CHUNK))
            if not rows:
                return total
            after = rows[-1]["object_id"]
            by_tenant: dict[str, list[str]] = {}
            for row in rows:
                by_tenant.setdefault(row["tenant_id"], []).append(row["object_id"])
            for tenant_id, ids in by_tenant.items():
                await self._unlink(tenant_id, ids)
            await self._clear_tombstones([r["object_id"] for r in rows])
            total += len(rows)

    async def scan_orphans(self) -> dict[str, int]:
        """The full check (rare; `orphan_scan_interval_seconds`): data keys with no
        recording row, and blob files with no recording row. Safe while others write: a
        recording's row is committed before its file exists, and the rows are read after
        the files are listed."""
        self._last_orphan_scan = time.monotonic()
        counts = {"keys": 0, "files": 0}
        orphan_keys = [r[0] for r in await self.db.fetchall(
            "SELECT object_id FROM blob_keys k WHERE NOT EXISTS"
            " (SELECT 1 FROM recordings r WHERE r.id = k.object_id)")]
        for i in range(0, len(orphan_keys), _TOMBSTONE_CHUNK):
            chunk = orphan_keys[i:i + _TOMBSTONE_CHUNK]
            counts["keys"] += await self.db.write(lambda tx, chunk=chunk: tx.execute(
                f"DELETE FROM blob_keys WHERE object_id IN ({_in(chunk)}) AND NOT EXISTS"
                " (SELECT 1 FROM recordings r WHERE r.id = blob_keys.object_id)", chunk))
        files = await asyncio.to_thread(self._list_blob_files)
        for i in range(0, len(files), _TOMBSTONE_CHUNK):
            chunk = files[i:i + _TOMBSTONE_CHUNK]
            ids = [o for _, o in chunk]
            known = {r[0] for r in await self.db.fetchall(
                f"SELECT id FROM recordings WHERE id IN ({_in(ids)})", ids)}
            gone = [(t, o) for t, o in chunk if o not in known]
            for tenant_id, object_id in gone:
                await self.blobs.delete(tenant_id, object_id)
            counts["files"] += len(gone)
        if any(counts.values()):
            log.info("retention: orphans removed: %s", json.dumps(counts))
        return counts

    def _list_blob_files(self) -> list[tuple[str, str]]:
        out = []
        root = self.blobs.root
        if not root.exists():
            return out
        for tenant_dir in root.iterdir():
            if tenant_dir == self.blobs.tmp_dir or not tenant_dir.is_dir():
                continue
            for shard in tenant_dir.iterdir():
                if shard.is_dir():
                    out.extend((tenant_dir.name, f.name) for f in shard.iterdir()
                               if len(f.name) == 36)
        return out

    # -- preview --------------------------------------------------------------------------
    async def preview(self, tenant_id: str) -> dict[str, Any]:
        """What the next sweep would delete for this tenant, per class, with what it keeps
        and why. Read-only; mirrors the sweep's order (calls take their children along)."""
        result = await self._preview_tenant(tenant_id, None)
        policy = await self.policy(tenant_id)
        cutoffs = self.cutoffs(policy, self.clock.now())
        classes = {}
        for name in SWEPT_CLASSES:
            kept = result.kept.get(name, {})
            classes[name] = {"days": policy[name], "cutoff": cutoffs[name],
                             "would_delete": result.deleted.get(name, 0),
                             "held": kept.get("held", 0),
                             "restricted": kept.get("restricted", 0),
                             "in_use": kept.get("busy", 0)}
        classes["audit"] = {"days": policy["audit"], "would_delete": 0, "enforced": False}
        return {"as_of": isoformat(self.clock.now()), "tenant_held": result.held,
                "classes": classes}

    async def _preview_tenant(self, tenant_id: str, progress: Callable[[int], None] | None
                              ) -> TenantSweep:
        result = TenantSweep(tenant_id)
        try:
            ring = await self.keyring.for_tenant(tenant_id)
        except keys.DecryptionError:
            return result
        holds = await self.holds(tenant_id, ring)
        if holds.tenant:
            result.held = True
            return result
        now = self.clock.now()
        cutoffs = self.cutoffs(await self.policy(tenant_id), now)
        gone_calls: set[str] = set()
        gone_recordings: set[str] = set()
        for data_class in SWEPT_CLASSES:
            cursor = ("", "")
            while True:
                rows = await self.db.fetchall(_SELECTS[data_class], {
                    "tenant": tenant_id, "cutoff": cutoffs[data_class], "ct": cursor[0],
                    "cid": cursor[1], "now": isoformat(now), "limit": _PREVIEW_CHUNK})
                if not rows:
                    break
                cursor = (rows[-1]["t"], rows[-1]["item_id"])
                doomed = []
                for row in rows:
                    if row["call_id"] in gone_calls or (
                            data_class == "diagnostics" and row["item_id"] in gone_recordings):
                        continue  # already counted: it goes with its call or recording
                    verdict = classify(row, holds, ring)
                    if verdict == "delete":
                        doomed.append(row["item_id"])
                    else:
                        result.keep(data_class, verdict)
                result.deleted[data_class] += len(doomed)
                if data_class == "call_metadata" and doomed:
                    gone_calls.update(doomed)
                    marks = _in(doomed)
                    events = await self.db.fetchone(
                        f"SELECT COUNT(*) FROM call_events WHERE call_id IN ({marks})", doomed)
                    result.deleted["call_events"] += events[0]
                    rec_rows = await self.db.fetchall(
                        f"SELECT id FROM recordings WHERE call_id IN ({marks})", doomed)
                    result.deleted["recordings"] += len(rec_rows)
                    gone_recordings.update(r[0] for r in rec_rows)
                elif data_class == "recordings":
                    gone_recordings.update(doomed)
                if progress is not None:
                    progress(len(rows))
                if len(rows) < _PREVIEW_CHUNK:
                    break
        return result

    # -- the scheduler --------------------------------------------------------------------
    async def start(self) -> None:
        if self.cfg.sweep_interval_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention-sweep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sweep_interval_seconds)
            try:
                report = await self.sweep()
                totals = report.totals()
                if any(totals.values()):
                    log.info("retention sweep: %s", json.dumps(totals))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("retention sweep failed: %s", type(exc).__name__)

    # -- audit ----------------------------------------------------------------------------
    async def _append(self, tenant_id: str, entry: dict[str, Any]) -> int | None:
        if self.audit is None:
            return None
        return await self.audit.append(tenant_id, entry)


def _parse_time(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid(name, "must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, "must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise invalid(name, "must carry a time zone")
    return parsed


# -- wiring --------------------------------------------------------------------------------
def get_retention(services: Any) -> RetentionService:
    """The gateway's RetentionService, created on first use (app or CLI)."""
    existing = services.features.get("retention")
    if existing is not None:
        return existing
    from gateway.transparency.log import get_audit_log

    service = RetentionService(
        services.db, services.keyring, services.blobs, services.clock,
        services.config.section("retention"), audit=get_audit_log(services),
        registry=services.metrics.registry, ingest=services.ingest,
        default_region=services.config.privacy.default_region)
    services.features["retention"] = service
    return service


async def startup(app: Any, services: Any) -> None:
    """Feature hook: the in-process sweep every `sweep_interval_seconds`."""
    service = get_retention(services)
    await start_for_app_lifetime(app, service)


def _configure_run(parser: Any) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be deleted; change nothing")
    parser.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    parser.add_argument("--orphans", action="store_true",
                        help="also scan the blob store for orphaned files and keys")


async def _cmd_run(args: Any, config: Any) -> int:
    from gateway.services import open_services

    services = await open_services(config)
    try:
        service = get_retention(services)
        bar = None
        if sys.stdout.isatty() and not args.json:
            bar = ProgressBar(await service.estimate(args.tenant))
        report = await service.sweep(dry_run=args.dry_run, tenant_ids=args.tenant,
                                     progress=bar.advance if bar else None)
        if args.orphans and not args.dry_run:
            report.orphans = await service.scan_orphans()
        if bar is not None:
            bar.close()
    finally:
        await services.close()
    data = report.as_dict()
    if args.json:
        print(json.dumps(data))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        parts = ", ".join(f"{k} {v}" for k, v in data["deleted"].items())
        print(f"retention {verb}: {parts} ({len(report.tenants)} tenants,"
              f" {data['duration_seconds']} s)")
        held = [t.tenant_id for t in report.tenants if t.held]
        if held:
            print(f"tenants under a legal hold (nothing deleted): {', '.join(held)}")
    return 0


cli_commands = [(("retention", "run"), _configure_run, _cmd_run)]
