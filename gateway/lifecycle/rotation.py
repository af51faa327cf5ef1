"""Key rotation: a new KEK version, a background rewrap and reseal, then destruction of
the old version once nothing uses it (docs/retention-and-dsr.md).

1. `start_rotation` adds KEK version n+1 (wrapped like the others, under the tenant's
   root key file) in one transaction with a `key_rotations` row; from then on every new
   seal and every new blob's data key uses n+1 (the highest version is primary).
2. The job walks each registered sealed column (gateway/store/sealed.py) and the
   data-key table in batches: records are resealed (`reseal_record`), data keys rewrapped
   (`rewrap_dek`). Blob files are never read or written: a blob's data key does not
   change, only its wrapping. Records and recordings under their own unit keys (key
   store) depend on no KEK version and are left as they are; `blob_keys` holds only the
   data keys of recordings not yet moved into the key store. Updates are compare-and-set on the old ciphertext, so a
   concurrent write wins. Progress (cursor, done, total per source) is saved with each
   batch: the job resumes where it stopped, in whichever process holds its lease.
3. It waits until `grace_until` (started_at + `[keys] grace_seconds`), longer than the key
   ring cache of every process sharing the database, so none still seals under n; then
   it counts what is still under an old version (by the version prefix of each
   ciphertext) and, if anything is, makes another pass.
4. When nothing uses the old versions, and no column it does not know holds ciphertext
   under them (a safety scan of every BLOB column of every tenant table), the old rows
   are deleted from `tenant_keys` and the ring reloaded. If the scan finds
   unknown ciphertext the rotation is `blocked` (retried after the lease) rather than
   destroy a key that still protects data.
5. `shredding`: deleting the rows is not yet destroying the key material, since a database
   backup holds them wrapped under the tenant root key, which is alive. So the tenant
   root key is rotated (gateway/tenants/root_rotation.py): the rows left are rewrapped
   under a new one and the old one is overwritten in the key store, after which the old
   versions in any backup open under nothing that exists. Then `completed`. A crash in
   between leaves the rotation `shredding`, and the job finishes it.

Invariants:
- A rotation row is advanced only by the process holding its lease (`owner`,
  `lease_until`); one advance at a time per process (`_lock`).
- An old version is destroyed only when every registered column, the data keys and the
  unregistered-BLOB scan show nothing under it.
- One `PeriodicJob` per process drives it; `start_rotation` wakes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.core.jobs import PeriodicJob
from gateway.errors import DomainError, not_found
from gateway.lifecycle.settings import KeysConfig
from gateway.store import Database, TableInfo, WriteTx, sealed
from gateway.store.columns import from_json_value, id_text, json_value, stored_id
from gateway.store.sealed import SealedColumn
from gateway.tenants.keyring import KeyRing
from gateway.tenants.root_rotation import destroyed_versions_shredder
from gateway.transparency.log import get_audit_log

log = logging.getLogger("gateway.keys")

SYSTEM_ACTOR = {"type": "system", "id": "key-rotation"}
_UNIT_RECORD_FORMAT = bytes([2])   # keys/_unit.py RECORD_FORMAT
OPEN_STATES = ("rewrapping", "waiting", "blocked", "shredding")
# Sealed records are 0x01 | KEK version (uint32 BE) | ... (docs/crypto-formats.md, keys/
# _record.py); the shortest is 49 bytes (empty plaintext). The verification counts use
# this prefix in SQL instead of fetching every ciphertext.
_RECORD_FORMAT = 1
_MIN_SEALED_LEN = 49
BLOB_KEYS = "blob_keys.wrapped"
# BLOB columns of tenant tables that are not sealed records (or are handled apart).
# `recordings.key_ref` only says where a recording's key lives in the key store (no KEK).
_NOT_SEALED = {("tenant_keys", "wrapped"), ("blob_keys", "wrapped"),
               ("tenant_api_keys", "secret_hash"), ("recordings", "key_ref")}


def _version_bytes(version: int) -> bytes:
    return bytes([_RECORD_FORMAT]) + version.to_bytes(4, "big")


async def existing_tables(db: Database) -> set[str]:
    return set(await db.tables())


class KeyService:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, cfg: KeysConfig, *,
                 audit: Any = None,
                 shred_wrapped_copies: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.db = db
        # (tenant id) -> rotates the tenant root key, destroying the wrapping under which
        # backups hold the deleted versions (step 5); None without a key store.
        self.shred_wrapped_copies = shred_wrapped_copies
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.audit = audit
        self.owner = uuid.uuid4().hex
        self._job: PeriodicJob | None = None
        self._tables: dict[str, TableInfo] | None = None
        # One advance at a time in this process (the background job, the CLI, a test).
        self._lock = asyncio.Lock()

    async def _existing_tables(self) -> dict[str, TableInfo]:
        if self._tables is None:
            self._tables = await self.db.tables()
        return self._tables

    async def _row_key(self, spec: SealedColumn) -> str:
        key = (await self._existing_tables())[spec.table].primary_key
        if len(key) != 1:
            raise ValueError(f"sealed table {spec.table} needs a one-column primary key")
        return key[0]

    async def _tenant(self, table: str, tenant_id: str) -> Any:
        """The tenant id as `table` stores it (call_events: 16 bytes, migration 0013)."""
        info = (await self._existing_tables())[table]
        return stored_id(info.columns.get("tenant_id", "text"), tenant_id)

    async def _sources(self) -> list[SealedColumn]:
        tables = await self._existing_tables()
        return [c for c in sealed.registered() if c.table in tables]

    # -- status ---------------------------------------------------------------------------
    async def status(self, tenant_id: str) -> dict[str, Any]:
        self.keyring.forget(tenant_id)
        ring = await self.keyring.for_tenant(tenant_id)
        return {"primary_version": ring.primary_version, "versions": list(ring.versions),
                "tenant_root_key": await self.keyring.has_tenant_root_key(tenant_id),
                "rotation": await self.rotation(tenant_id, required=False)}

    async def rotation(self, tenant_id: str, *, required: bool = True) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM key_rotations WHERE tenant_id = ? ORDER BY started_at DESC, id"
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
        wrapping = await self.keyring.wrapping_key(tenant_id)
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
        self.wake()
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
        if row["state"] == "shredding":
            await self._shred(rotation_id, tenant_id)
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
                    f" {spec.column} IS NOT NULL", (await self._tenant(spec.table, tenant_id),)
                ))[0]
                state = sources[spec.name] = {"total": total, "done": 0, "resealed": 0,
                                              "errors": 0, "cursor": None, "finished": False}
            while not state["finished"]:
                rows = await self._page(spec, tenant_id, state["cursor"], batch)
                updates = await asyncio.to_thread(self._reseal, ring, spec, rows, primary, state)
                # Kept in the progress JSON: a 16-byte id as {"hex": ...}.
                cursor = [json_value(rows[-1][c]) for c in range(len(spec.keyset))
                          ] if rows else None
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
            cursor = state["cursor"] or [0, "", ""]
            rows = await self.db.fetchall(
                "SELECT kek_version, created_at, object_id, wrapped FROM blob_keys"
                " WHERE tenant_id = ? AND kek_version < ? AND (kek_version, created_at,"
                " object_id) > (?, ?, ?) ORDER BY kek_version, created_at, object_id LIMIT ?",
                (tenant_id, primary, *cursor, batch))
            updates = await asyncio.to_thread(self._rewrap, ring, rows, state)
            state["done"] += len(rows)
            state["resealed"] += len(updates)
            state["finished"] = len(rows) < batch
            if rows:
                state["cursor"] = [rows[-1]["kek_version"], rows[-1]["created_at"],
                                   rows[-1]["object_id"]]
            await self._write_dek_updates(rotation_id, updates, primary, progress)

    async def _page(self, spec: SealedColumn, tenant_id: str, cursor: list | None,
                    limit: int) -> list[Any]:
        row_key = await self._row_key(spec)
        cols = ", ".join(spec.keyset or (row_key,))
        where = ""
        params: list[Any] = [await self._tenant(spec.table, tenant_id)]
        if cursor is not None:
            where = f" AND ({cols}) > ({', '.join('?' * len(cursor))})"
            params.extend(from_json_value(v) for v in cursor)
        return await self.db.fetchall(
            f"SELECT {cols}, {row_key} AS _rid, {spec.id_column} AS _rec,"
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
                new = ring.reseal_record(spec.record_kind, id_text(row["_rec"])
                                         if isinstance(row["_rec"], (bytes, memoryview))
                                         else str(row["_rec"]), old)
            except keys.UnitSealed:
                continue    # under its own unit key, which no KEK version protects
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

        row_key = await self._row_key(spec)

        def unit(tx: WriteTx) -> None:
            if updates:
                # Compare-and-set: a row rewritten meanwhile keeps its newer value.
                tx.executemany(f"UPDATE {spec.table} SET {spec.column} = ? WHERE {row_key} = ?"
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
                f" IS NOT NULL AND substr({spec.column}, 1, 5) <> ?"
                # Format 2 is under a unit key in the key store, under no KEK version.
                f" AND substr({spec.column}, 1, 1) <> ?",
                (await self._tenant(spec.table, tenant_id), prefix, _UNIT_RECORD_FORMAT)))[0]
        out[BLOB_KEYS] = (await self.db.fetchone(
            "SELECT COUNT(*) FROM blob_keys WHERE tenant_id = ? AND kek_version <> ?",
            (tenant_id, primary)))[0]
        return out

    async def unregistered_ciphertext(self, tenant_id: str, primary: int) -> list[str]:
        """BLOB columns of tenant tables, not registered, holding what looks like a sealed
        record under another version: the destroy step refuses while any exists."""
        known = {(c.table, c.column) for c in sealed.registered()} | _NOT_SEALED
        found = []
        for table, info in sorted((await self._existing_tables()).items()):
            if table.startswith("audit_") or "tenant_id" not in info.columns:
                continue
            for column, kind in info.columns.items():
                if kind != "blob" or (table, column) in known:
                    continue
                n = (await self.db.fetchone(
                    f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ? AND length({column})"
                    f" >= ? AND substr({column}, 1, 1) = ? AND substr({column}, 1, 5) <> ?",
                    (stored_id(info.columns["tenant_id"], tenant_id), _MIN_SEALED_LEN,
                     bytes([_RECORD_FORMAT]), _version_bytes(primary))))[0]
                if n:
                    found.append(f"{table}.{column}")
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
            tx.execute("UPDATE key_rotations SET state = 'shredding', finished_at = ?,"
                       " destroyed = ?, detail = NULL WHERE id = ?",
                       (now, json.dumps(old), rotation_id))
            if audit is not None:
                audit.append_in_tx(tx, tenant_id, {
                    "kind": "key_event", "actor": SYSTEM_ACTOR, "outcome": "versions_destroyed",
                    "details": {"rotation_id": rotation_id, "destroyed_versions": old,
                                "primary_version": primary}})
            return old

        destroyed = await self.db.write(unit)
        self.keyring.forget(tenant_id)
        await self._shred(rotation_id, tenant_id)
        log.info("key rotation completed: %d old version(s) destroyed", len(destroyed))

    async def _shred(self, rotation_id: str, tenant_id: str) -> None:
        """Step 5: the tenant root key is rotated, then the rotation is completed."""
        if self.shred_wrapped_copies is not None:
            await self.shred_wrapped_copies(tenant_id)
        await self.db.write(lambda tx: tx.execute(
            "UPDATE key_rotations SET state = 'completed', owner = NULL, lease_until = NULL"
            " WHERE id = ? AND state = 'shredding'", (rotation_id,)))

    # -- the job --------------------------------------------------------------------------
    def wake(self) -> None:
        if self._job is not None:
            self._job.wake()

    async def start(self) -> None:
        """The rotation job: at once (a stopped process may have left a rotation), then
        every `poll_interval_seconds` or when woken."""
        if self._job is None:
            self._job = PeriodicJob("key-rotation", self._tick, self.cfg.poll_interval_seconds,
                                    run_at_start=True)
            await self._job.start()

    async def stop(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            await job.stop()

    async def _tick(self) -> bool:
        await self.run_pending()
        return False  # waiting out the grace time is not "more to do now"


def get_key_service(services: Any) -> KeyService:
    existing = services.features.get("key_rotation")
    if existing is not None:
        return existing
    audit = get_audit_log(services)
    service = KeyService(services.db, services.keyring, services.clock,
                         services.config.section("keys"), audit=audit,
                         shred_wrapped_copies=destroyed_versions_shredder(services, audit))
    services.features["key_rotation"] = service
    return service
