"""The set-based write of a batch of webhook deliveries: a few statements for the whole
batch instead of several per event.

A pure function of (write transaction, plain tuples) -> plain tuples, importing nothing
heavier than the standard library, the canonical statuses and gateway/store/columns.py
(how call_events stores ids and times), so that the same code runs on the backend's
writer thread (PostgreSQL) and in the SQLite writer process
(gateway/store/writer_process.py), which gets its input pickled and has no keys, caches or
event objects (issue 12: the writer must not share the event loop's GIL).

Invariants:
- The rows written are the ones `IngestService._unit` (the one-by-one path, in
  gateway/ingest/pipeline.py) writes for the same deliveries in the same order: the merge
  rules below and `_merge_call` there must agree (tests/store/test_set_based_ingest.py).
- Anything unusual (linking through a session id, parties arriving late, a stale
  known-call cache) raises `OneByOne` before the transaction is committed: the caller
  undoes the step and runs the deliveries one by one, where those cases are handled.
- Input and output hold no key and no plaintext phone number: parties arrive sealed with
  their blind indexes; `has_parties` only says a delivery carried some.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from adapters.events import TERMINAL_STATUSES
from gateway.store.columns import fold_dedupe_key, id_bytes, micros, micros_text

# Status order: a later rank never regresses to an earlier one; terminal is final.
_RANK = {"queued": 0, "ringing": 1, "in-progress": 2}

MERGE_COLUMNS = ("id, status, direction, started_at, ended_at, duration_seconds,"
                 " last_sequence, parties")
NEW_CALL_COLUMNS = ("id", "tenant_id", "integration_id", "platform", "platform_call_id",
                    "platform_session_id", "status", "direction", "started_at", "ended_at",
                    "duration_seconds", "last_sequence", "sort_time", "parties", "from_index",
                    "to_index", "created_at", "updated_at")
EVENT_COLUMNS = ("id", "tenant_id", "call_id", "dedupe_key", "kind", "status", "received_at",
                 "occurred_at", "body")


def status_rank(status: str | None) -> int:
    if status is None:
        return -1
    return 3 if status in TERMINAL_STATUSES else _RANK.get(status, -1)


def merge_status(current: str | None, incoming: str | None) -> str | None:
    if incoming is None:
        return current
    if current in TERMINAL_STATUSES:
        return current
    return incoming if status_rank(incoming) >= status_rank(current) else current


class Item(NamedTuple):
    """One prepared event. Times are ISO text (or None), as stored."""
    dedupe: bytes               # the stored dedupe key (its integration folded in)
    event_id: str               # the event's id (stored as its 16 bytes)
    sealed_body: bytes
    new_call_id: str
    has_parties: bool           # the delivery named a party (normalised, sealed below)
    parties_skipped: bool       # believed stored already (the known-call cache)
    parties: bytes | None       # sealed parties for a new call, with their blind indexes
    from_index: int | None
    to_index: int | None
    is_call: bool               # a call event; else a recording announcement
    platform_call_id: str
    platform_session_id: str | None
    status: str | None
    direction: str | None
    started_at: str | None
    ended_at: str | None
    duration_seconds: int | None
    sequence: int | None
    occurred_at: str | None


class Delivery(NamedTuple):
    integration_id: str
    tenant_id: str
    platform: str
    now: str
    items: Sequence[Item]


# Per delivery: None when its integration (or tenant) is no longer active, else one
# (call_id, accepted) per item: accepted False means a duplicate of a stored event.
Outcome = list[tuple[str, bool]] | None


class OneByOne(Exception):
    """The set-based write met a case only the one-by-one path handles."""


def marks(n: int) -> str:
    return ", ".join(["?"] * n)


def chunks(values: Sequence[Any], size: int = 400) -> list[Sequence[Any]]:
    """Statements stay under the backends' bound parameter limits."""
    return [values[i:i + size] for i in range(0, len(values), size)]


def write_deliveries(tx: Any, plain: Sequence[Sequence[Any]]) -> list[Outcome]:
    """Several deliveries as a few statements: one integration check for all, per
    integration one dedupe lookup and one locked call lookup, the status merge in memory
    (in delivery order, so later deliveries see earlier ones), then one INSERT of the new
    calls, one UPDATE per merged existing call and one INSERT of the events.

    `plain` holds each Delivery's fields as a plain tuple, its items likewise Item's: what
    crosses to the writer process is then pickled without a class reference per item. An
    item's dedupe key arrives as the hash of the platform's key alone and is folded with
    its integration here (gateway/store/columns.py), in the writer, not on the event loop.
    """
    deliveries = [Delivery(*d[:4], [Item(fold_dedupe_key(d[0], item[0]), *item[1:])
                                    for item in d[4]]) for d in plain]
    integration_ids = sorted({d.integration_id for d in deliveries})
    active = {row[0] for row in tx.fetchall(
        "SELECT i.id FROM integrations i JOIN tenants t ON t.id = i.tenant_id"
        f" WHERE i.id IN ({marks(len(integration_ids))}) AND i.disabled_at IS NULL"
        " AND t.state = 'active'", integration_ids)}
    wanted: dict[str, tuple[set[bytes], set[str]]] = {}
    for d in deliveries:
        if d.integration_id in active:
            dedupes, call_ids = wanted.setdefault(d.integration_id, (set(), set()))
            for item in d.items:
                dedupes.add(item.dedupe)
                call_ids.add(item.platform_call_id)
    seen: dict[bytes, str] = {}
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    for integration_id, (dedupes, call_ids) in wanted.items():
        for chunk in chunks(sorted(dedupes)):
            for row in tx.fetchall(
                    "SELECT dedupe_key, call_id FROM call_events"
                    f" WHERE dedupe_key IN ({marks(len(chunk))})", chunk):
                seen[bytes(row[0])] = row[1]
        for chunk in chunks(sorted(call_ids)):
            # Locked until the commit (PostgreSQL: another replica may be merging an event
            # of the same call); in id order, so two replicas lock alike.
            for row in tx.fetchall(
                    f"SELECT {MERGE_COLUMNS}, platform_call_id, platform_session_id, sort_time"
                    " FROM calls WHERE integration_id = ?"
                    f" AND platform_call_id IN ({marks(len(chunk))}) ORDER BY id",
                    (integration_id, *chunk), for_update=True):
                calls[(integration_id, row["platform_call_id"])] = dict(row)
    new_calls: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    # Per call id: occurred_at of this step's 'in-progress' events (answer times).
    answers: dict[str, list[str]] = {}
    outcomes: list[Outcome] = []
    for d in deliveries:
        if d.integration_id not in active:
            outcomes.append(None)
            continue
        outcome: list[tuple[str, bool]] = []
        # call_events stores ids as 16 bytes, times as microseconds (migration 0013).
        tenant_key, received = id_bytes(d.tenant_id), micros(d.now)
        for item in d.items:
            call_id = seen.get(item.dedupe)
            if call_id is not None:
                outcome.append((call_id, False))
                continue
            call = _merge_in_memory(tx, calls, new_calls, answers, d, item)
            call_id = call["id"]
            seen[item.dedupe] = call_id
            status = item.status if item.is_call else None
            if status == "in-progress" and item.occurred_at:
                answers.setdefault(call_id, []).append(item.occurred_at)
            events.append((id_bytes(item.event_id), tenant_key, call_id, item.dedupe,
                           "call" if item.is_call else "recording", status, received,
                           micros(item.occurred_at), item.sealed_body))
            outcome.append((call_id, True))
        outcomes.append(outcome)
    for chunk in chunks(new_calls, 50):
        tx.execute(
            f"INSERT INTO calls ({', '.join(NEW_CALL_COLUMNS)}) VALUES "
            + ", ".join([f"({marks(len(NEW_CALL_COLUMNS))})"] * len(chunk)),
            [call[c] for call in chunk for c in NEW_CALL_COLUMNS])
    merged = [call for call in calls.values() if call.get("_merged")]
    if merged:
        tx.executemany(
            "UPDATE calls SET status = ?, direction = ?, started_at = ?, ended_at = ?,"
            " duration_seconds = ?, last_sequence = ?, sort_time = ?, updated_at = ?,"
            " platform_session_id = ? WHERE id = ?",
            [(c["status"], c["direction"], c["started_at"], c["ended_at"],
              c["duration_seconds"], c["last_sequence"], c["sort_time"], c["updated_at"],
              c["platform_session_id"], c["id"]) for c in merged])
    for chunk in chunks(events, 50):
        tx.execute(
            f"INSERT INTO call_events ({', '.join(EVENT_COLUMNS)}) VALUES "
            + ", ".join([f"({marks(len(EVENT_COLUMNS))})"] * len(chunk)),
            [value for row in chunk for value in row])
    return outcomes


def _merge_in_memory(tx: Any, calls: dict[tuple[str, str], dict[str, Any]],
                     new_calls: list[dict[str, Any]], answers: dict[str, list[str]],
                     d: Delivery, item: Item) -> dict[str, Any]:
    """`IngestService._merge_call`'s rules applied to the call's row in memory (written at
    the end of `write_deliveries`)."""
    key = (d.integration_id, item.platform_call_id)
    call = calls.get(key)
    if call is None and item.platform_session_id:
        raise OneByOne      # linking through the session id: the one-by-one path
    if item.parties_skipped and (call is None or call["parties"] is None):
        raise OneByOne
    if item.is_call:
        status, direction, started, ended = (item.status, item.direction, item.started_at,
                                             item.ended_at)
        duration, sequence = item.duration_seconds, item.sequence
    elif call is not None:
        return call
    else:
        # A recording announced before any call event: the call exists from now on.
        status = direction = started = ended = duration = sequence = None
    if call is None:
        call = {"id": item.new_call_id, "tenant_id": d.tenant_id,
                "integration_id": d.integration_id, "platform": d.platform,
                "platform_call_id": item.platform_call_id,
                "platform_session_id": item.platform_session_id,
                "status": status, "direction": direction,
                "started_at": started, "ended_at": ended, "duration_seconds": duration,
                "last_sequence": sequence, "sort_time": started or d.now,
                "parties": item.parties, "from_index": item.from_index,
                "to_index": item.to_index, "created_at": d.now, "updated_at": d.now,
                "_new": True}
        calls[key] = call
        new_calls.append(call)
        return call
    if call["parties"] is None and item.has_parties:
        raise OneByOne      # parties arriving late are sealed to the call's id there
    status = merge_status(call["status"], status)
    new_started = min(filter(None, [call["started_at"], started]), default=None)
    new_ended = ended or call["ended_at"]
    if duration is None:
        duration = call["duration_seconds"]
    if duration is None and new_ended and status in TERMINAL_STATUSES:
        duration = duration_from_answer(
            tx, call["id"], item.occurred_at if item.status == "in-progress" else None,
            new_ended, answers.get(call["id"], ()))
    call.update(
        status=status, direction=direction if call["direction"] is None
        else call["direction"],
        started_at=new_started, ended_at=new_ended, duration_seconds=duration,
        last_sequence=max(filter(lambda v: v is not None, [call["last_sequence"], sequence]),
                          default=None),
        sort_time=new_started or call["sort_time"], updated_at=d.now,
        platform_session_id=call["platform_session_id"] or item.platform_session_id)
    if not call.get("_new"):
        call["_merged"] = True
    return call


def duration_from_answer(tx: Any, call_id: str, answered: str | None, ended: str,
                         pending: Sequence[str] = ()) -> int | None:
    """Seconds from answer to end, for platforms that report no duration (Telnyx): the
    answer is the earliest 'in-progress' event of the call, whichever order the events
    arrived in (`answered`: this event's time if it is the answer; `pending`: answer times
    not written yet). None when the call was never answered."""
    row = tx.fetchone("SELECT MIN(occurred_at) AS t FROM call_events WHERE call_id = ?"
                      " AND status = 'in-progress'", (call_id,))
    candidates = [t for t in (answered, micros_text(row[0]) if row else None, *pending) if t]
    if not candidates:
        return None
    seconds = (datetime.fromisoformat(ended.replace("Z", "+00:00"))
               - datetime.fromisoformat(min(candidates).replace("Z", "+00:00"))
               ).total_seconds()
    return int(seconds) if seconds >= 0 else None
