"""The ingest pipeline: verified platform events -> minimised, encrypted, durable rows.

For each canonical event: dedupe on the platform's idempotency key, normalise the parties
to E.164, seal them and blind-index them, merge the event into the call (statuses never
regress; a late terminal event still fills end time and duration), and append the
minimised event. All events of one delivery go in one write unit, so they are durable
together before the platform gets its 2xx.

Writes: a delivery's unit runs one by one (`_unit`: its statements per event) or, when
several deliveries share a group-commit batch, set-based with them
(gateway/ingest/set_write.py: a few statements for the whole batch, the same merge rules
applied in memory, in order; on SQLite in the writer process). Both give the same rows;
the set-based step hands anything unusual to the one-by-one path, so the merge rules exist
twice on purpose: `_merge_call` here and `set_write._merge_in_memory` must agree.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import adapters
import keys
from adapters.events import (
    TERMINAL_STATUSES,
    CallEvent,
    Event,
    HandshakeReply,
    RecordingAvailable,
    WebhookRequest,
)
from gateway.core.clock import Clock, isoformat
from gateway.core.metrics import Metrics
from gateway.core.phone import try_normalise_party
from gateway.errors import not_found
from gateway.ingest import set_write
from gateway.ingest.integrations import Integration, IntegrationService
from gateway.ingest.set_write import MERGE_COLUMNS, duration_from_answer, merge_status
from gateway.ingest.storable import compact_json, dedupe_hash, unusable_field
from gateway.ingest.stored_event import sealed_event_body
from gateway.store import Database, WriteTx, sealed
from gateway.store.columns import datetime_micros, fold_dedupe_key, id_bytes, micros
from gateway.store.ids import new_id
from gateway.store.writer_process import RemoteStep
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.ingest")
PARTIES_RECORD = "call-parties"
# How many (integration, platform call id) pairs the ingest path remembers as stored with
# their parties; a forgotten one only costs one normalise-and-seal again.
KNOWN_CALLS_CACHE = 50_000
EVENT_RECORD = "call-event"
# Key rotation reseals these columns (gateway/store/sealed.py).
sealed.register(sealed.SealedColumn("calls", "parties", PARTIES_RECORD, keyset=("sort_time", "id")))
sealed.register(sealed.SealedColumn("call_events", "body", EVENT_RECORD,
                                    keyset=("received_at", "id")))

# Plain slotted classes, not frozen: a frozen dataclass sets each field through
# object.__setattr__, and every event makes one of these (issue 12).
@dataclass(slots=True)
class _PreparedEvent:
    event: Event
    dedupe: bytes
    event_id: str
    sealed_body: bytes
    new_call_id: str            # used only if the event creates the call
    from_party: str | None
    to_party: str | None
    new_call_parties: tuple[bytes | None, int | None, int | None]
    # The unit key new_call_parties is sealed under (None without a key store); a call
    # that gets its parties late is sealed under it too.
    parties_unit: keys.UnitKey | None = None
    # True when normalising and sealing the parties was skipped because this process
    # believed the call already had them stored (the known-call cache).
    parties_skipped: bool = False
    # set_write.Item's fields as a plain tuple, for the set-based step.
    row: tuple[Any, ...] = ()


@dataclass(slots=True)
class _Delivery:
    """What a delivery's write unit carries for `IngestService._write_together`."""
    ring: keys.TenantKeys
    integration: Integration
    prepared: list[_PreparedEvent]
    now: str


class _PartiesNeeded(Exception):
    """The known-call cache was stale: the call is gone or has no parties (another replica
    or an erasure removed them). The delivery is prepared again with its parties."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    # Events of a validly signed delivery that carried a field no later step can use (see
    # `unusable_field`): answered 2xx so the platform stops retrying, counted, not stored.
    rejected: int = 0
    call_ids: list[str] = field(default_factory=list)
    recordings: list[tuple[str, RecordingAvailable]] = field(default_factory=list)
    # Every accepted (not duplicate) event with the id of the call it landed on.
    events: list[tuple[str, Event]] = field(default_factory=list)
    # Recording announcements that were duplicates, with their call: announced to the
    # subscribers again (they are idempotent), so a crash between the delivery's commit and
    # the fetch job's leaves no recording behind once the platform redelivers.
    redelivered_recordings: list[tuple[str, RecordingAvailable]] = field(
        default_factory=list)


class IngestService:
    def __init__(self, db: Database, keyring: KeyRing, integrations: IntegrationService,
                 clock: Clock, metrics: Metrics, *, default_region: str = "") -> None:
        self.db = db
        self.keyring = keyring
        self.integrations = integrations
        self.clock = clock
        self.metrics = metrics
        self.default_region = default_region
        # Calls known to exist with their parties stored: later events of the same call
        # need no normalising or sealing (most events are status updates of a known call).
        self._calls_with_parties: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Called after a delivery is durable, with each recording announcement, new or
        # redelivered (so subscribers must be idempotent; the recording fetch queue
        # subscribes here).
        self.on_recording_available: list[Callable[[Integration, str, RecordingAvailable],
                                                   Any]] = []
        # Called after a delivery is durable, with its accepted events and their call ids
        # (live media answers WhatsApp `connect` offers here). Subscribers must not block:
        # the platform is still waiting for its 2xx.
        self.on_events: list[Callable[[Integration, list[tuple[str, Event]]], Any]] = []

    async def handle_webhook(self, platform: str, integration_id: str,
                             request: WebhookRequest) -> IngestResult | HandshakeReply:
        integration = await self.integrations.load_for_delivery(platform, integration_id)
        adapter = adapters.get_adapter(platform)
        now = self.clock.now()
        try:
            parsed = adapter.verify_and_parse(request, integration.credentials, now)
        except adapters.MalformedError as exc:
            if not self._signed_by_platform(adapter, request, integration, now):
                self.metrics.count_webhook(platform, exc.outcome)
                raise
            # Authentic but unusable: a retry could never succeed, and every platform
            # retries a non-2xx, so it is acknowledged and counted, never stored.
            log.warning("webhook delivery rejected: unusable body",
                        extra={"platform": platform, "field": exc.field})
            self.metrics.count_webhook(platform, "rejected")
            return IngestResult(rejected=1)
        except adapters.AdapterError as exc:
            self.metrics.count_webhook(platform, exc.outcome)
            raise
        if isinstance(parsed, HandshakeReply):
            self.metrics.count_webhook(platform, "handshake")
            return parsed
        usable = []
        rejected = 0
        for event in parsed:
            field_name = unusable_field(event)
            if field_name is None:
                usable.append(event)
                continue
            rejected += 1
            # The field's name only: its value may be a phone number.
            log.warning("webhook event rejected: unusable field",
                        extra={"platform": platform, "field": field_name})
        if rejected:
            self.metrics.count_webhook(platform, "rejected", rejected)
        if not usable and rejected:
            return IngestResult(rejected=rejected)
        result = await self.ingest_events(integration, usable)
        result.rejected = rejected
        if result.accepted:
            self.metrics.count_webhook(platform, "accepted")
        elif result.duplicates:
            self.metrics.count_webhook(platform, "duplicate")
        else:
            self.metrics.count_webhook(platform, "empty")
        for call_id, recording in result.recordings + result.redelivered_recordings:
            for subscriber in self.on_recording_available:
                await subscriber(integration, call_id, recording)
        if result.events:
            for subscriber in self.on_events:
                await subscriber(integration, result.events)
        return result

    @staticmethod
    def _signed_by_platform(adapter: Any, request: WebhookRequest, integration: Integration,
                            now: Any) -> bool:
        """True if the delivery carries the platform's valid signature (checked on its own:
        the adapter refused the body, maybe before or after checking it)."""
        if adapter.verify is None or request.method != "POST":
            return False    # deliveries are POSTs; anything else stays a refusal
        try:
            adapter.verify(request, integration.credentials, now)
        except adapters.AdapterError:
            return False
        return True

    async def ingest_events(self, integration: Integration, events: Sequence[Event]
                            ) -> IngestResult:
        ring = await self.keyring.for_tenant(integration.tenant_id)
        now = isoformat(self.clock.now())
        # Everything that costs CPU (normalising, sealing, hashing) happens here, on the
        # event loop; the write unit below only runs statements, so the single writer
        # thread spends its time on SQL and the group commit stays short.
        prepared = await self._prepare_all(ring, integration, events)
        # The calls are remembered as stored with their parties when this write is queued,
        # not when it commits: the platform sends a call's next events at once, and each
        # that finds the call here skips normalising and sealing its parties. Such a
        # delivery is queued behind this one and batches commit in queue order, so it
        # finds the call; should this write fail, it is refused as stale (_PartiesNeeded)
        # and prepared again with its parties.
        self._remember_calls(integration, prepared)
        try:
            result = await self.db.write(self._unit(ring, integration, prepared, now))
        except _PartiesNeeded:
            self._forget_calls(integration, prepared)
            prepared = await self._prepare_all(ring, integration, events, use_cache=False)
            self._remember_calls(integration, prepared)
            try:
                result = await self.db.write(self._unit(ring, integration, prepared, now))
            except BaseException:
                self._forget_calls(integration, prepared)
                raise
        except BaseException:
            self._forget_calls(integration, prepared)
            raise
        return result

    async def _prepare_all(self, ring: keys.TenantKeys, integration: Integration,
                           events: Sequence[Event], *, use_cache: bool = True
                           ) -> list[_PreparedEvent]:
        """Normalise, then take the unit keys the records need (one per event body, one
        per set of parties: durable in the key store, one batched write shared with
        concurrent deliveries), then seal."""
        parties = [self._parties(integration, event, use_cache) for event in events]
        needed = sum(1 + (1 if p[0] or p[1] else 0) for p in parties)
        units = iter(await self.keyring.units.new_keys(integration.tenant_id, needed)
                     if self.keyring.units is not None else [])
        return [self._prepare(ring, event, p, units) for event, p in zip(events, parties, strict=True)]

    def _unit(self, ring: keys.TenantKeys, integration: Integration,
              prepared: list[_PreparedEvent], now: str) -> Callable[[WriteTx], IngestResult]:
        # The same unit written one by one (below) or set-based with the other deliveries
        # of its group-commit batch (`_write_together`); both give the same rows.
        def unit(tx: WriteTx) -> IngestResult:
            # Checked inside the transaction, not only against this process's credential
            # cache: a delivery for an integration (or tenant) that any replica has
            # disabled or offboarded is refused, atomically with the write.
            if tx.fetchone(
                    "SELECT 1 FROM integrations i JOIN tenants t ON t.id = i.tenant_id"
                    " WHERE i.id = ? AND i.disabled_at IS NULL AND t.state = 'active'",
                    (integration.id,)) is None:
                raise not_found("integration")
            result = IngestResult()
            for item in prepared:
                dedupe = fold_dedupe_key(integration.id, item.dedupe)
                seen = tx.fetchone(
                    "SELECT call_id FROM call_events WHERE dedupe_key = ?", (dedupe,))
                if seen is not None:
                    result.duplicates += 1
                    if isinstance(item.event, RecordingAvailable):
                        result.redelivered_recordings.append((seen["call_id"], item.event))
                    continue
                call_id = self._merge_call(tx, ring, integration, item, now)
                event = item.event
                tx.execute(
                    "INSERT INTO call_events (id, tenant_id, call_id, dedupe_key, kind,"
                    " status, received_at, occurred_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (id_bytes(item.event_id), id_bytes(integration.tenant_id), call_id, dedupe,
                     "call" if isinstance(event, CallEvent) else "recording",
                     event.status if isinstance(event, CallEvent) else None, micros(now),
                     datetime_micros(event.occurred_at), item.sealed_body))
                result.accepted += 1
                result.call_ids.append(call_id)
                result.events.append((call_id, event))
                if isinstance(event, RecordingAvailable):
                    result.recordings.append((call_id, event))
            return result
        unit.together = self._write_together    # type: ignore[attr-defined]
        unit.remote = self._remote_step         # type: ignore[attr-defined]
        unit.delivery = _Delivery(ring, integration, prepared, now)  # type: ignore[attr-defined]
        return unit

    # The same step for a writer process (gateway/store/writer_process.py): only plain
    # tuples cross, never a key or an event object.
    _remote_step = RemoteStep("gateway.ingest.set_write:write_deliveries",
                              encode=lambda units: IngestService.encode_deliveries(units),
                              decode=lambda units, out: IngestService.decode_outcomes(units, out))

    def _write_together(self, tx: WriteTx, units: list[Any]) -> list[tuple[bool, Any]]:
        """Several deliveries' units as a few statements (gateway/ingest/set_write.py);
        anything unusual raises `set_write.OneByOne`: the backend undoes this step and runs
        the units one by one."""
        return self.decode_outcomes(units, set_write.write_deliveries(
            tx, self.encode_deliveries(units)))

    @staticmethod
    def encode_deliveries(units: list[Any]) -> list[tuple[Any, ...]]:
        """The units' deliveries as set_write.Delivery's fields, plain tuples: no keys, no
        event objects."""
        out = []
        for unit in units:
            d: _Delivery = unit.delivery
            integration = d.integration
            out.append((integration.id, integration.tenant_id, integration.platform, d.now,
                        [item.row for item in d.prepared]))
        return out

    @staticmethod
    def decode_outcomes(units: list[Any], outcomes: list[set_write.Outcome]
                        ) -> list[tuple[bool, Any]]:
        """set_write's outcomes as each unit's IngestResult (or its error)."""
        results: list[tuple[bool, Any]] = []
        for unit, outcome in zip(units, outcomes, strict=True):
            if outcome is None:
                results.append((False, not_found("integration")))
                continue
            result = IngestResult()
            for item, (call_id, accepted) in zip(unit.delivery.prepared, outcome, strict=True):
                event = item.event
                if not accepted:
                    result.duplicates += 1
                    if isinstance(event, RecordingAvailable):
                        result.redelivered_recordings.append((call_id, event))
                    continue
                result.accepted += 1
                result.call_ids.append(call_id)
                result.events.append((call_id, event))
                if isinstance(event, RecordingAvailable):
                    result.recordings.append((call_id, event))
            results.append((True, result))
        return results

    def forget_known_calls(self) -> None:
        """Call after deleting or rewriting calls (erasure, retention, rectification)."""
        self._calls_with_parties.clear()

    def _remember_calls(self, integration: Integration, prepared: list[_PreparedEvent]
                        ) -> None:
        known = self._calls_with_parties
        for item in prepared:
            if item.from_party or item.to_party:
                key = (integration.id, item.event.platform_call_id)
                known[key] = None
                known.move_to_end(key)
        while len(known) > KNOWN_CALLS_CACHE:
            known.popitem(last=False)

    def _forget_calls(self, integration: Integration, prepared: list[_PreparedEvent]
                      ) -> None:
        for item in prepared:
            self._calls_with_parties.pop((integration.id, item.event.platform_call_id), None)

    def _parties(self, integration: Integration, event: Event, use_cache: bool
                 ) -> tuple[str | None, str | None, bool]:
        """(from, to, skipped): the normalised parties, unless this process believes the
        call already has them stored (the known-call cache)."""
        from_party = to_party = None
        known = use_cache and (integration.id, event.platform_call_id) in \
            self._calls_with_parties
        if isinstance(event, CallEvent) and not known:
            from_party = try_normalise_party(event.from_number, self.default_region)
            to_party = try_normalise_party(event.to_number, self.default_region)
        return from_party, to_party, known and isinstance(event, CallEvent) and bool(
            event.from_number or event.to_number)

    def _prepare(self, ring: keys.TenantKeys, event: Event,
                 parties: tuple[str | None, str | None, bool], units: Any) -> _PreparedEvent:
        event_id = new_id()
        from_party, to_party, skipped = parties
        # Text times for the calls row and the set-based merge; the sealed body keeps
        # integer microseconds (gateway/ingest/stored_event.py).
        occurred = isoformat(event.occurred_at)
        is_call = isinstance(event, CallEvent)
        if is_call:
            started, ended = isoformat(event.started_at), isoformat(event.ended_at)
        else:
            started = ended = None
        # A call believed stored with its parties needs no new id: if it is not there after
        # all, both write paths refuse the item before using one and it is prepared again.
        new_call_id = "" if skipped else new_id()
        body_unit = next(units, None)
        parties_unit = next(units, None) if from_party or to_party else None
        dedupe = dedupe_hash(event.dedupe_key)
        sealed_body = ring.seal_record(EVENT_RECORD, event_id, sealed_event_body(event),
                                       unit=body_unit)
        new_call_parties = self._seal_parties(ring, new_call_id, from_party, to_party,
                                              parties_unit)
        # set_write.Item's fields, as a plain tuple: what the set-based step gets (pickled
        # to the SQLite writer process, where a tuple costs far less than a NamedTuple).
        row = (dedupe, event_id, sealed_body, new_call_id, bool(from_party or to_party),
               skipped, *new_call_parties, is_call, event.platform_call_id,
               event.platform_session_id, event.status if is_call else None,
               event.direction if is_call else None, started, ended,
               event.duration_seconds if is_call else None,
               event.sequence if is_call else None, occurred)
        return _PreparedEvent(
            event=event, dedupe=dedupe, event_id=event_id, sealed_body=sealed_body,
            new_call_id=new_call_id, from_party=from_party, to_party=to_party,
            new_call_parties=new_call_parties, parties_unit=parties_unit,
            parties_skipped=skipped, row=row)

    def _merge_call(self, tx: WriteTx, ring: keys.TenantKeys, integration: Integration,
                    item: _PreparedEvent, now_text: str) -> str:
        event = item.event
        # Locked until the commit: the status merge below is a read-modify-write, and on
        # PostgreSQL another replica may be merging an event of the same call right now.
        row = tx.fetchone(
            f"SELECT {MERGE_COLUMNS} FROM calls WHERE integration_id = ? AND"
            " platform_call_id = ?", (integration.id, event.platform_call_id),
            for_update=True)
        if row is None and event.platform_session_id:
            row = self._call_by_session(tx, integration, event)
        if item.parties_skipped and (row is None or row["parties"] is None):
            raise _PartiesNeeded
        if not isinstance(event, CallEvent):
            if row is not None:
                return row["id"]
            # A recording announced before any call event: the call exists from now on.
            event = CallEvent(platform=event.platform, dedupe_key=event.dedupe_key,
                              platform_call_id=event.platform_call_id)
        started = isoformat(event.started_at)
        ended = isoformat(event.ended_at)

        if row is None:
            call_id = item.new_call_id
            parties, from_index, to_index = item.new_call_parties
            tx.execute(
                "INSERT INTO calls (id, tenant_id, integration_id, platform, platform_call_id,"
                " platform_session_id, status, direction, started_at, ended_at,"
                " duration_seconds, last_sequence, sort_time, parties, from_index, to_index,"
                " created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, integration.tenant_id, integration.id, integration.platform,
                 event.platform_call_id, item.event.platform_session_id, event.status,
                 event.direction, started, ended, event.duration_seconds, event.sequence,
                 started or now_text, parties, from_index, to_index, now_text, now_text))
            return call_id

        call_id = row["id"]
        status = merge_status(row["status"], event.status)
        # Earliest known start wins; end time and duration are filled whenever reported
        # (a late 'completed' after an out-of-order terminal still completes the record).
        new_started = min(filter(None, [row["started_at"], started]), default=None)
        new_ended = ended or row["ended_at"]
        duration = event.duration_seconds if event.duration_seconds is not None \
            else row["duration_seconds"]
        if duration is None and new_ended and status in TERMINAL_STATUSES:
            duration = duration_from_answer(
                tx, call_id, isoformat(event.occurred_at) if event.status == "in-progress"
                else None, new_ended)
        sequence = max(filter(lambda v: v is not None, [row["last_sequence"], event.sequence]),
                       default=None)
        update_parties = row["parties"] is None and (item.from_party or item.to_party)
        parties_values: tuple = ()
        if update_parties:
            # Rare: the parties arrive after the call was created without them. The sealed
            # form is bound to the call's own id, so it is sealed here.
            parties_values = self._seal_parties(ring, call_id, item.from_party, item.to_party,
                                                item.parties_unit)
        tx.execute(
            "UPDATE calls SET status = ?, direction = COALESCE(direction, ?), started_at = ?,"
            " ended_at = ?, duration_seconds = ?, last_sequence = ?,"
            " sort_time = COALESCE(?, sort_time), updated_at = ?,"
            " platform_session_id = COALESCE(platform_session_id, ?)"
            + (", parties = ?, from_index = ?, to_index = ?" if update_parties else "")
            + " WHERE id = ?",
            (status, event.direction, new_started, new_ended, duration, sequence, new_started,
             now_text, event.platform_session_id) + parties_values + (call_id,))
        return call_id

    @staticmethod
    def _call_by_session(tx: WriteTx, integration: Integration, event: Event) -> Any:
        """Link an event to a call through the platform's session id when its own call id
        is unknown. A recording (Vonage announces them per conversation) lands on the
        conversation's first leg. A call event adopts the placeholder call a recording
        created before any event of the call arrived (keyed by the session id itself)."""
        if isinstance(event, RecordingAvailable):
            return tx.fetchone(
                f"SELECT {MERGE_COLUMNS} FROM calls WHERE integration_id = ? AND"
                " platform_session_id = ? ORDER BY created_at, id LIMIT 1",
                (integration.id, event.platform_session_id), for_update=True)
        row = tx.fetchone(
            f"SELECT {MERGE_COLUMNS} FROM calls WHERE integration_id = ? AND"
            " platform_call_id = ? AND platform_session_id = ? AND status IS NULL",
            (integration.id, event.platform_session_id, event.platform_session_id),
            for_update=True)
        if row is not None:
            tx.execute("UPDATE calls SET platform_call_id = ? WHERE id = ?",
                       (event.platform_call_id, row["id"]))
        return row

    @staticmethod
    def _seal_parties(ring: keys.TenantKeys, call_id: str, from_party: str | None,
                      to_party: str | None, unit: keys.UnitKey | None = None
                      ) -> tuple[bytes | None, int | None, int | None]:
        if from_party is None and to_party is None:
            return None, None, None
        sealed = ring.seal_record(PARTIES_RECORD, call_id, compact_json(
            {"from": from_party, "to": to_party}).encode(), unit=unit)
        return (sealed, ring.blind_index(from_party) if from_party else None,
                ring.blind_index(to_party) if to_party else None)
