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
- While the gateway runs, `ledger_replay_job` re-deletes, every LEDGER_REPLAY_SECONDS,
  the keys named by the ledger entries of the last LEDGER_RECENT_SECONDS: a segment
  rewrite on another replica that raced an erasure and brought an erased key back (a lost
  update; gateway/lifecycle/unit_keys.py) is repaired within LEDGER_REPLAY_SECONDS (plus
  10% jitter) of that write. The window covers a racing rewrite that ends up to
  LEDGER_RECENT_SECONDS - LEDGER_REPLAY_SECONDS (90 s) after the erasure; a rewrite is one
  segment read and one write (milliseconds), and anything slower is caught by the next
  start's full replay. Only keys: the database is shared, so rows cannot come back
  while it runs.
"""

from __future__ import annotations

import logging
from typing import Any

import keys
from gateway.core.jobs import PeriodicJob
from gateway.lifecycle.class_queries import QUERIES, delete_calls_tx, delete_items_tx, marks
from gateway.store import WriteTx

__all__ = ["replay_deletion_ledger", "ledger_replay_job", "LEDGER_REPLAY_SECONDS",
           "LEDGER_RECENT_SECONDS"]

log = logging.getLogger("gateway.keys")
_CHUNK = 500
# The periodic repair of lost segment updates (see the invariants).
LEDGER_REPLAY_SECONDS = 30.0
LEDGER_RECENT_SECONDS = 120.0


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
                    # call_events stores its ids and tenant id as 16 bytes (the same
                    # conversion for both), the other tables as text.
                    queries = QUERIES.get(name)
                    stored = queries.tenant_key if queries else str
                    text = queries.item_text if queries else str
                    present = [text(r[0]) for r in tx.fetchall(
                        f"SELECT id FROM {table} WHERE tenant_id = ? AND id IN"
                        f" ({marks(chunk)})", [stored(tenant_id), *map(stored, chunk)])]
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


def ledger_replay_job(services: Any, interval: float = LEDGER_REPLAY_SECONDS,
                      window: float = LEDGER_RECENT_SECONDS) -> PeriodicJob:
    """The job that re-deletes, on every replica, the keys of recent ledger entries."""

    async def tick() -> int:
        units = services.keyring.units
        if units is None:
            return 0
        found = 0
        for tenant in await services.db.fetchall(
                "SELECT id FROM tenants WHERE state NOT IN ('offboarding', 'offboarded')"):
            try:
                found += await units.replay_recent(tenant["id"], window)
            except Exception as exc:   # one tenant's failure must not stop the others'
                log.error("deletion ledger replay failed for a tenant: %s",
                          type(exc).__name__)
        if found:
            log.warning("deletion ledger: erased keys written back by a racing segment"
                        " rewrite were deleted again", extra={"found_again": found})
        return False

    return PeriodicJob("deletion-ledger-replay", tick, interval)
