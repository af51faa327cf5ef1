"""Tenant offboarding (`gateway tenant offboard ID`; there is no operator HTTP API yet,
operators have no HTTP credential): every key destroyed, every row and blob deleted, a
receipt kept (docs/retention-and-dsr.md).

The tenant stops authenticating, its tenant root key file is destroyed (every copy of its
key rows, in the database or any backup of it, is from then on wrapped under a key that no
longer exists), then its key rows, every row of every tenant table and its blob directory
are deleted. The tenant row stays, renamed, state `offboarded`, with the receipt. The
tenant's audit log stays (it has no foreign key to the tenant by design: the record of who
touched what outlives the data).

Invariants:
- Refused (409) while legal holds are active, unless the operator overrides them
  explicitly; the override is counted in the receipt and the audit log.
- Keys go first (crypto-shred), then rows, then blobs: a crash at any step leaves data
  that is already unreadable, and running it again finishes the job.
- Resumable and idempotent: on an offboarded tenant it removes anything written late and
  returns the receipt.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from gateway.core.clock import Clock, isoformat
from gateway.errors import DomainError, not_found
from gateway.store import Database, TableInfo, WriteTx
from gateway.store.columns import stored_id
from gateway.tenants.keyring import KeyRing
from gateway.transparency.log import get_audit_log

if TYPE_CHECKING:  # the blob store's interface; the backend is chosen in gateway/services.py
    from gateway.store import BlobStore

# Who the audit log names as the actor of what an operator ran from the CLI.
OPERATOR_ACTOR = {"type": "system", "id": "operator"}
# Rows deleted per write unit: keeps the single writer responsive for other tenants.
_CHUNK = 2000


class Offboarding:
    def __init__(self, db: Database, keyring: KeyRing, blobs: BlobStore, clock: Clock, *,
                 audit: Any = None, integrations: Any = None, ingest: Any = None) -> None:
        self.db = db
        self.keyring = keyring
        self.blobs = blobs
        self.clock = clock
        self.audit = audit
        self.integrations = integrations
        self.ingest = ingest

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
        file_destroyed = await self.keyring.destroy_tenant_root_key(tenant_id)
        if self.keyring.units is not None:
            # Its unit-key segments and ledger: wrapped under the destroyed key already,
            # deleted so the key store keeps nothing of the tenant.
            await self.keyring.units.forget_tenant(tenant_id)
        versions = [r[0] for r in await self.db.fetchall(
            "SELECT version FROM tenant_keys WHERE tenant_id = ? AND kind = 'kek'", (tenant_id,))]
        counts: dict[str, int] = dict(receipt.get("deleted_rows", {}))
        schema = await self.db.tables()
        counts["tenant_keys"] = counts.get("tenant_keys", 0) + await self._delete_all(
            schema["tenant_keys"], tenant_id)
        counts["blob_keys"] = counts.get("blob_keys", 0) + await self._delete_all(
            schema["blob_keys"], tenant_id)
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
                counts[table.name] = counts.get(table.name, 0) + n
        if self.ingest is not None:
            self.ingest.forget_known_calls()
        # 3. The blobs (already unreadable: their data keys are gone).
        blob_dir_existed = bool(await self.blobs.list_objects(tenant_id))
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

    async def _tenant_tables(self) -> list[TableInfo]:
        """Tables with a tenant_id column whose rows are the tenant's data, ordered so a
        table is emptied before any table it references."""
        skip = {"tenants", "tenant_keys", "blob_keys", "blob_tombstones"}
        tables = {name: info for name, info in (await self.db.tables()).items()
                  if name not in skip and not name.startswith("audit_")
                  and "tenant_id" in info.columns}
        ordered: list[TableInfo] = []
        remaining = set(tables)
        while remaining:
            # A table nobody remaining references can go now.
            ready = sorted(t for t in remaining
                           if not any(t in tables[o].references for o in remaining if o != t))
            if not ready:  # pragma: no cover - a reference cycle: cascades handle it
                ready = sorted(remaining)
            ordered.extend(tables[name] for name in ready)
            remaining -= set(ready)
        return ordered

    async def _delete_all(self, table: TableInfo, tenant_id: str) -> int:
        """Delete in chunks by primary key, so one huge tenant is not one huge transaction."""
        key = ", ".join(table.primary_key)
        tenant = stored_id(table.columns["tenant_id"], tenant_id)   # call_events: 16 bytes
        total = 0
        while True:
            n = await self.db.write(lambda tx: tx.execute(
                f"DELETE FROM {table.name} WHERE ({key}) IN (SELECT {key} FROM {table.name}"
                " WHERE tenant_id = ? LIMIT ?)", (tenant, _CHUNK)))
            total += n
            if n < _CHUNK:
                return total


def get_offboarding(services: Any) -> Offboarding:
    existing = services.features.get("offboarding")
    if existing is not None:
        return existing
    service = Offboarding(services.db, services.keyring, services.blobs, services.clock,
                          audit=get_audit_log(services), integrations=services.integrations,
                          ingest=services.ingest)
    services.features["offboarding"] = service
    return service
