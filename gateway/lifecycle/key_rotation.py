"""Key rotation (new KEK version, background rewrap and reseal, destruction of the old
version) and tenant offboarding (every key destroyed, every row and blob deleted, a
receipt kept).

Rotation, step by step (docs/retention-and-dsr.md):

1. `start_rotation` adds KEK version n+1 (wrapped like the others, under the tenant's
   root key file) in one transaction with a `key_rotations` row; from then on every new
   seal and every new blob's data key uses n+1 (the highest version is primary).
2. The job walks each sealed column (SEALED_COLUMNS) and the data-key table in batches:
   records are resealed (`reseal_record`), data keys rewrapped (`rewrap_dek`). Blob files
   are never read or written: a blob's data key does not change, only its wrapping.
   Updates are compare-and-set on the old ciphertext, so a concurrent write wins.
   Progress (cursor, done, total per source) is saved with each batch: the job resumes
   where it stopped, in whichever process holds its lease.
3. It waits until `grace_until` (started_at + `[keys] grace_seconds`), longer than the key
   ring cache of every process sharing the database, so none still seals under n; then
   it counts what is still under an old version (by the version prefix of each
   ciphertext) and, if anything is, makes another pass.
4. When nothing uses the old versions, and no column it does not know holds ciphertext
   under them (a safety scan of every BLOB column of every tenant table), the old rows
   are deleted from `tenant_keys` (destroyed) and the ring reloaded. If the scan finds
   unknown ciphertext the rotation is `blocked` (retried after the lease) rather than
   destroy a key that still protects data.

Offboarding (`gateway tenant offboard ID`; there is no operator HTTP API yet, operators
have no HTTP credential): the tenant stops authenticating, its tenant root key file is
destroyed (every copy of its key rows, in the database or any backup of it, is from then
on wrapped under a key that no longer exists), then its key rows, every row of every
tenant table and its blob directory are deleted. The tenant row stays, renamed, state
`offboarded`, with the receipt. The tenant's audit log stays (it has no foreign key to
the tenant by design: the record of who touched what outlives the data).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import keys
from gateway.calls.recordings import META_RECORD
from gateway.config import ConfigError, register_section
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.core.jobs import cancel_and_wait, start_for_app_lifetime
from gateway.errors import DomainError, not_found
from gateway.ingest.integrations import CREDENTIALS_RECORD
from gateway.ingest.pipeline import EVENT_RECORD, PARTIES_RECORD
from gateway.lifecycle.retention import HOLD_NUMBER_RECORD, HOLD_REASON_RECORD
from gateway.store.sqlite import Database, WriteTx
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.keys")

SYSTEM_ACTOR = {"type": "system", "id": "key-rotation"}
OPERATOR_ACTOR = {"type": "system", "id": "operator"}
OPEN_STATES = ("rewrapping", "waiting", "blocked")
# Sealed records are 0x01 | KEK version (uint32 BE) | ... (docs/crypto-formats.md, keys/
# _record.py); the shortest is 49 bytes (empty plaintext). The verification counts use
# this prefix in SQL instead of fetching every ciphertext.
_RECORD_FORMAT = 1
_MIN_SEALED_LEN = 49
_OFFBOARD_CHUNK = 2000


@dataclass
class KeysConfig:
    # Records resealed (or data keys rewrapped) per write unit.
    rotation_batch_size: int = 500
    # Old KEK versions are destroyed no earlier than this many seconds after a rotation
    # starts. Must exceed the key ring cache (30 s, gateway/keyring.py) plus the longest
    # request, so every process sharing the database seals under the new version first.
    grace_seconds: float = 120.0
    # How often the rotation job looks for work when nothing woke it.
    poll_interval_seconds: float = 5.0
    # A rotation claimed by a process stays its own this long without progress; then
    # another process takes it over (and a blocked rotation is re-checked).
    lease_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.rotation_batch_size <= 5000:
            raise ConfigError("keys.rotation_batch_size must be between 1 and 5000")
        if self.grace_seconds < 0 or self.poll_interval_seconds <= 0 or self.lease_seconds <= 0:
            raise ConfigError("keys: grace_seconds >= 0, intervals > 0")


register_section("keys", KeysConfig)


@dataclass(frozen=True)
class SealedColumn:
    """A column holding `seal_record(kind, <id column>, ...)` ciphertext of a tenant.

    `keyset` are the columns the job pages by, in the order of an index led by
    tenant_id (so each page is an index range), ending in a unique column."""

    table: str
    column: str
    kind: str
    id_column: str = "id"
    keyset: tuple[str, ...] = ("rowid",)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


# Every sealed column the rotation job reseals. A feature that seals data adds its column
# with `register_sealed_column` (the destroy step refuses while unknown ciphertext exists).
SEALED_COLUMNS: list[SealedColumn] = [
    SealedColumn("integrations", "credentials", CREDENTIALS_RECORD,
                 keyset=("created_at", "rowid")),
    SealedColumn("calls", "parties", PARTIES_RECORD, keyset=("sort_time", "id")),
    SealedColumn("call_events", "body", EVENT_RECORD, keyset=("received_at", "id")),
    SealedColumn("recordings", "meta", META_RECORD, keyset=("created_at", "id")),
    SealedColumn("recording_fetch_jobs", "request", "recording-fetch-request"),
    SealedColumn("legal_holds", "number_sealed", HOLD_NUMBER_RECORD),
    SealedColumn("legal_holds", "reason", HOLD_REASON_RECORD),
    SealedColumn("subject_requests", "subject", "subject-request",
                 keyset=("received_at", "id")),
]
BLOB_KEYS = "blob_keys.wrapped"
# BLOB columns of tenant tables that are not sealed records (or are handled apart).
_NOT_SEALED = {("tenant_keys", "wrapped"), ("blob_keys", "wrapped"),
               ("tenant_api_keys", "secret_hash")}


def register_sealed_column(column: SealedColumn) -> None:
    if all(c.name != column.name for c in SEALED_COLUMNS):
        SEALED_COLUMNS.append(column)


def _version_bytes(version: int) -> bytes:
    return bytes([_RECORD_FORMAT]) + version.to_bytes(4, "big")


class KeyService:
    def __init__(self, db: Database, keyring: KeyRing, blobs: Any, clock: Clock,
                 cfg: KeysConfig, *, audit: Any = None, integrations: Any = None,
                 ingest: Any = None) -> None:
        self.db = db
        self.keyring = keyring
        self.blobs = blobs
        self.clock = clock
        self.cfg = cfg
        self.audit = audit
        self.integrations = integrations
        self.ingest = ingest
        self.owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._tables: set[str] | None = None
        # One advance at a time in this process (the background job, the CLI, a test).
        self._lock = asyncio.Lock()

    async def _existing_tables(self) -> set[str]:
        if self._tables is None:
            rows = await self.db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
            self._tables = {r[0] for r in rows}
        return self._tables

    async def _sources(self) -> list[SealedColumn]:
        tables = await self._existing_tables()
        return [c for c in SEALED_COLUMNS if c.table in tables]

    # -- status ---------------------------------------------------------------------------
    async def status(self, tenant_id: str) -> dict[str, Any]:
        self.keyring.forget(tenant_id)
        ring = await self.keyring.for_tenant(tenant_id)
        path = self.keyring.tenant_key_path(tenant_id)
        return {"primary_version": ring.primary_version, "versions": list(ring.versions),
                "tenant_root_key": bool(path is not None and path.exists()),
                "rotation": await self.rotation(tenant_id, required=False)}

    async def rotation(self, tenant_id: str, *, required: bool = True) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM key_rotations WHERE tenant_id = ? ORDER BY started_at DESC, rowid"
            " DESC LIMIT 1", (tenant_id,))
        if row is None:
            if required:
                raise not_found("key rotation")
            return None
        return self._render(row)

    @staticmethod
    def _render(row: Any) -> dict[str, Any]:
        progress = json.loads(row["progress"])
        sources = progress.get("sources", {})
        total = sum(s.get("total", 0) for s in sources.values())
        done = sum(min(s.get("done", 0), s.get("total", 0)) for s in sources.values())
        return {"id": row["id"], "state": row["state"], "to_version": row["to_version"],
                "started_at": row["started_at"], "grace_until": row["grace_until"],
                "finished_at": row["finished_at"], "detail": row["detail"],
                "destroyed_versions": json.loads(row["destroyed"]) if row["destroyed"] else [],
                "progress": {"pass": progress.get("pass", 1), "items_total": total,
                             "items_done": done,
                             "percent": 100 if not total else int(100 * done / total),
                             "sources": {name: {k: v for k, v in s.items() if k != "cursor"}
                                         for name, s in sources.items()}}}

    # -- rotation -------------------------------------------------------------------------
    async def start_rotation(self, tenant_id: str, actor: dict[str, str]) -> dict[str, Any]:
        await self.keyring.for_tenant(tenant_id)  # fails for a tenant without keys
        wrapping = self.keyring.wrapping_key(tenant_id)
        now = self.clock.now()
        rotation_id = str(uuid.uuid4())
        audit = self.audit

        def unit(tx: WriteTx) -> int:
            busy = tx.fetchone(
                "SELECT id FROM key_rotations WHERE tenant_id = ? AND state IN"
                f" ({','.join('?' * len(OPEN_STATES))})", (tenant_id, *OPEN_STATES))
            if busy is not None:
                raise DomainError(409, "rotation-in-progress", "a key rotation is in progress",
                              "wait until it completes (GET /v1/keys/rotation)",
                              rotation_id=busy["id"])
            rows = tx.fetchall("SELECT version FROM tenant_keys WHERE tenant_id = ? AND"
                               " kind = 'kek' ORDER BY version", (tenant_id,))
            previous = [r[0] for r in rows]
            version = previous[-1] + 1
            wrapped = keys.new_kek_version(wrapping, uuid.UUID(tenant_id), version)
            tx.execute("INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, created_at)"
                       " VALUES (?, 'kek', ?, ?, ?)",
                       (tenant_id, version, wrapped.wrapped, isoformat(now)))
            tx.execute(
                "INSERT INTO key_rotations (id, tenant_id, to_version, state, progress,"
                " started_at, grace_until) VALUES (?, ?, ?, 'rewrapping', ?, ?, ?)",
                (rotation_id, tenant_id, version, json.dumps({"pass": 1, "sources": {}}),
                 isoformat(now), isoformat(now + timedelta(seconds=self.cfg.grace_seconds))))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": actor, "outcome": "rotation_started",
                    "details": {"rotation_id": rotation_id, "new_version": version,
                                "previous_versions": previous}})
            return version

        await self.db.write(unit)
        self.keyring.forget(tenant_id)
        self._wake.set()
        return await self.rotation(tenant_id)

    async def run_pending(self) -> int:
        """Advance every open rotation this process can claim; returns how many it
        touched. The background task calls this; tests and the CLI call it directly."""
        async with self._lock:
            self._tables = None  # a migration may have added tables since
            return await self._run_pending()

    async def _run_pending(self) -> int:
        now = isoformat(self.clock.now())
        rows = await self.db.fetchall(
            "SELECT id FROM key_rotations WHERE state IN"
            f" ({','.join('?' * len(OPEN_STATES))}) AND (lease_until IS NULL OR"
            " lease_until < ? OR owner = ?) ORDER BY started_at", (*OPEN_STATES, now, self.owner))
        touched = 0
        for row in rows:
            if await self._claim(row["id"]):
                touched += 1
                await self._advance(row["id"])
        return touched

    async def _claim(self, rotation_id: str) -> bool:
        now = isoformat(self.clock.now())
        lease = isoformat(self.clock.now() + timedelta(seconds=self.cfg.lease_seconds))
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE key_rotations SET owner = ?, lease_until = ? WHERE id = ? AND"
            " (lease_until IS NULL OR lease_until < ? OR owner = ?)",
            (self.owner, lease, rotation_id, now, self.owner))))

    async def _load(self, rotation_id: str) -> Any:
        return await self.db.fetchone("SELECT * FROM key_rotations WHERE id = ?", (rotation_id,))

    async def _save(self, rotation_id: str, **fields: Any) -> None:
        fields["lease_until"] = isoformat(self.clock.now()
                                          + timedelta(seconds=self.cfg.lease_seconds))
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.write(lambda tx: tx.execute(
            f"UPDATE key_rotations SET {sets} WHERE id = ? AND owner = ?",
            (*fields.values(), rotation_id, self.owner)))

    async def _advance(self, rotation_id: str) -> None:
        row = await self._load(rotation_id)
        tenant_id = row["tenant_id"]
        state = await self.db.fetchone("SELECT state FROM tenants WHERE id = ?", (tenant_id,))
        if state is None or state["state"] in ("offboarding", "offboarded"):
            return
        self.keyring.forget(tenant_id)
        ring = await self.keyring.for_tenant(tenant_id)
        if ring.primary_version != row["to_version"]:  # pragma: no cover - one open rotation
            await self._save(rotation_id, state="blocked", detail="primary version moved")
            return
        progress = json.loads(row["progress"])
        if row["state"] == "rewrapping":
            await self._rewrap_pass(rotation_id, tenant_id, ring, progress)
            await self._save(rotation_id, state="waiting", progress=json.dumps(progress))
        if self.clock.now() < parse_iso(row["grace_until"]):
            return
        leftovers = await self.count_old(tenant_id, ring.primary_version)
        if any(leftovers.values()):
            errors = sum(s.get("errors", 0) for s in progress["sources"].values())
            if errors:
                names = sorted(k for k, v in leftovers.items() if v)
                await self._save(rotation_id, state="blocked", progress=json.dumps(progress),
                                 detail="unreadable ciphertext under an old version in "
                                        + ", ".join(names), owner=None)
                return
            # Written by a process that had not switched yet: another pass picks them up.
            progress = {"pass": progress.get("pass", 1) + 1, "sources": {}}
            await self._save(rotation_id, state="rewrapping", progress=json.dumps(progress))
            await self._rewrap_pass(rotation_id, tenant_id, ring, progress)
            await self._save(rotation_id, state="waiting", progress=json.dumps(progress))
            if any((await self.count_old(tenant_id, ring.primary_version)).values()):
                return  # the next run of the job looks again
        unknown = await self.unregistered_ciphertext(tenant_id, ring.primary_version)
        if unknown:
            await self._save(rotation_id, state="blocked", owner=None,
                             detail="ciphertext under an old version in unregistered"
                                    " column(s) " + ", ".join(unknown))
            return
        await self._destroy(rotation_id, tenant_id, ring.primary_version)

    async def _rewrap_pass(self, rotation_id: str, tenant_id: str, ring: keys.TenantKeys,
                           progress: dict[str, Any]) -> None:
        sources = progress.setdefault("sources", {})
        primary = ring.primary_version
        batch = self.cfg.rotation_batch_size
        for spec in await self._sources():
            state = sources.get(spec.name)
            if state is None:
                total = (await self.db.fetchone(
                    f"SELECT COUNT(*) FROM {spec.table} WHERE tenant_id = ? AND"
                    f" {spec.column} IS NOT NULL", (tenant_id,)))[0]
                state = sources[spec.name] = {"total": total, "done": 0, "resealed": 0,
                                              "errors": 0, "cursor": None, "finished": False}
            while not state["finished"]:
                rows = await self._page(spec, tenant_id, state["cursor"], batch)
                updates = await asyncio.to_thread(self._reseal, ring, spec, rows, primary, state)
                cursor = [rows[-1][c] for c in range(len(spec.keyset))] if rows else None
                state["done"] += len(rows)
                state["resealed"] += len(updates)
                state["finished"] = len(rows) < batch
                if cursor is not None:
                    state["cursor"] = cursor
                await self._write_updates(rotation_id, spec, updates, progress)
        state = sources.get(BLOB_KEYS)
        if state is None:
            total = (await self.db.fetchone(
                "SELECT COUNT(*) FROM blob_keys WHERE tenant_id = ?", (tenant_id,)))[0]
            state = sources[BLOB_KEYS] = {"total": total, "done": 0, "resealed": 0,
                                          "errors": 0, "cursor": None, "finished": False}
            state["done"] = total - (await self.db.fetchone(
                "SELECT COUNT(*) FROM blob_keys WHERE tenant_id = ? AND kek_version < ?",
                (tenant_id, primary)))[0]
        while not state["finished"]:
            cursor = state["cursor"] or [0, "", 0]
            rows = await self.db.fetchall(
                "SELECT kek_version, created_at, rowid AS rid, object_id, wrapped FROM blob_keys"
                " WHERE tenant_id = ? AND kek_version < ? AND (kek_version, created_at, rowid)"
                " > (?, ?, ?) ORDER BY kek_version, created_at, rowid LIMIT ?",
                (tenant_id, primary, *cursor, batch))
            updates = await asyncio.to_thread(self._rewrap, ring, rows, state)
            state["done"] += len(rows)
            state["resealed"] += len(updates)
            state["finished"] = len(rows) < batch
            if rows:
                state["cursor"] = [rows[-1]["kek_version"], rows[-1]["created_at"],
                                   rows[-1]["rid"]]
            await self._write_dek_updates(rotation_id, updates, primary, progress)

    async def _page(self, spec: SealedColumn, tenant_id: str, cursor: list | None,
                    limit: int) -> list[Any]:
        cols = ", ".join(spec.keyset)
        where = ""
        params: list[Any] = [tenant_id]
        if cursor is not None:
            where = f" AND ({cols}) > ({', '.join('?' * len(cursor))})"
            params.extend(cursor)
        return await self.db.fetchall(
            f"SELECT {cols}, rowid AS _rid, {spec.id_column} AS _rec,"
            f" {spec.column} AS _sealed FROM {spec.table} WHERE tenant_id = ?"
            f" AND {spec.column} IS NOT NULL{where} ORDER BY {cols} LIMIT ?", (*params, limit))

    @staticmethod
    def _reseal(ring: keys.TenantKeys, spec: SealedColumn, rows: list[Any], primary: int,
                state: dict[str, Any]) -> list[tuple[bytes, int, bytes]]:
        updates = []
        for row in rows:
            old = bytes(row["_sealed"])
            try:
                if keys.sealed_version(old) == primary:
                    continue
                new = ring.reseal_record(spec.kind, str(row["_rec"]), old)
            except (ValueError, keys.DecryptionError):
                state["errors"] += 1
                continue
            updates.append((new, row["_rid"], old))
        return updates

    @staticmethod
    def _rewrap(ring: keys.TenantKeys, rows: list[Any], state: dict[str, Any]
                ) -> list[tuple[bytes, str, bytes]]:
        updates = []
        for row in rows:
            old = bytes(row["wrapped"])
            try:
                new = ring.rewrap_dek(uuid.UUID(row["object_id"]), old)
            except (ValueError, keys.DecryptionError):
                state["errors"] += 1
                continue
            updates.append((new, row["object_id"], old))
        return updates

    async def _write_updates(self, rotation_id: str, spec: SealedColumn,
                             updates: list[tuple[bytes, int, bytes]],
                             progress: dict[str, Any]) -> None:
        lease = isoformat(self.clock.now() + timedelta(seconds=self.cfg.lease_seconds))
        snapshot = json.dumps(progress)

        def unit(tx: WriteTx) -> None:
            if updates:
                # Compare-and-set: a row rewritten meanwhile keeps its newer value.
                tx.executemany(f"UPDATE {spec.table} SET {spec.column} = ? WHERE rowid = ?"
                               f" AND {spec.column} = ?", updates)
            tx.execute("UPDATE key_rotations SET progress = ?, lease_until = ? WHERE id = ?",
                       (snapshot, lease, rotation_id))

        await self.db.write(unit)

    async def _write_dek_updates(self, rotation_id: str, updates: list[tuple[bytes, str, bytes]],
                                 primary: int, progress: dict[str, Any]) -> None:
        lease = isoformat(self.clock.now() + timedelta(seconds=self.cfg.lease_seconds))
        snapshot = json.dumps(progress)

        def unit(tx: WriteTx) -> None:
            if updates:
                tx.executemany("UPDATE blob_keys SET wrapped = ?, kek_version = ?"
                               " WHERE object_id = ? AND wrapped = ?",
                               [(new, primary, oid, old) for new, oid, old in updates])
            tx.execute("UPDATE key_rotations SET progress = ?, lease_until = ? WHERE id = ?",
                       (snapshot, lease, rotation_id))

        await self.db.write(unit)

    async def count_old(self, tenant_id: str, primary: int) -> dict[str, int]:
        """Per source, ciphertext still under a version other than `primary`."""
        prefix = _version_bytes(primary)
        out = {}
        for spec in await self._sources():
            out[spec.name] = (await self.db.fetchone(
                f"SELECT COUNT(*) FROM {spec.table} WHERE tenant_id = ? AND {spec.column}"
                f" IS NOT NULL AND substr({spec.column}, 1, 5) <> ?", (tenant_id, prefix)))[0]
        out[BLOB_KEYS] = (await self.db.fetchone(
            "SELECT COUNT(*) FROM blob_keys WHERE tenant_id = ? AND kek_version <> ?",
            (tenant_id, primary)))[0]
        return out

    async def unregistered_ciphertext(self, tenant_id: str, primary: int) -> list[str]:
        """BLOB columns of tenant tables, not registered, holding what looks like a sealed
        record under another version: the destroy step refuses while any exists."""
        known = {(c.table, c.column) for c in SEALED_COLUMNS} | _NOT_SEALED
        found = []
        for table in sorted(await self._existing_tables()):
            if table.startswith(("audit_", "sqlite_")):
                continue
            columns = await self.db.fetchall(f"PRAGMA table_info({table})")
            names = {c["name"] for c in columns}
            if "tenant_id" not in names:
                continue
            for col in columns:
                if (col["type"] or "").upper() != "BLOB" or (table, col["name"]) in known:
                    continue
                n = (await self.db.fetchone(
                    f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ? AND typeof({col['name']})"
                    f" = 'blob' AND length({col['name']}) >= ? AND substr({col['name']}, 1, 1)"
                    f" = ? AND substr({col['name']}, 1, 5) <> ?",
                    (tenant_id, _MIN_SEALED_LEN, bytes([_RECORD_FORMAT]),
                     _version_bytes(primary))))[0]
                if n:
                    found.append(f"{table}.{col['name']}")
        return found

    async def _destroy(self, rotation_id: str, tenant_id: str, primary: int) -> None:
        now = isoformat(self.clock.now())
        audit = self.audit

        def unit(tx: WriteTx) -> list[int]:
            old = [r[0] for r in tx.fetchall(
                "SELECT version FROM tenant_keys WHERE tenant_id = ? AND kind = 'kek' AND"
                " version < ? ORDER BY version", (tenant_id, primary))]
            tx.execute("DELETE FROM tenant_keys WHERE tenant_id = ? AND kind = 'kek' AND"
                       " version < ?", (tenant_id, primary))
            tx.execute("UPDATE key_rotations SET state = 'completed', finished_at = ?,"
                       " destroyed = ?, owner = NULL, lease_until = NULL, detail = NULL"
                       " WHERE id = ?", (now, json.dumps(old), rotation_id))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": SYSTEM_ACTOR, "outcome": "versions_destroyed",
                    "details": {"rotation_id": rotation_id, "destroyed_versions": old,
                                "primary_version": primary}})
            return old

        destroyed = await self.db.write(unit)
        self.keyring.forget(tenant_id)
        log.info("key rotation completed: %d old version(s) destroyed", len(destroyed))

    # -- the job --------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="key-rotation")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("key rotation job failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.cfg.poll_interval_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    # -- offboarding ----------------------------------------------------------------------
    async def offboard(self, tenant_id: str, *, override_holds: bool = False) -> dict[str, Any]:
        """Destroy every key of the tenant, delete its rows and blobs, keep the receipt.
        Resumable: run it again after a crash and it finishes; run it on an offboarded
        tenant and it removes anything written late, then returns the receipt."""
        row = await self.db.fetchone(
            "SELECT id, name, state, offboard_receipt FROM tenants WHERE id = ?", (tenant_id,))
        if row is None:
            raise not_found("tenant")
        now = isoformat(self.clock.now())
        if row["state"] not in ("offboarding", "offboarded"):
            holds = (await self.db.fetchone(
                "SELECT COUNT(*) FROM legal_holds WHERE tenant_id = ? AND released_at IS NULL"
                " AND (ends_at IS NULL OR ends_at > ?)", (tenant_id, now)))[0]
            if holds and not override_holds:
                raise DomainError(409, "legal-hold", "the tenant has active legal holds",
                              f"{holds} active hold(s): release them, or override them"
                              " explicitly (--override-holds)", holds=holds)
            receipt = {"tenant_id": tenant_id, "started_at": now,
                       "name_sha256": hashlib.sha256(row["name"].encode()).hexdigest(),
                       "legal_holds_overridden": holds}
            audit = self.audit

            def start(tx: WriteTx) -> None:
                tx.execute("UPDATE tenants SET state = 'offboarding', offboard_receipt = ?"
                           " WHERE id = ?", (json.dumps(receipt), tenant_id))
                tx.execute("DELETE FROM tenant_api_keys WHERE tenant_id = ?", (tenant_id,))
                if audit is not None:
                    audit.append_in_tx(tx, tenant_id, {
                        "kind": "key_event", "actor": OPERATOR_ACTOR,
                        "outcome": "offboarding_started",
                        "details": {"legal_holds_overridden": holds}})

            await self.db.write(start)
        else:
            receipt = json.loads(row["offboard_receipt"] or "{}")

        # Caches of decrypted credentials and known calls go first.
        if self.integrations is not None:
            for r in await self.db.fetchall("SELECT id FROM integrations WHERE tenant_id = ?",
                                            (tenant_id,)):
                self.integrations.forget(r["id"])
        # 1. Crypto-shred: the tenant root key file, then the wrapped key rows.
        path = self.keyring.tenant_key_path(tenant_id)
        file_destroyed = await asyncio.to_thread(keys.TenantRootKey.destroy, path) \
            if path is not None else False
        versions = [r[0] for r in await self.db.fetchall(
            "SELECT version FROM tenant_keys WHERE tenant_id = ? AND kind = 'kek'", (tenant_id,))]
        counts: dict[str, int] = dict(receipt.get("deleted_rows", {}))
        counts["tenant_keys"] = counts.get("tenant_keys", 0) + await self._delete_all(
            "tenant_keys", tenant_id)
        counts["blob_keys"] = counts.get("blob_keys", 0) + await self._delete_all(
            "blob_keys", tenant_id)
        self.keyring.forget(tenant_id)
        receipt["key_versions_destroyed"] = sorted(set(versions) | set(
            receipt.get("key_versions_destroyed", [])))
        receipt["tenant_root_key_destroyed"] = file_destroyed or receipt.get(
            "tenant_root_key_destroyed", False)
        if row["state"] != "offboarded":
            # Remember what is already destroyed, for the receipt of a resumed run.
            await self.db.write(lambda tx: tx.execute(
                "UPDATE tenants SET offboard_receipt = ? WHERE id = ?",
                (json.dumps({**receipt, "deleted_rows": counts}), tenant_id)))
        # 2. Every row of every tenant table (referencing tables first).
        for table in await self._tenant_tables():
            n = await self._delete_all(table, tenant_id)
            if n:
                counts[table] = counts.get(table, 0) + n
        if self.ingest is not None:
            self.ingest.forget_known_calls()
        # 3. The blobs (already unreadable: their data keys are gone).
        blob_dir_existed = await asyncio.to_thread((self.blobs.root / tenant_id).exists)
        await self.blobs.delete_tenant(tenant_id)
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM blob_tombstones WHERE tenant_id = ?", (tenant_id,)))
        # 4. The receipt.
        if row["state"] == "offboarded":
            late = sum(counts.values()) - sum(receipt.get("deleted_rows", {}).values())
            if late:
                receipt["late_rows_removed"] = receipt.get("late_rows_removed", 0) + late
                receipt["deleted_rows"] = counts
                await self.db.write(lambda tx: tx.execute(
                    "UPDATE tenants SET offboard_receipt = ? WHERE id = ?",
                    (json.dumps(receipt), tenant_id)))
            return receipt
        receipt.update({
            "finished_at": isoformat(self.clock.now()), "deleted_rows": counts,
            "blob_directory_deleted": blob_dir_existed or receipt.get(
                "blob_directory_deleted", False)})
        audit = self.audit

        def finish(tx: WriteTx) -> None:
            tx.execute("UPDATE tenants SET state = 'offboarded', name = ?, offboarded_at = ?,"
                       " offboard_receipt = ? WHERE id = ?",
                       (f"offboarded-{tenant_id}", receipt["finished_at"], json.dumps(receipt),
                        tenant_id))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": OPERATOR_ACTOR, "outcome": "tenant_offboarded",
                    "details": {"deleted_rows": counts,
                                "key_versions_destroyed": receipt["key_versions_destroyed"],
                                "tenant_root_key_destroyed":
                                    receipt["tenant_root_key_destroyed"]}})

        await self.db.write(finish)
        return receipt

    async def _tenant_tables(self) -> list[str]:
        """Tables with a tenant_id column whose rows are the tenant's data, ordered so a
        table is emptied before any table it references."""
        skip = {"tenants", "tenant_keys", "blob_keys", "blob_tombstones"}
        tables = [t for t in sorted(await self._existing_tables())
                  if t not in skip and not t.startswith(("audit_", "sqlite_"))]
        with_tenant = []
        refs: dict[str, set[str]] = {}
        for table in tables:
            cols = {c["name"] for c in await self.db.fetchall(f"PRAGMA table_info({table})")}
            if "tenant_id" in cols:
                with_tenant.append(table)
                refs[table] = {r["table"] for r in await self.db.fetchall(
                    f"PRAGMA foreign_key_list({table})")} - {table}
        ordered: list[str] = []
        remaining = set(with_tenant)
        while remaining:
            # A table nobody remaining references can go now.
            ready = sorted(t for t in remaining
                           if not any(t in refs[o] for o in remaining if o != t))
            if not ready:  # pragma: no cover - a reference cycle: cascades handle it
                ready = sorted(remaining)
            ordered.extend(ready)
            remaining -= set(ready)
        return ordered

    async def _delete_all(self, table: str, tenant_id: str) -> int:
        sql_row = await self.db.fetchone(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        without_rowid = sql_row is not None and "WITHOUT ROWID" in (sql_row[0] or "").upper()
        total = 0
        while True:
            if without_rowid:
                n = await self.db.write(lambda tx: tx.execute(
                    f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,)))
                return total + n
            n = await self.db.write(lambda tx: tx.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                " WHERE tenant_id = ? LIMIT ?)", (tenant_id, _OFFBOARD_CHUNK)))
            total += n
            if n < _OFFBOARD_CHUNK:
                return total


def get_key_service(services: Any) -> KeyService:
    existing = services.features.get("key_rotation")
    if existing is not None:
        return existing
    from gateway.transparency.log import get_audit_log

    service = KeyService(services.db, services.keyring, services.blobs, services.clock,
                         services.config.section("keys"), audit=get_audit_log(services),
                         integrations=services.integrations, ingest=services.ingest)
    services.features["key_rotation"] = service
    return service


async def startup(app: Any, services: Any) -> None:
    """Feature hook: the rotation job (resumes any rotation a stopped process left)."""
    service = get_key_service(services)
    await start_for_app_lifetime(app, service)


# -- CLI -----------------------------------------------------------------------------------
def _configure_offboard(parser: Any) -> None:
    parser.add_argument("tenant_id", help="the tenant's id (UUID)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask; required when stdin is not a terminal")
    parser.add_argument("--override-holds", action="store_true",
                        help="offboard even though legal holds are active (recorded in"
                             " the receipt)")


async def _cmd_offboard(args: Any, config: Any) -> int:
    from gateway.services import open_services

    try:
        tenant_id = str(uuid.UUID(args.tenant_id))
    except ValueError:
        print("gateway: tenant id must be a UUID", file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print("gateway: offboarding cannot be undone; pass --yes", file=sys.stderr)
            return 2
        typed = input(f"Offboarding destroys every key and all data of tenant {tenant_id}."
                      " Type the tenant id to confirm: ").strip()
        if typed != tenant_id:
            print("gateway: not confirmed", file=sys.stderr)
            return 1
    services = await open_services(config)
    try:
        receipt = await get_key_service(services).offboard(
            tenant_id, override_holds=args.override_holds)
    finally:
        await services.close()
    if args.json:
        print(json.dumps(receipt))
    else:
        rows = sum(receipt.get("deleted_rows", {}).values())
        print(f"tenant {tenant_id} offboarded: {len(receipt.get('key_versions_destroyed', []))}"
              f" key version(s) destroyed, {rows} rows deleted, blobs deleted")
        if not receipt.get("tenant_root_key_destroyed"):
            print("warning: this tenant had no tenant root key file (created before tenant"
                  " key files): its rows in database backups stay readable with the root key")
    return 0


def _configure_rotate(parser: Any) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant's id (UUID)")
    parser.add_argument("--wait", action="store_true",
                        help="stay until the old version is destroyed (after the grace time)")


async def _cmd_rotate(args: Any, config: Any) -> int:
    from gateway.services import open_services

    services = await open_services(config)
    try:
        service = get_key_service(services)
        current = await service.rotation(args.tenant, required=False)
        if current is None or current["state"] not in OPEN_STATES:
            await service.start_rotation(args.tenant, OPERATOR_ACTOR)
        while True:
            await service.run_pending()
            current = await service.rotation(args.tenant)
            if current["state"] in ("completed", "blocked") or not args.wait:
                break
            await asyncio.sleep(min(service.cfg.poll_interval_seconds, 5.0))
    finally:
        await services.close()
    if args.json:
        print(json.dumps(current))
    else:
        p = current["progress"]
        print(f"rotation {current['id']}: {current['state']}, version {current['to_version']},"
              f" {p['items_done']}/{p['items_total']} items"
              + (f"; old versions destroyed no earlier than {current['grace_until']}"
                 if current["state"] == "waiting" else ""))
    return 0 if current["state"] != "blocked" else 1


async def _cmd_status(args: Any, config: Any) -> int:
    from gateway.services import open_services

    services = await open_services(config)
    try:
        status = await get_key_service(services).status(args.tenant)
    finally:
        await services.close()
    print(json.dumps(status) if args.json else json.dumps(status, indent=2))
    return 0


cli_commands = [
    (("tenant", "offboard"), _configure_offboard, _cmd_offboard),
    (("keys", "rotate"), _configure_rotate, _cmd_rotate),
    (("keys", "status"), lambda p: p.add_argument("--tenant", required=True), _cmd_status),
]
