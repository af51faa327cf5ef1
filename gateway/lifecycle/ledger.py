"""Replay of the key store's deletion ledger at start: a database (or key store) restored
from a backup is brought back in line with every erasure and retention deletion made
after that backup, before the first request is served.

Invariants:
- The ledger lives in the key store (gateway/lifecycle/unit_keys.py), never in the
  database, so restoring the database cannot roll it back.
- Replay is idempotent: rows already gone and keys already deleted are skipped; it runs
  at every start and costs one listing per tenant when there is nothing to do.
- Rows named in the ledger are deleted with their events, recordings (blob files through
  the retention reaper) and unit keys, exactly as the original deletion did.
"""

from __future__ import annotations

import logging
from typing import Any

import keys
from gateway.lifecycle.class_queries import delete_calls_tx, delete_items_tx, marks
from gateway.store import WriteTx

__all__ = ["replay_deletion_ledger"]

log = logging.getLogger("gateway.keys")
_CHUNK = 500


async def replay_deletion_ledger(services: Any, remove_blobs: Any = None) -> dict[str, int]:
    """Re-apply every ledger entry of every tenant; counts of what was found again."""
    units = services.keyring.units
    totals = {"calls": 0, "call_events": 0, "recordings": 0, "keys": 0}
    if units is None:
        return totals
    db = services.db
    for tenant in await db.fetchall("SELECT id FROM tenants"):
        tenant_id = tenant["id"]
        entries = await units.ledger(tenant_id)
        if not entries:
            continue
        wanted = {name: sorted({i for e in entries for i in e.get(name, [])})
                  for name in ("calls", "call_events", "recordings")}
        for name, table in (("calls", "calls"), ("call_events", "call_events"),
                            ("recordings", "recordings")):
            ids = wanted[name]
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                sealed_out: list[bytes | None] = []

                def unit(tx: WriteTx, chunk: list[str] = chunk, name: str = name,
                         table: str = table, sealed_out: list = sealed_out,
                         tenant_id: str = tenant_id) -> Any:
                    del sealed_out[:]
                    present = [r[0] for r in tx.fetchall(
                        f"SELECT id FROM {table} WHERE tenant_id = ? AND id IN"
                        f" ({marks(chunk)})", [tenant_id, *chunk])]
                    if name == "calls":
                        return delete_calls_tx(tx, present, sealed_out)
                    return delete_items_tx(tx, name, present, sealed_out)

                counts, blobs = await db.write(unit)
                totals[name] += counts.get("call_metadata" if name == "calls" else name, 0)
                totals["keys"] += await units._delete_refs(tenant_id, _refs(sealed_out))
                if blobs and remove_blobs is not None:
                    await remove_blobs(tenant_id, blobs)
        totals["keys"] += await units.replay_refs(tenant_id, entries)
    if any(totals.values()):
        log.warning("deletion ledger replayed: a restored copy held erased data",
                    extra={"found_again": totals})
    return totals


def _refs(sealed: list[bytes | None]) -> list[Any]:
    return [ref for value in sealed if value is not None
            for ref in [keys.unit_ref(bytes(value))] if ref is not None]
