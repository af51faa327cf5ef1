"""How the sweep, the preview and the staff view's retention state find, count and delete
the items of each swept data class (gateway/lifecycle/data_classes.py). A new data class
adds its `ClassQueries` here; nothing else in the sweep changes.

Invariants:
- Each `select` returns, per candidate: item_id, t (its time), call_id, the call's blind
  indexes, sealed parties and restriction, and `busy` (a recording still being written).
  It pages by (t, item_id) after a cursor, through an index led by tenant and time, so its
  cost follows the expired rows, never the table size. CROSS JOIN keeps SQLite driving
  from the (tenant, time) index of the scanned table.
- Deleting a recording row hands its key reference (`key_ref`) to `sealed_out`: after the
  commit its unit key leaves the key store (ledger entry first). A legacy wrapped data key
  (`blob_keys`) is deleted in the same transaction first; its blob file is unlinked after
  the commit (gateway/lifecycle/tombstones.py). A trigger leaves the tombstone for any
  recording row that goes.
- A call's deletion takes its events and recordings (and their keys) with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.lifecycle.data_classes import SWEPT
from gateway.store import WriteTx
from gateway.store.columns import id_bytes, id_text, micros, micros_text

# delete(tx, ids) -> (deleted counts per class, recording ids whose blobs are to go)
DeleteFn = Callable[[WriteTx, list[str], "list[bytes | None] | None"], tuple[dict[str, int], list[str]]]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class ClassQueries:
    select: str          # the next candidates (named parameters: tenant, cutoff, ct, cid, now,
    #                      limit)
    count: str           # upper bound of the candidates (tenant, cutoff): the progress total
    delete: DeleteFn     # inside a write unit
    oldest_for_call: str  # (call_id): time of the call's oldest item of the class, or NULL
    # call_events stores ids as 16 bytes and times as microseconds (migration 0013), the
    # other tables as text: the tenant id and a time as the table stores them (the
    # `tenant` and `cutoff` parameters), an item id and `t` as text (what delete,
    # receipts, the ledger and the retention state take), and where select's cursor
    # starts.
    tenant_key: Callable[[str], Any] = str
    time_key: Callable[[str], Any] = str
    item_text: Callable[[Any], str] = str
    time_text: Callable[[Any], str | None] = _same
    start: tuple[Any, Any] = ("", "")


def marks(values: list[str]) -> str:
    """`?, ?, ?` for an IN list of `values`."""
    return ",".join("?" * len(values))


def delete_calls_tx(tx: WriteTx, call_ids: list[str],
                    sealed_out: list[bytes | None] | None = None
                    ) -> tuple[dict[str, int], list[str]]:
    """Delete calls with their events and recordings (wrapped keys first). Returns counts
    per class and the recording ids whose blob files are now to be unlinked (their
    tombstones exist). The deleted rows' sealed values go to `sealed_out`: after the
    commit, the caller deletes their unit keys from the key store
    (gateway/lifecycle/unit_keys.py). Used by the sweep, erasure and nothing else."""
    if not call_ids:
        return {}, []
    in_calls = marks(call_ids)
    # Four statements per batch, whatever its size (each a round trip on PostgreSQL): the
    # deletes hand back the ids and sealed values they removed (RETURNING).
    tx.execute(f"DELETE FROM blob_keys WHERE object_id IN"
               f" (SELECT id FROM recordings WHERE call_id IN ({in_calls}))", call_ids)
    deleted = tx.fetchall(
        f"DELETE FROM recordings WHERE call_id IN ({in_calls}) RETURNING id, key_ref", call_ids)
    recordings = [r[0] for r in deleted]
    events = tx.fetchall(f"DELETE FROM call_events WHERE call_id IN ({in_calls})"
                         f" RETURNING {'body' if sealed_out is not None else 'id'}", call_ids)
    calls = tx.fetchall(f"DELETE FROM calls WHERE id IN ({in_calls})"
                        f" RETURNING {'parties' if sealed_out is not None else 'id'}", call_ids)
    if sealed_out is not None:
        sealed_out.extend(r[0] for r in calls)
        sealed_out.extend(r[0] for r in events)
        sealed_out.extend(r[1] for r in deleted)
    return ({"call_metadata": len(calls), "call_events": len(events),
             "recordings": len(recordings)}, recordings)


def _delete_events_tx(tx: WriteTx, ids: list[str],
                      sealed_out: list[bytes | None] | None = None
                      ) -> tuple[dict[str, int], list[str]]:
    rows = tx.fetchall(f"DELETE FROM call_events WHERE id IN ({marks(ids)})"
                       f" RETURNING {'body' if sealed_out is not None else 'id'}",
                       [id_bytes(i) for i in ids])
    if sealed_out is not None:
        sealed_out.extend(r[0] for r in rows)
    return {"call_events": len(rows)}, []


def _delete_recordings_tx(tx: WriteTx, ids: list[str],
                          sealed_out: list[bytes | None] | None = None
                          ) -> tuple[dict[str, int], list[str]]:
    # Crypto-shred first: a legacy wrapped data key, then the row (the blob after commit);
    # the key references go to `sealed_out`, whose keys leave the key store after commit.
    tx.execute(f"DELETE FROM blob_keys WHERE object_id IN ({marks(ids)})", ids)
    rows = tx.fetchall(f"DELETE FROM recordings WHERE id IN ({marks(ids)}) RETURNING key_ref",
                       ids)
    if sealed_out is not None:
        sealed_out.extend(r[0] for r in rows)
    return {"recordings": len(rows)}, ids


def _clear_diagnostics_tx(tx: WriteTx, ids: list[str], sealed_out: object = None
                          ) -> tuple[dict[str, int], list[str]]:
    return {"diagnostics": tx.execute(
        f"UPDATE recordings SET stats = NULL WHERE id IN ({marks(ids)}) AND stats IS NOT NULL",
        ids)}, []


QUERIES: dict[str, ClassQueries] = {
    "call_metadata": ClassQueries(
        select=(
            "SELECT c.id AS item_id, c.sort_time AS t, c.id AS call_id, c.from_index,"
            " c.to_index, c.parties, c.restricted_at, EXISTS (SELECT 1 FROM recordings r"
            " WHERE r.call_id = c.id AND r.state = 'writing' AND r.lease_until >= :now) AS busy"
            " FROM calls c WHERE c.tenant_id = :tenant AND c.sort_time < :cutoff"
            " AND (c.sort_time, c.id) > (:ct, :cid) ORDER BY c.sort_time, c.id LIMIT :limit"),
        count="SELECT COUNT(*) FROM calls WHERE tenant_id = ? AND sort_time < ?",
        delete=delete_calls_tx,
        oldest_for_call="SELECT sort_time FROM calls WHERE id = ?"),
    "call_events": ClassQueries(
        select=(
            "SELECT e.id AS item_id, e.received_at AS t, e.call_id, c.from_index, c.to_index,"
            " c.parties, c.restricted_at, 0 AS busy FROM call_events e CROSS JOIN calls c"
            " ON c.id = e.call_id WHERE e.tenant_id = :tenant AND e.received_at < :cutoff"
            " AND (e.received_at, e.id) > (:ct, :cid) ORDER BY e.received_at, e.id"
            " LIMIT :limit"),
        count="SELECT COUNT(*) FROM call_events WHERE tenant_id = ? AND received_at < ?",
        delete=_delete_events_tx,
        oldest_for_call="SELECT MIN(received_at) FROM call_events WHERE call_id = ?",
        tenant_key=id_bytes, time_key=micros, item_text=id_text, time_text=micros_text,
        start=(-1, b"")),
    "recordings": ClassQueries(
        select=(
            "SELECT r.id AS item_id, r.created_at AS t, r.call_id, c.from_index, c.to_index,"
            " c.parties, c.restricted_at, (r.state = 'writing' AND r.lease_until >= :now)"
            " AS busy FROM recordings r CROSS JOIN calls c ON c.id = r.call_id"
            " WHERE r.tenant_id = :tenant AND r.created_at < :cutoff"
            " AND (r.created_at, r.id) > (:ct, :cid) ORDER BY r.created_at, r.id LIMIT :limit"),
        count="SELECT COUNT(*) FROM recordings WHERE tenant_id = ? AND created_at < ?",
        delete=_delete_recordings_tx,
        oldest_for_call="SELECT MIN(created_at) FROM recordings WHERE call_id = ?"),
    "diagnostics": ClassQueries(
        select=(
            "SELECT r.id AS item_id, r.created_at AS t, r.call_id, c.from_index, c.to_index,"
            " c.parties, c.restricted_at, (r.state = 'writing' AND r.lease_until >= :now)"
            " AS busy FROM recordings r CROSS JOIN calls c ON c.id = r.call_id"
            " WHERE r.tenant_id = :tenant AND r.stats IS NOT NULL AND r.created_at < :cutoff"
            " AND (r.created_at, r.id) > (:ct, :cid) ORDER BY r.created_at, r.id LIMIT :limit"),
        count=("SELECT COUNT(*) FROM recordings WHERE tenant_id = ? AND stats IS NOT NULL"
               " AND created_at < ?"),
        delete=_clear_diagnostics_tx,
        oldest_for_call=("SELECT MIN(created_at) FROM recordings WHERE call_id = ?"
                         " AND stats IS NOT NULL")),
}

if set(QUERIES) != set(SWEPT):  # pragma: no cover - caught by any import in the tests
    raise RuntimeError("every swept data class needs its ClassQueries (and no other)")


def delete_items_tx(tx: WriteTx, data_class: str, ids: list[str],
                    sealed_out: list[bytes | None] | None = None
                    ) -> tuple[dict[str, int], list[str]]:
    if not ids:
        return {}, []
    return QUERIES[data_class].delete(tx, ids, sealed_out)
