"""Blob files of deleted recordings: unlinked after the commit that deleted their rows,
through tombstones, plus the rare full scan for orphans.

Invariants:
- A recording row's deletion leaves a tombstone (a trigger does it for any way a row
  goes, and deletes a legacy `blob_keys` row with it); the recording's own key leaves
  the key store right after the commit (gateway/lifecycle/class_queries.py), so the file
  is unreadable from then on; the file is unlinked after the commit, then the tombstone
  cleared. A crash at any point leaves at worst an unreadable file that the next
  `collect()` removes.
- `scan_orphans` removes legacy `blob_keys` rows without a recording; keys in the key
  store are named only by rows and the deletion ledger.
- Tenants being offboarded are skipped: offboarding removes their whole directory.
- The orphan scan is safe while others write: a recording's row is committed before its
  file exists, and the rows are read after the files are listed.
- `unlink` sends a batch's deletes as a few concurrent requests: a failed one leaves its
  tombstones, so `collect()` retries exactly what did not go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from gateway.lifecycle.class_queries import marks
from gateway.store import Database

if TYPE_CHECKING:  # the blob store's interface; the backend is chosen in gateway/services.py
    from gateway.store import BlobStore

log = logging.getLogger("gateway.retention")

_CHUNK = 1000
# An S3 store works through a DeleteObjects request's keys one after another (SeaweedFS:
# ~0.5 ms a key), so one 500-key request per sweep batch was the critical path of the
# sweep on PostgreSQL + S3 (bench retention_pg): a batch goes out as up to _PARALLEL
# requests of at least _SLICE keys at once.
_PARALLEL = 4
_SLICE = 100


class BlobReaper:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self.last_orphan_scan = time.monotonic()

    async def remove(self, tenant_id: str, object_ids: list[str]) -> None:
        """After a commit that deleted recording rows (their keys and rows gone, their
        tombstones written): unlink the files, then clear the tombstones."""
        if object_ids:
            await self.unlink(tenant_id, object_ids)
            await self.clear(object_ids)

    async def unlink(self, tenant_id: str, object_ids: list[str]) -> None:
        size = min(_CHUNK, max(_SLICE, -(-len(object_ids) // _PARALLEL)))
        slices = [object_ids[i:i + size] for i in range(0, len(object_ids), size)]
        for i in range(0, len(slices), _PARALLEL):
            # Every request ends before a failure is raised: none is left running unawaited.
            outcomes = await asyncio.gather(*(self.blobs.delete_many(tenant_id, ids)
                                              for ids in slices[i:i + _PARALLEL]),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

    async def clear(self, object_ids: list[str]) -> None:
        await self.db.write(lambda tx: tx.execute(
            f"DELETE FROM blob_tombstones WHERE object_id IN ({marks(object_ids)})", object_ids))

    async def collect(self) -> int:
        """Unlink the files of every tombstone left (a crash's leftovers, and recordings
        deleted by a cascade). Returns how many."""
        total = 0
        after = ""
        while True:
            rows = await self.db.fetchall(
                "SELECT object_id, tenant_id FROM blob_tombstones b WHERE object_id > ?"
                " AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = b.tenant_id"
                " AND t.state = 'offboarding') ORDER BY object_id LIMIT ?",
                (after, _CHUNK))
            if not rows:
                return total
            after = rows[-1]["object_id"]
            by_tenant: dict[str, list[str]] = {}
            for row in rows:
                by_tenant.setdefault(row["tenant_id"], []).append(row["object_id"])
            for tenant_id, ids in by_tenant.items():
                await self.unlink(tenant_id, ids)
            await self.clear([r["object_id"] for r in rows])
            total += len(rows)

    async def scan_orphans(self) -> dict[str, int]:
        """The full check (rare; `orphan_scan_interval_seconds`): data keys with no
        recording row, and blob files with no recording row."""
        self.last_orphan_scan = time.monotonic()
        counts = {"keys": 0, "files": 0}
        orphan_keys = [r[0] for r in await self.db.fetchall(
            "SELECT object_id FROM blob_keys k WHERE NOT EXISTS"
            " (SELECT 1 FROM recordings r WHERE r.id = k.object_id)")]
        for i in range(0, len(orphan_keys), _CHUNK):
            chunk = orphan_keys[i:i + _CHUNK]
            counts["keys"] += await self.db.write(lambda tx, chunk=chunk: tx.execute(
                f"DELETE FROM blob_keys WHERE object_id IN ({marks(chunk)}) AND NOT EXISTS"
                " (SELECT 1 FROM recordings r WHERE r.id = blob_keys.object_id)", chunk))
        files = [(tenant_id, object_id) for tenant_id in await self.blobs.list_tenants()
                 for object_id in await self.blobs.list_objects(tenant_id)]
        for i in range(0, len(files), _CHUNK):
            chunk = files[i:i + _CHUNK]
            ids = [o for _, o in chunk]
            known = {r[0] for r in await self.db.fetchall(
                f"SELECT id FROM recordings WHERE id IN ({marks(ids)})", ids)}
            gone = [(t, o) for t, o in chunk if o not in known]
            for tenant_id, object_id in gone:
                await self.blobs.delete(tenant_id, object_id)
            counts["files"] += len(gone)
        if any(counts.values()):
            log.info("retention: orphans removed: %s", json.dumps(counts))
        return counts
