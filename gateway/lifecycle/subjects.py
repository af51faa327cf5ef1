"""Data-subject requests by phone number: search, export, erase, restrict, rectify.

The number may be written any way a person writes it; it is normalised to E.164
(gateway/core/phone.py) and matched the way every lookup by number works here: the blind
index selects candidate calls (truncated to the tenant's width, so a bucket holds several
numbers), then each candidate's parties are decrypted and compared exactly. A call
matches when the number is its caller or its callee.

Each request is a row in `subject_requests`: an id, the kind, a due date
(`[retention] dsr_due_days` after receipt), a status and, once done, a receipt (counts,
held call ids; never the number) plus a `dsr` entry in the tenant's audit log. The number
itself is kept sealed on the request (bound to its id), so the tenant can see what each
request was about; offboarding shreds it with everything else.

Requests are carried out while the tenant waits (a subject's calls are few); an export
streams its bundle, and the request completes when the last byte is sent.

- search: the matching calls (summaries).
- export: a JSON bundle of the matching calls with their events (decrypted) and
  recordings (base64), streamed in constant memory; format in docs/retention-and-dsr.md.
- erase: deletes the matching calls with their events and recordings (keys first, then
  blobs); calls under a legal hold are reported, not deleted.
- restrict: sets `calls.restricted_at` (no further processing: the retention sweep keeps
  them, staff are refused their audio); `{"lift": true}` clears it.
- rectify: replaces the number by `corrected_number` in the matching calls' parties,
  re-sealed, with the blind index recomputed; held calls are reported, not changed.

Invariants:
- The number never reaches a log, a receipt or an audit entry (call ids there are SHA-256
  hashes); it lives only sealed on the request row.
- Erase and rectify re-read the legal holds inside each write unit, and change a call only
  if its sealed parties are still the ones decrypted (a concurrent change wins).
- The data classes an erasure counts come from the registry (data_classes.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import keys
from gateway.calls.service import VISIBLE_RECORDING_STATES, CallService
from gateway.core.clock import isoformat
from gateway.errors import invalid, not_found
from gateway.ingest.pipeline import EVENT_RECORD, PARTIES_RECORD
from gateway.ingest.stored_event import event_body
from gateway.lifecycle.class_queries import delete_calls_tx
from gateway.lifecycle.data_classes import DELETED_WITH_CALL
from gateway.lifecycle.holds import parse_number
from gateway.lifecycle.report import hash_id
from gateway.lifecycle.retention import RetentionService, get_retention
from gateway.lifecycle.unit_keys import truncate_wal
from gateway.store import WriteTx, sealed
from gateway.store.columns import id_text, micros_text

SUBJECT_RECORD = "subject-request"
# Key rotation reseals the request's sealed subject (gateway/store/sealed.py).
sealed.register(sealed.SealedColumn("subject_requests", "subject", SUBJECT_RECORD,
                                    keyset=("received_at", "id")))
KINDS = ("search", "export", "erase", "restrict", "rectify")
EXPORT_FORMAT = "vgw-subject-export/1"
# Calls changed per write unit: small enough to keep the writer responsive.
_CHUNK = 200
# Receipts list at most this many hashed call ids (the audit entry stays < 256 KiB).
_MAX_LISTED_IDS = 1000
# Base64 works on 3-byte groups: stream audio in multiples of 3 so no padding appears
# mid-string.
_B64_GROUP = 3 * 16 * 1024

_CALL_COLUMNS = ("id, integration_id, platform, platform_call_id, status, direction,"
                 " started_at, ended_at, duration_seconds, sort_time, parties, created_at,"
                 " updated_at, from_index, to_index, restricted_at")


@dataclass(frozen=True)
class Match:
    row: Any
    roles: tuple[str, ...]          # "from" and/or "to"
    parties: dict[str, Any]
    # The unit keys `matches` loaded (KeyRing.prefetch_units), kept for the request: a
    # hold check reopens the parties after the shared cache may have evicted them.
    units: Any = None


def _actor(key_id: str | None) -> dict[str, str]:
    # "key-<id>": an id glued to a word is never mistaken for a number by the audit log.
    return {"type": "tenant", "id": f"key-{key_id}" if key_id else "tenant"}


def _listed(ids: list[str]) -> list[str]:
    return [hash_id(i) for i in ids[:_MAX_LISTED_IDS]]


class SubjectService:
    def __init__(self, services: Any, retention: RetentionService) -> None:
        self.db = services.db
        self.keyring = services.keyring
        self.recordings = services.recordings
        self.clock = services.clock
        self.ingest = services.ingest
        self.retention = retention
        self.audit = retention.audit
        self.cfg = retention.cfg

    # -- requests -------------------------------------------------------------------------
    async def _open(self, tenant_id: str, actor: str | None, kind: str,
                    subject: dict[str, str]) -> dict[str, Any]:
        ring = await self.keyring.for_tenant(tenant_id)
        request_id = str(uuid.uuid4())
        now = self.clock.now()
        row = {"id": request_id, "kind": kind, "status": "processing",
               "received_at": isoformat(now),
               "due_at": isoformat(now + timedelta(days=self.cfg.dsr_due_days))}
        sealed = ring.seal_record(SUBJECT_RECORD, request_id, json.dumps(subject).encode())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO subject_requests (id, tenant_id, kind, status, subject, actor,"
            " received_at, due_at) VALUES (?, ?, ?, 'processing', ?, ?, ?, ?)",
            (request_id, tenant_id, kind, sealed, actor, row["received_at"], row["due_at"])))
        return row

    def _finish_tx(self, tx: WriteTx, tenant_id: str, actor: str | None,
                   request: dict[str, Any], status: str, receipt: dict[str, Any],
                   hashed_ids: list[str] | None = None) -> None:
        now = isoformat(self.clock.now())
        seq = None
        if self.audit is not None:
            details = {"request_id": request["id"], "type": request["kind"],
                       "received_at": request["received_at"], "due_at": request["due_at"],
                       **{k: v for k, v in receipt.items() if k != "held_call_ids"}}
            if receipt.get("held_call_ids"):
                details["held_call_ids_sha256"] = _listed(receipt["held_call_ids"])
            if hashed_ids is not None:
                details["call_ids_sha256"] = hashed_ids
            seq = self.audit.append_in_tx(tx, tenant_id, {
                "kind": "dsr", "actor": _actor(actor), "outcome": status, "details": details})
        tx.execute("UPDATE subject_requests SET status = ?, completed_at = ?, receipt = ?,"
                   " audit_seq = ? WHERE id = ?",
                   (status, now, json.dumps(receipt), seq, request["id"]))

    async def _finish(self, tenant_id: str, actor: str | None, request: dict[str, Any],
                      status: str, receipt: dict[str, Any],
                      hashed_ids: list[str] | None = None) -> dict[str, Any]:
        await self.db.write(lambda tx: self._finish_tx(tx, tenant_id, actor, request, status,
                                                       receipt, hashed_ids))
        return await self.get(tenant_id, request["id"])

    async def get(self, tenant_id: str, request_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            "SELECT id, kind, status, subject, received_at, due_at, completed_at, receipt,"
            " audit_seq FROM subject_requests WHERE id = ? AND tenant_id = ?",
            (request_id, tenant_id))
        if row is None:
            raise not_found("subject request")
        return self._render(await self.keyring.for_tenant(tenant_id), row)

    async def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        if not 1 <= limit <= 500:
            raise invalid("limit", "must be between 1 and 500")
        rows = await self.db.fetchall(
            "SELECT id, kind, status, subject, received_at, due_at, completed_at, receipt,"
            " audit_seq FROM subject_requests WHERE tenant_id = ?"
            " ORDER BY received_at DESC, id DESC LIMIT ?", (tenant_id, limit))
        if not rows:
            return []
        ring = await self.keyring.for_tenant(tenant_id)
        return [self._render(ring, r) for r in rows]

    def _render(self, ring: keys.TenantKeys, row: Any) -> dict[str, Any]:
        subject = json.loads(ring.open_record(SUBJECT_RECORD, row["id"], bytes(row["subject"])))
        out = {"id": row["id"], "kind": row["kind"], "status": row["status"],
               "phone_number": subject.get("number"), "received_at": row["received_at"],
               "due_at": row["due_at"], "completed_at": row["completed_at"],
               "receipt": json.loads(row["receipt"]) if row["receipt"] else None,
               "audit_seq": row["audit_seq"]}
        if subject.get("corrected"):
            out["corrected_number"] = subject["corrected"]
        return out

    # -- matching -------------------------------------------------------------------------
    def _number(self, body: Any, name: str = "phone_number") -> str:
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        return parse_number(body.get(name), name, self.retention.default_region)

    async def matches(self, tenant_id: str, ring: keys.TenantKeys, number: str
                      ) -> list[Match]:
        # Under every index version in use: a reindex under way never makes this miss.
        indexes = ring.blind_indexes(number)
        marks = ",".join("?" * len(indexes))
        # The tenant in each branch: SQLite then reads the two blind-index indexes (a
        # multi-index OR); `tenant_id = ? AND (a OR b)` scanned every call of the tenant
        # (~27 ms at 100 k calls, most of a light subject's erasure).
        rows = await self.db.fetchall(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE (tenant_id = ? AND from_index IN"
            f" ({marks})) OR (tenant_id = ? AND to_index IN ({marks})) ORDER BY sort_time, id",
            (tenant_id, *indexes, tenant_id, *indexes))
        # Opened with the keys this load returned, not through the shared cache: a subject
        # on more segments than the cache holds would otherwise lose the first ones while
        # the last load, and its calls would look erased already.
        units = await self.keyring.prefetch_units(tenant_id, [row["parties"] for row in rows])
        out = []
        for row in rows:
            if row["parties"] is None:
                continue
            try:
                parties = json.loads(ring.open_record(PARTIES_RECORD, row["id"],
                                                      bytes(row["parties"]), units=units))
            except keys.DecryptionError:
                if keys.unit_ref(bytes(row["parties"])) is None:
                    raise
                continue    # its unit key was erased: a restored row the ledger removes
            roles = tuple(r for r in ("from", "to") if parties.get(r) == number)
            if roles:
                out.append(Match(row, roles, parties, units))
        return out

    @staticmethod
    def _still_same_tx(tx: WriteTx, tenant_id: str, chunk: list[Match]) -> list[Match]:
        """The matches whose stored parties are unchanged since they were decrypted (a
        concurrent rectification or deletion drops a call from this unit's work)."""
        ids = [m.row["id"] for m in chunk]
        current = {r["id"]: r["parties"] for r in tx.fetchall(
            f"SELECT id, parties FROM calls WHERE tenant_id = ? AND id IN"
            f" ({','.join('?' * len(ids))})", [tenant_id, *ids])}
        return [m for m in chunk if m.row["id"] in current
                and bytes(current[m.row["id"]]) == bytes(m.row["parties"])]

    def _summary(self, ring: keys.TenantKeys, match: Match, held: bool) -> dict[str, Any]:
        call = CallService._render(ring, match.row)
        call["matched_as"] = list(match.roles)
        call["restricted_at"] = match.row["restricted_at"]
        call["legal_hold"] = held
        return call

    # -- search ---------------------------------------------------------------------------
    async def search(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        number = self._number(body)
        request = await self._open(tenant_id, actor, "search", {"number": number})
        ring = await self.keyring.for_tenant(tenant_id)
        matches = await self.matches(tenant_id, ring, number)
        holds = await self.retention.holds.active(tenant_id, ring)
        calls = [self._summary(ring, m, holds.call_held(
            ring, m.row["id"], m.row["from_index"], m.row["to_index"], m.row["parties"],
            units=m.units)) for m in matches]
        done = await self._finish(tenant_id, actor, request, "completed", {"calls": len(calls)})
        return {"request": done, "calls": calls}

    # -- export ---------------------------------------------------------------------------
    async def export(self, tenant_id: str, actor: str | None, body: Any
                     ) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """The request (status 'processing') and the bundle's bytes. The request completes
        (receipt with counts and the bundle's SHA-256) when the last chunk was taken, or
        fails if the stream is abandoned."""
        number = self._number(body)
        request = await self._open(tenant_id, actor, "export", {"number": number})
        ring = await self.keyring.for_tenant(tenant_id)
        matches = await self.matches(tenant_id, ring, number)
        return request, self._bundle(tenant_id, actor, request, ring, number, matches)

    async def _bundle(self, tenant_id: str, actor: str | None, request: dict[str, Any],
                      ring: keys.TenantKeys, number: str, matches: list[Match]
                      ) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        counts = {"calls": 0, "events": 0, "recordings": 0, "audio_bytes": 0}
        ok = False

        def out(text: str | bytes) -> bytes:
            data = text.encode() if isinstance(text, str) else text
            digest.update(data)
            return data

        try:
            head = {"format": EXPORT_FORMAT, "request": request, "subject": number,
                    "generated_at": isoformat(self.clock.now())}
            yield out(json.dumps(head)[:-1] + ', "calls": [')
            for i, match in enumerate(matches):
                call = CallService._render(ring, match.row)
                call["matched_as"] = list(match.roles)
                call["restricted_at"] = match.row["restricted_at"]
                events = await self.db.fetchall(
                    "SELECT id, kind, status, received_at, occurred_at, body FROM call_events"
                    " WHERE call_id = ? ORDER BY received_at, id", (match.row["id"],))
                await self.keyring.prefetch_units(tenant_id, [e["body"] for e in events])
                call["events"] = [{
                    "id": id_text(e["id"]), "kind": e["kind"], "status": e["status"],
                    "received_at": micros_text(e["received_at"]),
                    "occurred_at": micros_text(e["occurred_at"]),
                    "body": event_body(e["kind"], e["status"], ring.open_record(
                        EVENT_RECORD, id_text(e["id"]), bytes(e["body"])))} for e in events]
                counts["calls"] += 1
                counts["events"] += len(events)
                yield out(("," if i else "") + json.dumps(call)[:-1] + ', "recordings": [')
                recordings = await self.db.fetchall(
                    "SELECT id, source, stats, created_at FROM recordings WHERE call_id = ?"
                    f" AND state IN ({','.join('?' * len(VISIBLE_RECORDING_STATES))})"
                    " ORDER BY created_at, id", (match.row["id"], *VISIBLE_RECORDING_STATES))
                for j, rec in enumerate(recordings):
                    opened = await self.recordings.open(tenant_id, rec["id"])
                    meta = {"id": rec["id"], "state": opened.state, "source": rec["source"],
                            "created_at": rec["created_at"],
                            "content_type": opened.content_type, "length": opened.length,
                            "stats": json.loads(rec["stats"]) if rec["stats"] else None}
                    yield out(("," if j else "") + json.dumps(meta)[:-1] + ', "audio_base64": "')
                    pending = b""
                    async for piece in opened.iter_range():
                        pending += piece
                        cut = len(pending) - len(pending) % _B64_GROUP
                        if cut:
                            yield out(base64.b64encode(pending[:cut]))
                            pending = pending[cut:]
                    if pending:
                        yield out(base64.b64encode(pending))
                    yield out('"}')
                    counts["recordings"] += 1
                    counts["audio_bytes"] += opened.length
                yield out("]}")
            yield out('], "summary": ' + json.dumps(counts) + "}")
            ok = True
        finally:
            receipt = {**counts, "bundle_sha256": digest.hexdigest()} if ok else counts
            await self._finish(tenant_id, actor, request, "completed" if ok else "failed",
                               receipt)

    # -- erase ----------------------------------------------------------------------------
    async def erase(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        number = self._number(body)
        request = await self._open(tenant_id, actor, "erase", {"number": number})
        ring = await self.keyring.for_tenant(tenant_id)
        matches = await self.matches(tenant_id, ring, number)
        totals = dict.fromkeys(DELETED_WITH_CALL, 0)
        erased: list[str] = []
        held: list[str] = []
        # Every unit's keys, deleted once after the last unit (a frequent caller's calls
        # share segments across units: each is rewritten once, not once per unit).
        recorded: list[tuple[uuid.UUID, uuid.UUID]] = []
        try:
            for start in range(0, len(matches), _CHUNK):
                chunk = matches[start:start + _CHUNK]

                sealed_out: list[bytes | None] = []

                def unit(tx: WriteTx, chunk: list[Match] = chunk,
                         sealed_out: list[bytes | None] = sealed_out):
                    del sealed_out[:]   # a retried unit starts over
                    holds = self.retention.holds.active_tx(tx, tenant_id, ring)
                    doomed, kept = [], []
                    for m in self._still_same_tx(tx, tenant_id, chunk):
                        r = m.row
                        if holds.call_held(ring, r["id"], r["from_index"], r["to_index"],
                                           r["parties"], units=m.units):
                            kept.append(r["id"])
                        else:
                            doomed.append(r["id"])
                    counts, blobs = delete_calls_tx(tx, doomed, sealed_out)
                    if doomed and self.audit is not None:
                        self.audit.append_in_tx(tx, tenant_id, {
                            "kind": "deletion_receipt", "actor": _actor(actor),
                            "outcome": "deleted",
                            "details": {"request_id": request["id"], "trigger": "subject_erasure",
                                        "deleted": counts, "ids_sha256": _listed(doomed)}})
                    return counts, blobs, doomed, kept

                counts, blobs, doomed, kept = await self.db.write(unit)
                # The rows are gone: the ledger entry naming them and their keys now, the keys
                # themselves leave the key store after the last unit.
                if self.keyring.units is not None:
                    recorded += await self.keyring.units.record_erasure(
                        tenant_id, sealed_out, rows={"calls": doomed})
                await self.retention.remove_blobs(tenant_id, blobs)
                for k, v in counts.items():
                    totals[k] += v
                erased.extend(doomed)
                held.extend(kept)
        finally:
            # Also when a later unit failed: what the ledger names goes now.
            if recorded:
                await self.keyring.units.delete_recorded(tenant_id, recorded)
        if erased:
            await truncate_wal(self.db)
        if erased and self.ingest is not None:
            self.ingest.forget_known_calls()
        receipt = {"deleted": totals, "held": len(held), "held_call_ids": held}
        status = "completed_with_exceptions" if held else "completed"
        return await self._finish(tenant_id, actor, request, status, receipt, _listed(erased))

    # -- restrict -------------------------------------------------------------------------
    async def restrict(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        number = self._number(body)
        lift = body.get("lift", False)
        if not isinstance(lift, bool):
            raise invalid("lift", "must be true or false")
        request = await self._open(tenant_id, actor, "restrict",
                                   {"number": number, **({"lift": "true"} if lift else {})})
        ring = await self.keyring.for_tenant(tenant_id)
        matches = await self.matches(tenant_id, ring, number)
        now = isoformat(self.clock.now())
        changed: list[str] = []
        unchanged = 0
        for start in range(0, len(matches), _CHUNK):
            chunk = matches[start:start + _CHUNK]

            def unit(tx: WriteTx, chunk: list[Match] = chunk):
                done, same = [], 0
                for m in self._still_same_tx(tx, tenant_id, chunk):
                    if lift:
                        n = tx.execute("UPDATE calls SET restricted_at = NULL, updated_at = ?"
                                       " WHERE id = ? AND restricted_at IS NOT NULL",
                                       (now, m.row["id"]))
                    else:
                        n = tx.execute("UPDATE calls SET restricted_at = ?, updated_at = ?"
                                       " WHERE id = ? AND restricted_at IS NULL",
                                       (now, now, m.row["id"]))
                    if n:
                        done.append(m.row["id"])
                    else:
                        same += 1
                return done, same

            done, same = await self.db.write(unit)
            changed.extend(done)
            unchanged += same
        receipt = ({"lifted": len(changed), "not_restricted": unchanged} if lift
                   else {"restricted": len(changed), "already_restricted": unchanged})
        return await self._finish(tenant_id, actor, request, "completed", receipt,
                                  _listed(changed))

    # -- rectify --------------------------------------------------------------------------
    async def rectify(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        number = self._number(body)
        corrected = self._number(body, "corrected_number")
        if corrected == number:
            raise invalid("corrected_number", "is the same number")
        request = await self._open(tenant_id, actor, "rectify",
                                   {"number": number, "corrected": corrected})
        ring = await self.keyring.for_tenant(tenant_id)
        matches = await self.matches(tenant_id, ring, number)
        now = isoformat(self.clock.now())
        rectified: list[str] = []
        held: list[str] = []
        conflicts = 0
        for start in range(0, len(matches), _CHUNK):
            chunk = matches[start:start + _CHUNK]
            # Sealing is CPU work: done here, the unit only compares and writes.
            prepared = {}
            # Fresh unit keys: the corrected parties never share a key with the old ones.
            units = iter(await self.keyring.units.new_keys(tenant_id, len(chunk))
                         if self.keyring.units is not None else [])
            for m in chunk:
                parties = {r: (corrected if m.parties.get(r) == number else m.parties.get(r))
                           for r in ("from", "to")}
                sealed = ring.seal_record(PARTIES_RECORD, m.row["id"], json.dumps(
                    parties, separators=(",", ":")).encode(), unit=next(units, None))
                # Both indexes recomputed: the kept party's may be under a version a
                # reindex is moving away from.
                prepared[m.row["id"]] = (
                    sealed, *(ring.blind_index(parties[r]) if parties[r] else None
                              for r in ("from", "to")))

            def unit(tx: WriteTx, chunk: list[Match] = chunk, prepared: dict = prepared):
                holds = self.retention.holds.active_tx(tx, tenant_id, ring)
                done, kept, conflict = [], [], 0
                for m in chunk:
                    r = m.row
                    if holds.call_held(ring, r["id"], r["from_index"], r["to_index"],
                                       r["parties"], units=m.units):
                        kept.append(r["id"])
                        continue
                    sealed, from_index, to_index = prepared[r["id"]]
                    if tx.execute("UPDATE calls SET parties = ?, from_index = ?, to_index = ?,"
                                  " updated_at = ? WHERE id = ? AND tenant_id = ? AND parties = ?",
                                  (sealed, from_index, to_index, now, r["id"], tenant_id,
                                   bytes(r["parties"]))):
                        done.append(r["id"])
                    else:
                        conflict += 1
                return done, kept, conflict

            done, kept, conflict = await self.db.write(unit)
            if self.keyring.units is not None:
                # The replaced parties' keys: the old numbers leave every copy too.
                await self.keyring.units.erase(tenant_id, [
                    m.row["parties"] for m in chunk if m.row["id"] in done])
            rectified.extend(done)
            held.extend(kept)
            conflicts += conflict
        if rectified and self.ingest is not None:
            self.ingest.forget_known_calls()
        receipt = {"rectified": len(rectified), "held": len(held), "held_call_ids": held,
                   "changed_concurrently": conflicts}
        status = "completed_with_exceptions" if held or conflicts else "completed"
        return await self._finish(tenant_id, actor, request, status, receipt,
                                  _listed(rectified))


def get_subjects(services: Any) -> SubjectService:
    existing = services.features.get("subjects")
    if existing is not None:
        return existing
    service = SubjectService(services, get_retention(services))
    services.features["subjects"] = service
    return service
