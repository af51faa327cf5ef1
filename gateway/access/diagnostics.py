"""The technical view of one call, for staff under a grant: an allow-list, not a deny-list.

Everything the view returns passes through `project(value, VIEW)`, which keeps only the
keys `VIEW` names and only values of the kind it names, so a field someone adds to a
stored record later stays out of staff hands until it is added here (and to the OpenAPI
schema generated from `VIEW`). What the view never carries: phone numbers in the clear
(parties are masked, `+1415*****00`), DTMF digits, audio, or any audio-derived series
(recording stats are scalars only).

Sources: `calls` (technical columns), `call_events` (status, times, and the decrypted event
body's `diagnostics` codes only), `recordings` (state, `stats` JSON), `blob_keys` (the KEK
version of a recording stored before per-recording keys; null for a recording under its
own key in the key store) and the sealed parties (key versions via
`keys.sealed_version`), the recording fetch queue
(delivery attempts and outcomes) and, if the retention feature published one, the call's
retention state.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import adapters
import keys
from gateway.core.clock import parse_iso
from gateway.errors import not_found
from gateway.ingest.pipeline import EVENT_RECORD, PARTIES_RECORD
from gateway.ingest.stored_event import event_body
from gateway.store import Database
from gateway.store.columns import id_bytes, id_text, micros_text
from gateway.tenants.keyring import KeyRing
from gateway.transparency.entries import find_phone_like

log = logging.getLogger("gateway.diagnostics")

# -- value kinds --------------------------------------------------------------------------
STR, INT, NUM, BOOL, TIME, TOKEN, ID, MASKED = (
    "string", "integer", "number", "boolean", "time", "token", "id", "masked")

# A technical code: an enum member, an error or SIP code. No spaces or '+', so no free text
# and no written phone number; 64 characters is longer than any platform code we know.
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_MASKED_RE = re.compile(r"\+[0-9]{0,4}\*+[0-9]{0,2}")


def _keep(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if kind == TIME:
        return isinstance(value, str) and parse_iso_safe(value)
    if kind == TOKEN:
        return (isinstance(value, str) and bool(_TOKEN_RE.fullmatch(value))
                and find_phone_like(value) is None)
    if kind == ID:
        return (isinstance(value, str) and bool(_ID_RE.fullmatch(value))
                and find_phone_like(value) is None)
    if kind == MASKED:
        return isinstance(value, str) and bool(_MASKED_RE.fullmatch(value))
    return False


def parse_iso_safe(value: str) -> bool:
    try:
        return parse_iso(value) is not None and len(value) <= 40
    except ValueError:
        return False


def project(value: Any, schema: Any) -> Any:
    """Keep only what `schema` allows. A schema is a kind (str), `[schema]` for a list of
    that, or `{key: schema}` for an object with exactly those optional keys. Inside an
    object, a value of the wrong kind is dropped together with its key."""
    if isinstance(schema, str):
        return value if _keep(schema, value) else None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return None
        out = [project(v, schema[0]) for v in value[:100]]
        return [v for v in out if v is not None]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return None
        out = {}
        for key, sub in schema.items():
            if key not in value:
                continue
            kept = project(value[key], sub)
            if kept is None and value[key] is not None:
                continue  # a value of the wrong kind is dropped with its key
            out[key] = kept
        return out
    raise TypeError("bad schema")


# -- the allow-list -------------------------------------------------------------------------
# Event diagnostics the adapters produce: each platform descriptor's `diagnostic_fields`
# (adapters/<platform>.py), codes and numbers only; its kinds "token"/"number" are TOKEN/NUM.
EVENT_DIAGNOSTICS: dict[str, Any] = dict(adapters.EVENT_DIAGNOSTIC_FIELDS)
# Recording technical stats: scalars about the audio and its transport, never a series.
RECORDING_STATS = {name: NUM for name in (
    "sample_rate", "channels", "bits_per_sample", "duration_ms", "duration_seconds", "bytes",
    "frames", "packets", "packets_lost", "packet_loss_ratio", "late_packets",
    "dropped_frames", "jitter_ms", "rms_dbfs", "peak_dbfs", "mean_dbfs", "silence_ms",
    "silence_ratio", "clipped_samples", "clipping_ratio", "gaps", "gap_ms")}
RECORDING_STATS.update({"codec": TOKEN, "container": TOKEN, "source_format": TOKEN})
RETENTION = {"state": TOKEN, "data_class": TOKEN, "delete_after": TIME, "legal_hold": BOOL,
             "policy_days": INT}

VIEW: dict[str, Any] = {
    "call": {
        "id": ID, "integration_id": ID, "platform": TOKEN, "platform_call_id": ID,
        "status": TOKEN, "direction": TOKEN, "started_at": TIME, "ended_at": TIME,
        "duration_seconds": INT, "created_at": TIME, "updated_at": TIME, "restricted": BOOL,
        "key_version": INT, "parties": {"from": MASKED, "to": MASKED},
    },
    "timings": {"first_received_at": TIME, "last_received_at": TIME, "events": INT,
                "setup_seconds": INT, "duration_seconds": INT},
    "status_history": [{"kind": TOKEN, "status": TOKEN, "occurred_at": TIME,
                        "received_at": TIME, "delivery_delay_ms": INT, "sequence": INT,
                        "diagnostics": EVENT_DIAGNOSTICS}],
    "deliveries": [{"id": ID, "state": TOKEN, "attempts": INT, "last_error": TOKEN,
                    "recording_id": ID, "next_attempt_at": TIME, "created_at": TIME,
                    "updated_at": TIME}],
    "recordings": [{"id": ID, "state": TOKEN, "source": TOKEN, "created_at": TIME,
                    "updated_at": TIME, "key_version": INT, "stats": RECORDING_STATS}],
    # One entry per swept data class (gateway/lifecycle/call_state.py).
    "retention": [RETENTION],
    "grant": {"id": ID, "level": TOKEN, "expires_at": TIME, "single_use": BOOL},
}


def json_schema(schema: Any = VIEW) -> dict[str, Any]:
    """The OpenAPI (JSON Schema) form of an allow-list: every object closed."""
    if isinstance(schema, str):
        base = {STR: "string", INT: "integer", NUM: "number", BOOL: "boolean", TIME: "string",
                TOKEN: "string", ID: "string", MASKED: "string"}[schema]
        out: dict[str, Any] = {"type": [base, "null"]}
        if schema == TIME:
            out["format"] = "date-time"
        if schema == MASKED:
            out["pattern"] = _MASKED_RE.pattern
        return out
    if isinstance(schema, list):
        return {"type": "array", "items": json_schema(schema[0])}
    return {"type": ["object", "null"], "additionalProperties": False,
            "properties": {k: json_schema(v) for k, v in schema.items()}}


# -- masking ------------------------------------------------------------------------------------
def mask_number(number: str | None) -> str | None:
    """`+14155550100` -> `+1415*****00`: the country and area prefix and the last two
    digits stay (enough to see a routing or formatting fault), the rest is starred. At most 6
    digits are shown and at least 5 hidden, so short numbers keep less."""
    if not number:
        return None
    digits = "".join(ch for ch in number if ch.isdigit())
    if not digits:
        return None
    n = len(digits)
    hidden = max(5, n - 6)
    shown = n - hidden
    tail = 2 if shown >= 6 else (1 if shown >= 3 else 0)
    head = max(0, min(4, shown - tail))
    return "+" + digits[:head] + "*" * (n - head - tail) + (digits[n - tail:] if tail else "")


# -- the service ----------------------------------------------------------------------------------
class DiagnosticsService:
    def __init__(self, db: Database, keyring: KeyRing, features: dict[str, Any]) -> None:
        self.db = db
        self.keyring = keyring
        self.features = features

    async def technical_view(self, tenant_id: str, call_id: str,
                             grant: dict[str, Any] | None = None) -> dict[str, Any]:
        call = await self.db.fetchone(
            "SELECT id, integration_id, platform, platform_call_id, status, direction,"
            " started_at, ended_at, duration_seconds, parties, restricted_at, created_at,"
            " updated_at FROM calls WHERE id = ? AND tenant_id = ?", (call_id, tenant_id))
        if call is None:
            raise not_found("call")
        ring = await self.keyring.for_tenant(tenant_id)
        parties: dict[str, Any] = {}
        key_version = None
        if call["parties"] is not None:
            sealed = bytes(call["parties"])
            await self.keyring.prefetch_units(tenant_id, [sealed])
            try:
                key_version = keys.sealed_version(sealed)
            except keys.UnitSealed:     # under its own unit key (docs/crypto-formats.md)
                key_version = None
            opened = json.loads(ring.open_record(PARTIES_RECORD, call_id, sealed))
            parties = {"from": mask_number(opened.get("from")),
                       "to": mask_number(opened.get("to"))}
        events = [{**e, "received_at": micros_text(e["received_at"]),
                   "occurred_at": micros_text(e["occurred_at"])} for e in await self.db.fetchall(
            "SELECT id, kind, status, received_at, occurred_at, body FROM call_events"
            " WHERE call_id = ? AND tenant_id = ? ORDER BY received_at, occurred_at, id",
            (call_id, id_bytes(tenant_id)))]
        await self.keyring.prefetch_units(tenant_id, [e["body"] for e in events])
        history = []
        for event in events:
            body: dict[str, Any] = {}
            try:
                body = event_body(event["kind"], event["status"], ring.open_record(
                    EVENT_RECORD, id_text(event["id"]), bytes(event["body"])))
            except (keys.DecryptionError, ValueError):
                log.warning("event body unreadable in a diagnostic view")
            history.append({
                "kind": event["kind"], "status": event["status"],
                "occurred_at": event["occurred_at"], "received_at": event["received_at"],
                "delivery_delay_ms": _delay_ms(event["occurred_at"], event["received_at"]),
                "sequence": body.get("sequence"),
                "diagnostics": body.get("diagnostics") or {}})
        recordings = await self.db.fetchall(
            "SELECT r.id, r.state, r.source, r.created_at, r.updated_at, r.stats,"
            " k.kek_version FROM recordings r LEFT JOIN blob_keys k ON k.object_id = r.id"
            " WHERE r.call_id = ? AND r.tenant_id = ? AND r.state != 'writing'"
            " ORDER BY r.created_at", (call_id, tenant_id))
        received = [e["received_at"] for e in events]
        view = {
            "call": {**{k: call[k] for k in ("id", "integration_id", "platform",
                                             "platform_call_id", "status", "direction",
                                             "started_at", "ended_at", "duration_seconds",
                                             "created_at", "updated_at")},
                     "restricted": call["restricted_at"] is not None,
                     "key_version": key_version, "parties": parties},
            "timings": {"first_received_at": min(received, default=None),
                        "last_received_at": max(received, default=None),
                        "events": len(events),
                        "setup_seconds": _setup_seconds(call["started_at"], events),
                        "duration_seconds": call["duration_seconds"]},
            "status_history": history,
            "deliveries": await self._deliveries(call_id),
            "recordings": [{"id": r["id"], "state": r["state"], "source": r["source"],
                            "created_at": r["created_at"], "updated_at": r["updated_at"],
                            "key_version": r["kek_version"],
                            "stats": _json_or_empty(r["stats"])} for r in recordings],
            "retention": await self._retention(tenant_id, call_id),
            "grant": grant,
        }
        return project(view, VIEW)

    async def _deliveries(self, call_id: str) -> list[dict[str, Any]]:
        fetch = self.features.get("recording_fetch")
        if fetch is None or not hasattr(fetch, "jobs_for_call"):
            return []
        return list(await fetch.jobs_for_call(call_id))

    async def _retention(self, tenant_id: str, call_id: str) -> list[dict[str, Any]] | None:
        """The call's retention state per data class, from the lifecycle area's service
        (`features["retention"]`, gateway/lifecycle/retention.py, started with the app):
        `call_retention_state(tenant_id, call_id) -> [per class] | None`."""
        retention = self.features.get("retention")
        getter = getattr(retention, "call_retention_state", None)
        if getter is None:
            return None
        try:
            return await getter(tenant_id, call_id)
        except Exception as exc:  # a diagnostic view must not fail on an optional part
            log.warning("retention state unavailable: %s", type(exc).__name__)
            return None


def _json_or_empty(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _delay_ms(occurred: str | None, received: str | None) -> int | None:
    if not occurred or not received:
        return None
    return int((parse_iso(received) - parse_iso(occurred)).total_seconds() * 1000)


def _setup_seconds(started_at: str | None, events: list[Any]) -> int | None:
    """Seconds from the call's start (as the platform reported it, else its first event) to
    its answer (the earliest 'in-progress' event), whatever order events arrived in. None
    for a call never answered, and never negative: clocks of the platform and of this
    gateway are not compared (created_at is this gateway's receive time, not a call time)."""
    occurred = [e["occurred_at"] for e in events if e["occurred_at"]]
    answered = [e["occurred_at"] for e in events
                if e["status"] == "in-progress" and e["occurred_at"]]
    start = started_at or min(occurred, default=None)
    seconds = _seconds_between(start, min(answered, default=None))
    return None if seconds is None or seconds < 0 else seconds


def _seconds_between(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    return int((parse_iso(end) - parse_iso(start)).total_seconds())


def get_diagnostics(services: Any) -> DiagnosticsService:
    existing = services.features.get("diagnostics")
    if existing is None:
        existing = DiagnosticsService(services.db, services.keyring, services.features)
        services.features["diagnostics"] = existing
    return existing
