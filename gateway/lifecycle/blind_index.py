"""Blind index per tenant: its width chosen from the tenant's size, reindexing as a
resumable job, and blind-index key (BIK) rotation (docs/retention-and-dsr.md "Blind-index
width"; the index itself: docs/crypto-formats.md "Blind index").

State: one `blind_index_state` row per tenant says which (BIK version, bits) its rows are
indexed under and, while a reindex runs, the target (version, bits), the phase and a
cursor. The key ring (gateway/tenants/keyring.py) indexes new rows under the target and
matches lookups under both, so a search, erasure or hold never misses mid-way.

Planner. With N distinct numbers hashed into 2**bits buckets, the expected number of
OTHER numbers sharing a number's bucket is (N - 1) / 2**bits. It must stay between 2 (the
index never singles a number out: the call graph stays hidden) and sqrt(N) (a lookup
decrypts about that many numbers' calls). When a tenant's width is out of that range the
planner starts a reindex to

    bits = floor(log2((N - 1) / 2)), clamped to 1..32

the widest index that keeps at least 2 others per bucket (2 to 4 others right after a
reindex; within range until N grows about sqrt-fold or shrinks below half). N is
estimated from the index itself: the number of party values (from and to of every call;
an upper bound), or, while the distinct index values D occupy under half of the m =
2**bits buckets, linear counting (Whang et al. 1990: N ~ m ln(m / (m - D))), which is
how a tenant whose calls repeat a few numbers gets narrowed.

Reindex phases: `waiting` (until `scan_after` = start + `[keys] grace_seconds`, longer
than any process's key-ring cache, so every process indexes new rows under the target),
`calls` then `holds` (rows in id order, `[keys] rotation_batch_size` at a time, indexes
recomputed from the sealed parties and held numbers; each batch commits its rows with the
cursor), then completion: the target becomes the tenant's index and a BIK version no
longer used is deleted from `tenant_keys`, logged as a key_event; then `shred`: the tenant
root key is rotated (gateway/tenants/root_rotation.py), so the deleted version's row in a
database backup, wrapped under the old tenant root key, opens under nothing that exists.

Invariants:
- At most one reindex per tenant (the state row holds it); it is advanced only by the
  process holding its lease (`owner`, `lease_until`), renewed with every batch.
- A row is rewritten only if its sealed parties are still the ones read (compare-and-set):
  a concurrent rectification, written under the target already, wins.
- A BIK version is destroyed only after every row was reindexed away from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.core.jobs import PeriodicJob
from gateway.errors import DomainError
from gateway.ingest.pipeline import PARTIES_RECORD
from gateway.lifecycle.holds import HOLD_NUMBER_RECORD
from gateway.lifecycle.settings import KeysConfig
from gateway.store import Database, WriteTx
from gateway.tenants.keyring import KeyRing
from gateway.tenants.root_rotation import destroyed_versions_shredder
from gateway.transparency.log import get_audit_log

log = logging.getLogger("gateway.blind_index")

MIN_BITS = 1
MAX_BITS = 32
SYSTEM_ACTOR = {"type": "system", "id": "blind-index"}
_PHASES = ("waiting", "calls", "holds")


# -- the planner ----------------------------------------------------------------------------
def others_per_bucket(bits: int, numbers: int) -> float:
    """Expected number of other numbers sharing a number's bucket."""
    return max(numbers - 1, 0) / 2 ** bits


def in_range(bits: int, numbers: int) -> bool:
    """Whether `bits` keeps 2 <= others per bucket <= sqrt(numbers) (the bounds 1 and 32
    count as in range on their side: nothing narrower or wider exists)."""
    load = others_per_bucket(bits, numbers)
    return (load >= 2 or bits <= MIN_BITS) and (load <= math.sqrt(numbers) or bits >= MAX_BITS)


def planned_bits(numbers: int) -> int:
    """floor(log2((numbers - 1) / 2)) clamped to 1..32: at least 2 others per bucket."""
    half = max(numbers - 1, 0) // 2
    return min(max(half.bit_length() - 1, MIN_BITS), MAX_BITS)


def estimate_numbers(party_values: int, distinct_indexes: int, bits: int) -> int:
    """Distinct numbers behind a tenant's index: its party values (an upper bound), or,
    while the distinct index values fill under half the buckets (there linear counting is
    accurate, and the index is far too wide anyway), the linear-counting estimate. Near a
    planned width the upper bound alone decides, so the estimate's noise never flips it."""
    buckets = 2 ** bits
    if 2 * distinct_indexes >= buckets:
        return party_values
    estimate = buckets * math.log(buckets / (buckets - distinct_indexes))
    return min(party_values, max(distinct_indexes, round(estimate)))


class _LostLease(Exception):
    """Another process took the reindex over: this unit's writes are rolled back."""


class BlindIndexService:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, cfg: KeysConfig, *,
                 check_seconds: float, audit: Any = None,
                 shred_wrapped_copies: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.db = db
        # (tenant id) -> rotates the tenant root key after a BIK version was deleted.
        self.shred_wrapped_copies = shred_wrapped_copies
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.check_seconds = check_seconds
        self.audit = audit
        self.owner = uuid.uuid4().hex
        self._reindex_job: PeriodicJob | None = None
        self._planner_job: PeriodicJob | None = None
        # One advance at a time in this process (the job, the CLI, a test).
        self._lock = asyncio.Lock()

    # -- status ---------------------------------------------------------------------------
    async def state(self, tenant_id: str) -> dict[str, Any]:
        await self.keyring.for_tenant(tenant_id)    # stores the state of an older tenant
        row = await self.db.fetchone("SELECT * FROM blind_index_state WHERE tenant_id = ?",
                                     (tenant_id,))
        out: dict[str, Any] = {"bik_version": row["bik_version"], "bits": row["bits"],
                               "planned_numbers": row["planned_numbers"],
                               "planned_at": row["planned_at"], "reindex": None}
        if row["phase"] is not None:
            out["reindex"] = {"to_bik_version": row["next_bik_version"],
                              "to_bits": row["next_bits"], "reason": row["reason"],
                              "phase": row["phase"], "rows_done": row["done"],
                              "started_at": row["started_at"], "scan_after": row["scan_after"]}
        return out

    # -- starting a reindex ---------------------------------------------------------------
    async def start_reindex(self, tenant_id: str, *, bits: int | None = None,
                            rotate_key: bool = False, reason: str = "operator",
                            actor: dict[str, str] | None = None) -> bool:
        """Start moving the tenant's index to `bits` (default: its current width) and, with
        `rotate_key`, to a new BIK version. False if there is nothing to change; 409 if a
        reindex is already under way."""
        if bits is not None and not MIN_BITS <= bits <= MAX_BITS:
            raise ValueError("bits must be between 1 and 32")
        await self.keyring.for_tenant(tenant_id)    # fails for a tenant without keys
        wrapping = await self.keyring.wrapping_key(tenant_id)
        now = self.clock.now()
        scan_after = isoformat(now + timedelta(seconds=self.cfg.grace_seconds))
        audit = self.audit

        def unit(tx: WriteTx) -> bool:
            row = tx.fetchone("SELECT * FROM blind_index_state WHERE tenant_id = ?",
                              (tenant_id,), for_update=True)
            if row["phase"] is not None:
                raise DomainError(409, "reindex-in-progress",
                                  "a blind-index reindex is in progress",
                                  "wait until it completes (gateway keys status)")
            version, width = row["bik_version"], bits or row["bits"]
            if rotate_key:
                top = tx.fetchone("SELECT MAX(version) FROM tenant_keys WHERE tenant_id = ?"
                                  " AND kind = 'bik'", (tenant_id,))[0]
                version = top + 1
                wrapped = keys.new_bik_version(wrapping, uuid.UUID(tenant_id), version)
                tx.execute("INSERT INTO tenant_keys (tenant_id, kind, version, wrapped,"
                           " created_at) VALUES (?, 'bik', ?, ?, ?)",
                           (tenant_id, version, wrapped.wrapped, isoformat(now)))
            elif width == row["bits"]:
                return False
            tx.execute(
                "UPDATE blind_index_state SET next_bik_version = ?, next_bits = ?, reason = ?,"
                " phase = 'waiting', cursor = '', done = 0, scan_after = ?, started_at = ?,"
                " owner = NULL, lease_until = NULL, updated_at = ? WHERE tenant_id = ?",
                (version, width, reason, scan_after, isoformat(now), isoformat(now), tenant_id))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": actor or SYSTEM_ACTOR,
                    "outcome": "blind_index_reindex_started",
                    "details": {"reason": reason,
                                "from": {"bik_version": row["bik_version"], "bits": row["bits"]},
                                "to": {"bik_version": version, "bits": width}}})
            return True

        started = await self.db.write(unit)
        if started:
            self.keyring.forget(tenant_id)
            if self._reindex_job is not None:
                self._reindex_job.wake()
        return started

    # -- the planner ----------------------------------------------------------------------
    async def _estimate(self, tenant_id: str, bits: int) -> int:
        counts = await self.db.fetchone(
            "SELECT COUNT(from_index), COUNT(to_index) FROM calls WHERE tenant_id = ?",
            (tenant_id,))
        distinct = await self.db.fetchone(
            "SELECT COUNT(*) FROM (SELECT from_index AS i FROM calls WHERE tenant_id = ? AND"
            " from_index IS NOT NULL UNION SELECT to_index AS i FROM calls WHERE"
            " tenant_id = ? AND to_index IS NOT NULL) AS u", (tenant_id, tenant_id))
        return estimate_numbers(counts[0] + counts[1], distinct[0], bits)

    async def check_plans(self) -> list[str]:
        """Check every active tenant's width against its size; start a reindex where it is
        out of range. Returns the tenants whose reindex it started."""
        started = []
        rows = await self.db.fetchall(
            "SELECT t.id FROM tenants t WHERE t.state = 'active' ORDER BY t.id")
        for row in rows:
            tenant_id = row["id"]
            try:
                state = await self.state(tenant_id)
            except keys.DecryptionError:
                continue
            if state["reindex"] is not None:
                continue
            numbers = await self._estimate(tenant_id, state["bits"])
            now = isoformat(self.clock.now())
            await self.db.write(lambda tx, p=(numbers, now, tenant_id): tx.execute(
                "UPDATE blind_index_state SET planned_numbers = ?, planned_at = ?"
                " WHERE tenant_id = ?", p))
            target = planned_bits(numbers)
            if in_range(state["bits"], numbers) or target == state["bits"]:
                continue
            try:
                if await self.start_reindex(tenant_id, bits=target, reason="planner"):
                    started.append(tenant_id)
            except DomainError:
                continue    # a rotation started meanwhile: checked again next time
        return started

    # -- the reindex ----------------------------------------------------------------------
    async def run_pending(self, max_batches: int | None = None) -> bool:
        """Advance every reindex this process can claim; True if one has a batch to do
        now (the job runs again at once). `max_batches` bounds the batches (tests)."""
        async with self._lock:
            now = isoformat(self.clock.now())
            rows = await self.db.fetchall(
                "SELECT tenant_id FROM blind_index_state WHERE phase IS NOT NULL AND"
                " (lease_until IS NULL OR lease_until < ? OR owner = ?) ORDER BY started_at",
                (now, self.owner))
            more = False
            for row in rows:
                if await self._claim(row["tenant_id"]):
                    more = await self._advance(row["tenant_id"], max_batches) or more
            return more

    def _lease(self) -> str:
        return isoformat(self.clock.now() + timedelta(seconds=self.cfg.lease_seconds))

    async def _claim(self, tenant_id: str) -> bool:
        now = isoformat(self.clock.now())
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE blind_index_state SET owner = ?, lease_until = ? WHERE tenant_id = ? AND"
            " phase IS NOT NULL AND (lease_until IS NULL OR lease_until < ? OR owner = ?)",
            (self.owner, self._lease(), tenant_id, now, self.owner))))

    async def _advance(self, tenant_id: str, max_batches: int | None) -> bool:
        tenant = await self.db.fetchone("SELECT state FROM tenants WHERE id = ?", (tenant_id,))
        if tenant is None or tenant["state"] in ("offboarding", "offboarded"):
            return False
        row = await self.db.fetchone("SELECT * FROM blind_index_state WHERE tenant_id = ?",
                                     (tenant_id,))
        if row["phase"] == "shred":
            await self._shred(tenant_id)
            return False
        if row["phase"] == "waiting":
            if self.clock.now() < parse_iso(row["scan_after"]):
                return False
            await self._save(tenant_id, phase="calls", cursor="")
            row = await self.db.fetchone("SELECT * FROM blind_index_state WHERE tenant_id = ?",
                                         (tenant_id,))
        self.keyring.forget(tenant_id)
        ring = await self.keyring.for_tenant(tenant_id)
        target = (row["next_bik_version"], row["next_bits"])
        if ring.blind_index_versions[0] != target:  # pragma: no cover - the state names it
            raise RuntimeError("key ring does not index under the reindex target")
        phase, cursor, batches = row["phase"], row["cursor"] or "", 0
        try:
            while phase in ("calls", "holds"):
                if max_batches is not None and batches >= max_batches:
                    return True
                batches += 1
                batch = self._calls_batch if phase == "calls" else self._holds_batch
                cursor, count = await batch(tenant_id, ring, cursor)
                if count < self.cfg.rotation_batch_size:
                    phase, cursor = ("holds", "") if phase == "calls" else ("done", "")
                    if phase == "holds":
                        await self._save(tenant_id, phase="holds", cursor="")
            await self._complete(tenant_id, row)
        except _LostLease:
            return False
        return False

    async def _save(self, tenant_id: str, **fields: Any) -> None:
        fields["lease_until"] = self._lease()
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.write(lambda tx: tx.execute(
            f"UPDATE blind_index_state SET {sets} WHERE tenant_id = ? AND owner = ?",
            (*fields.values(), tenant_id, self.owner)))

    def _commit_batch_tx(self, tx: WriteTx, tenant_id: str, cursor: str, count: int) -> None:
        if not tx.execute("UPDATE blind_index_state SET cursor = ?, done = done + ?,"
                          " lease_until = ?, updated_at = ? WHERE tenant_id = ? AND owner = ?",
                          (cursor, count, self._lease(), isoformat(self.clock.now()),
                           tenant_id, self.owner)):
            raise _LostLease()

    async def _calls_batch(self, tenant_id: str, ring: keys.TenantKeys, cursor: str
                             ) -> tuple[str, int]:
        # Every tenant's calls in primary-key order, this tenant's kept: no index of its
        # own for a rare walk (migration 0013 dropped calls_by_tenant_and_id, 82 bytes a
        # call), and one read per batch whatever the other tenants hold.
        scanned = await self.db.fetchall(
            "SELECT id, tenant_id, parties FROM calls WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, self.cfg.rotation_batch_size))
        rows = [r for r in scanned if r["tenant_id"] == tenant_id]
        await self.keyring.prefetch_units(tenant_id, [r["parties"] for r in rows
                                                      if r["parties"] is not None])
        updates = []
        for r in rows:
            if r["parties"] is None:
                continue
            try:
                parties = json.loads(ring.open_record(PARTIES_RECORD, r["id"],
                                                      bytes(r["parties"])))
            except keys.DecryptionError:
                continue    # its unit key was erased: the deletion ledger removes the row
            indexes = [ring.blind_index(parties[role]) if parties.get(role) else None
                       for role in ("from", "to")]
            updates.append((*indexes, r["id"], tenant_id, bytes(r["parties"])))
        last = scanned[-1]["id"] if scanned else cursor

        def unit(tx: WriteTx) -> None:
            for update in updates:
                tx.execute("UPDATE calls SET from_index = ?, to_index = ? WHERE id = ? AND"
                           " tenant_id = ? AND parties = ?", update)
            self._commit_batch_tx(tx, tenant_id, last, len(rows))

        await self.db.write(unit)
        return last, len(scanned)

    async def _holds_batch(self, tenant_id: str, ring: keys.TenantKeys, cursor: str
                           ) -> tuple[str, int]:
        rows = await self.db.fetchall(
            "SELECT id, number_sealed FROM legal_holds WHERE tenant_id = ? AND"
            " scope = 'phone_number' AND id > ? ORDER BY id LIMIT ?",
            (tenant_id, cursor, self.cfg.rotation_batch_size))
        await self.keyring.prefetch_units(tenant_id, [r["number_sealed"] for r in rows])
        updates = []
        for r in rows:
            try:
                number = ring.open_record(HOLD_NUMBER_RECORD, r["id"],
                                          bytes(r["number_sealed"]))
            except keys.DecryptionError:
                continue    # a released hold whose unit key is gone: nothing to match
            updates.append((ring.blind_index(number.decode()), r["id"], tenant_id))
        last = rows[-1]["id"] if rows else cursor

        def unit(tx: WriteTx) -> None:
            for update in updates:
                tx.execute("UPDATE legal_holds SET number_index = ? WHERE id = ? AND"
                           " tenant_id = ?", update)
            self._commit_batch_tx(tx, tenant_id, last, len(rows))

        await self.db.write(unit)
        return last, len(rows)

    async def _complete(self, tenant_id: str, row: Any) -> None:
        """The target becomes the tenant's index; a BIK version nothing is indexed under
        any more is destroyed."""
        version, bits = row["next_bik_version"], row["next_bits"]
        now = isoformat(self.clock.now())
        audit = self.audit

        def unit(tx: WriteTx) -> list[int]:
            done = tx.fetchone("SELECT done FROM blind_index_state WHERE tenant_id = ?",
                               (tenant_id,))[0]
            old = [r[0] for r in tx.fetchall(
                "SELECT version FROM tenant_keys WHERE tenant_id = ? AND kind = 'bik' AND"
                " version <> ? ORDER BY version", (tenant_id, version))]
            # With a version deleted, the state stays claimed in phase `shred` until the
            # tenant root key is rotated (a crash in between: the job finishes it).
            if not tx.execute(
                    "UPDATE blind_index_state SET bik_version = ?, bits = ?,"
                    " next_bik_version = NULL, next_bits = NULL, reason = NULL, phase = ?,"
                    " cursor = NULL, scan_after = NULL, updated_at = ?"
                    " WHERE tenant_id = ? AND owner = ?",
                    (version, bits, "shred" if old else None, now, tenant_id, self.owner)):
                raise _LostLease()
            if not old:
                tx.execute("UPDATE blind_index_state SET owner = NULL, lease_until = NULL"
                           " WHERE tenant_id = ?", (tenant_id,))
            tx.execute("DELETE FROM tenant_keys WHERE tenant_id = ? AND kind = 'bik' AND"
                       " version <> ?", (tenant_id, version))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": SYSTEM_ACTOR,
                    "outcome": "blind_index_reindexed",
                    "details": {"reason": row["reason"], "rows": done,
                                "bik_version": version, "bits": bits,
                                "bik_versions_destroyed": old}})
            return old

        destroyed = await self.db.write(unit)
        self.keyring.forget(tenant_id)
        if destroyed:
            await self._shred(tenant_id)
        log.info("blind index reindexed: %d bits, %d BIK version(s) destroyed",
                 bits, len(destroyed))

    async def _shred(self, tenant_id: str) -> None:
        if self.shred_wrapped_copies is not None:
            await self.shred_wrapped_copies(tenant_id)
        await self.db.write(lambda tx: tx.execute(
            "UPDATE blind_index_state SET phase = NULL, owner = NULL, lease_until = NULL"
            " WHERE tenant_id = ? AND phase = 'shred'", (tenant_id,)))

    # -- background jobs ------------------------------------------------------------------
    async def start(self) -> None:
        """The reindex job (at once: a stopped process may have left one, then every
        `[keys] poll_interval_seconds` or when woken) and the planner (every
        `[privacy] blind_index_check_seconds`; 0: off)."""
        if self._reindex_job is None:
            self._reindex_job = PeriodicJob("blind-index-reindex", self.run_pending,
                                            self.cfg.poll_interval_seconds, run_at_start=True)
            await self._reindex_job.start()
        if self._planner_job is None:
            self._planner_job = PeriodicJob("blind-index-planner", self._plan_tick,
                                            self.check_seconds)
            await self._planner_job.start()

    async def _plan_tick(self) -> bool:
        if await self.check_plans() and self._reindex_job is not None:
            self._reindex_job.wake()
        return False

    async def stop(self) -> None:
        for job in (self._planner_job, self._reindex_job):
            if job is not None:
                await job.stop()
        self._planner_job = self._reindex_job = None


def get_blind_index_service(services: Any) -> BlindIndexService:
    existing = services.features.get("blind_index")
    if existing is not None:
        return existing
    audit = get_audit_log(services)
    service = BlindIndexService(
        services.db, services.keyring, services.clock, services.config.section("keys"),
        check_seconds=services.config.privacy.blind_index_check_seconds, audit=audit,
        shred_wrapped_copies=destroyed_versions_shredder(services, audit))
    services.features["blind_index"] = service
    return service
