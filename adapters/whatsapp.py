"""WhatsApp Business Calling on the Meta Cloud API (PROTOCOLS.md, "WhatsApp").

Subscription handshake (GET): `hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`.
When the token matches (constant time) the reply is HandshakeReply(200, challenge);
a wrong or missing token raises HandshakeError (a SignatureError with status 403, which is
what Meta expects); a request that is not a subscribe handshake at all is MalformedError.

Notifications (POST), step by step:
1. `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, over the raw
   bytes exactly as received (never a re-serialisation), compared in constant time.
2. Only `changes[].field == "calls"` is read; messages, statuses of messages and every
   other field are dropped (minimisation). Calls for another phone number than the
   integration's `phone_number_id` are dropped too: they belong to another integration.
3. Meta signs no timestamp. Each call's own `timestamp` bounds replays: older than
   MAX_EVENT_AGE or more than 5 minutes ahead -> SignatureError("stale") for the delivery.
   Inside the window the dedupe key (call id + event) stops a replay.

WhatsApp calls produce no recordings: `recording_download` always raises MalformedError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from . import _common as c
from ._platform import DIAG_TOKEN, PlatformDescriptor
from .events import (
    CallEvent,
    Event,
    HandshakeError,
    HandshakeReply,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)

NAME = "whatsapp"

SIGNATURE_HEADER = "x-hub-signature-256"
SIGNATURE_PREFIX = "sha256="

# How old an authentic call event may be. Meta retries a failed webhook delivery with
# decreasing frequency for up to 7 days; a shorter bound would turn a long gateway outage
# into silently lost calls. 7 days + 1 hour of slack for the last retry's own delay. The
# gateway keeps dedupe keys at least this long, which closes the replay window.
MAX_EVENT_AGE = timedelta(days=7, hours=1)

# Structural bounds on one notification: Meta batches at most a few hundred changes; these
# keep a signed-but-hostile body from costing more than a linear scan of 1 MiB.
MAX_ENTRIES = 100
MAX_CHANGES = 100
MAX_CALLS = 100
# An SDP offer from WhatsApp is 1-3 KiB (one audio m-line, ICE candidates); 32 KiB bounds
# what the gateway hands to its WebRTC stack.
MAX_SDP_CHARS = 32 * 1024
# Meta's challenge is a decimal number; we reflect only URL-safe token characters so the
# echoed body can never be markup, whatever content type the gateway serves it with.
MAX_CHALLENGE_CHARS = 256
_CHALLENGE_RE = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_CHALLENGE_CHARS}}}\Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
# SDP (RFC 8866) is line-oriented text: printable ASCII, CR and LF only.
_SDP_RE = re.compile(r"[\x20-\x7e\r\n]*\Z")
_PHONE_NUMBER_ID_RE = re.compile(r"[0-9]{1,32}\Z")
# Query strings of the handshake: three parameters, a few more tolerated.
MAX_QUERY_FIELDS = 20
MAX_VERIFY_TOKEN_CHARS = 256

DIRECTION_MAP = {
    "user_initiated": "inbound",
    "business_initiated": "outbound",
    "inbound": "inbound",
    "outbound": "outbound",
}
# terminate `status` (compared case-insensitively) -> canonical status. Meta documents
# "Completed" and "Failed"; the others are accepted leniently (unverified). A terminate
# whose status is missing or unknown still ends the call: "completed" if it lasted, else
# "failed".
TERMINATE_STATUS = {
    "completed": "completed",
    "failed": "failed",
    "rejected": "failed",
    "busy": "busy",
    "no_answer": "no-answer",
    "missed": "no-answer",
    "canceled": "canceled",
    "cancelled": "canceled",
}
# Business-initiated calls also report progress in `value.statuses` with `type: "call"`
# (unverified shape: accepted leniently). RINGING/ACCEPTED/REJECTED.
CALL_STATUS_UPDATES = {"ringing": "ringing", "accepted": "in-progress", "rejected": "failed"}


# --- credentials --------------------------------------------------------------------------


@c.contained
def validate_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """`app_secret`, `verify_token`, `access_token`, `phone_number_id` (all required; the
    last two are for answering calls through the Graph API)."""
    creds = c.cred_mapping(credentials)
    return {
        "app_secret": c.req_cred(creds, "app_secret", max_len=256),
        "verify_token": c.req_cred(creds, "verify_token", max_len=MAX_VERIFY_TOKEN_CHARS),
        "access_token": c.req_cred(creds, "access_token", max_len=4096),
        "phone_number_id": c.req_cred(creds, "phone_number_id", pattern=_PHONE_NUMBER_ID_RE),
    }


# --- handshake and signature --------------------------------------------------------------


def _handshake(request: WebhookRequest, credentials: Mapping[str, Any]) -> HandshakeReply:
    expected = c.req_cred(credentials, "verify_token", max_len=MAX_VERIFY_TOKEN_CHARS)
    url = c.request_url(request)
    query = url.partition("#")[0].partition("?")[2]
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS, errors="strict"
        )
    except ValueError:
        raise MalformedError("url", "not valid query encoding") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)

    def one(name: str) -> str | None:
        values = params.get(name)
        if values is None:
            return None
        if len(values) != 1:
            raise MalformedError(name, "repeated")
        return values[0]

    if one("hub.mode") != "subscribe":
        raise MalformedError("hub.mode", "must be subscribe")
    token = one("hub.verify_token")
    if token is None or not c.constant_time_equal(token, expected):
        raise HandshakeError()
    challenge = one("hub.challenge")
    if challenge is None or not _CHALLENGE_RE.match(challenge):
        raise MalformedError("hub.challenge", "missing or not a token")
    return HandshakeReply(status=200, body=challenge)


@c.contained
def verify(request: WebhookRequest, credentials: Mapping[str, Any], now: datetime | None = None) -> None:
    """Signature only. Meta signs no timestamp; freshness is checked per call event."""
    creds = c.cred_mapping(credentials)
    secret = c.req_cred(creds, "app_secret", max_len=256)
    body = c.body_bytes(request.body)
    value = c.header(request.headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureError("missing_signature")
    if not value.startswith(SIGNATURE_PREFIX) or not _HEX64_RE.match(value[len(SIGNATURE_PREFIX):]):
        raise SignatureError()
    given = bytes.fromhex(value[len(SIGNATURE_PREFIX):])
    expected = c.hmac_digest(secret.encode("utf-8"), body, "sha256")
    if not c.constant_time_equal(given, expected):
        raise SignatureError()


# --- parsing ------------------------------------------------------------------------------


@c.contained
def verify_and_parse(
    request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
) -> list[Event] | HandshakeReply:
    method = c.method(request)
    creds = c.cred_mapping(credentials)
    if method == "GET":
        return _handshake(request, creds)
    if method != "POST":
        raise MalformedError("method", "must be GET or POST")
    now = c.utc(now)
    verify(request, creds, now)
    own_number_id = c.req_cred(creds, "phone_number_id", max_len=64)
    doc = c.obj(c.load_json(c.body_bytes(request.body)), "body")
    if doc.get("object") != "whatsapp_business_account":
        return []
    events: list[Event] = []
    for i, entry in enumerate(c.opt_list(doc, "entry", "entry", max_items=MAX_ENTRIES)):
        entry = c.obj(entry, f"entry[{i}]")
        changes = c.opt_list(entry, "changes", f"entry[{i}].changes", max_items=MAX_CHANGES)
        for j, change in enumerate(changes):
            path = f"entry[{i}].changes[{j}]"
            change = c.obj(change, path)
            if change.get("field") != "calls":
                continue
            value = c.req_obj(change, "value", f"{path}.value")
            metadata = c.opt_obj(value, "metadata", f"{path}.value.metadata") or {}
            number_id = c.opt_id(metadata, "phone_number_id", f"{path}.value.metadata.phone_number_id")
            if number_id is not None and number_id != own_number_id:
                continue
            for k, call in enumerate(c.opt_list(value, "calls", f"{path}.value.calls", max_items=MAX_CALLS)):
                event = _call(c.obj(call, f"{path}.value.calls[{k}]"), f"{path}.value.calls[{k}]", now)
                if event is not None:
                    events.append(event)
            statuses = c.opt_list(value, "statuses", f"{path}.value.statuses", max_items=MAX_CALLS)
            for k, update in enumerate(statuses):
                event = _status_update(
                    c.obj(update, f"{path}.value.statuses[{k}]"), f"{path}.value.statuses[{k}]", now
                )
                if event is not None:
                    events.append(event)
    return events


def _event_time(container: Mapping[str, Any], path: str, now: datetime) -> datetime | None:
    occurred_at = c.opt_time(container, "timestamp", f"{path}.timestamp", c.parse_unix)
    if occurred_at is not None:
        c.check_window(occurred_at, now, max_age=MAX_EVENT_AGE)
    return occurred_at


def _unix(container: Mapping[str, Any], key: str, path: str) -> datetime | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    # Meta sends seconds; some relays send milliseconds: accept both (unverified).
    return c.parse_unix(value, path, allow_millis=True)


def _direction(container: Mapping[str, Any], path: str) -> str | None:
    raw = c.opt_enum(container, "direction", path)
    return DIRECTION_MAP.get(raw.lower()) if raw else None


def _call(call: Mapping[str, Any], path: str, now: datetime) -> CallEvent | None:
    call_id = c.req_id(call, "id", f"{path}.id")
    event = c.opt_enum(call, "event", f"{path}.event")
    if event not in ("connect", "terminate"):
        return None
    occurred_at = _event_time(call, path, now)
    direction = _direction(call, f"{path}.direction")
    common = dict(
        platform=NAME,
        dedupe_key=f"{call_id}:{event}",
        platform_call_id=call_id,
        direction=direction,
        from_number=c.opt_party(call, "from", f"{path}.from"),
        to_number=c.opt_party(call, "to", f"{path}.to"),
        occurred_at=occurred_at,
    )
    if event == "connect":
        session = c.opt_obj(call, "session", f"{path}.session") or {}
        sdp_type = c.opt_enum(session, "sdp_type", f"{path}.session.sdp_type")
        sdp = c.opt_str(session, "sdp", f"{path}.session.sdp", max_len=MAX_SDP_CHARS,
                        pattern=_SDP_RE)
        # A user-initiated call arrives with the caller's offer: it is ringing at the
        # business. A business-initiated call's connect carries the user's answer: the
        # user picked up.
        status = "in-progress" if direction == "outbound" else "ringing"
        return CallEvent(
            **common,
            status=status,
            started_at=occurred_at if status == "in-progress" else None,
            sdp_offer=sdp if sdp_type == "offer" else None,
        )
    duration = c.opt_int(call, "duration", f"{path}.duration", maximum=c.MAX_DURATION_SECONDS)
    raw_status = c.opt_enum(call, "status", f"{path}.status")
    status = TERMINATE_STATUS.get(raw_status.lower()) if raw_status else None
    if status is None:
        status = "completed" if duration else "failed"
    diagnostics: dict[str, Any] = {}
    codes = []
    for error in c.opt_list(call, "errors", f"{path}.errors", max_items=10):
        code = c.token_or_none(error.get("code")) if isinstance(error, dict) else None
        if code is not None:
            codes.append(code)
    if codes:
        diagnostics["error_codes"] = codes
    return CallEvent(
        **common,
        status=status,
        started_at=_unix(call, "start_time", f"{path}.start_time"),
        ended_at=_unix(call, "end_time", f"{path}.end_time"),
        duration_seconds=duration,
        diagnostics=diagnostics,
    )


def _status_update(update: Mapping[str, Any], path: str, now: datetime) -> CallEvent | None:
    if update.get("type") != "call":
        return None  # a message status: not ours
    raw = c.opt_enum(update, "status", f"{path}.status")
    status = CALL_STATUS_UPDATES.get(raw.lower()) if raw else None
    if status is None:
        return None
    call_id = c.req_id(update, "id", f"{path}.id")
    return CallEvent(
        platform=NAME,
        dedupe_key=f"{call_id}:status:{raw.lower()}",
        platform_call_id=call_id,
        status=status,
        direction="outbound",
        occurred_at=_event_time(update, path, now),
    )


# --- answering helpers (pure) -------------------------------------------------------------


def prepare_answer_sdp(sdp: str) -> str:
    """WhatsApp accepts only SHA-256 DTLS fingerprints: drop every other `a=fingerprint`
    line (aiortc offers sha-256, sha-384 and sha-512) from the answer before sending it."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept = [
        line
        for line in lines
        if not line.lower().startswith("a=fingerprint:")
        or line.lower().startswith("a=fingerprint:sha-256 ")
    ]
    return "\r\n".join(kept)


# --- recording download -------------------------------------------------------------------


@c.contained
def recording_download(
    recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, str]]:
    """WhatsApp produces no recordings (the gateway records the media it terminates)."""
    raise MalformedError("platform", "whatsapp provides no recordings")


PLATFORM = PlatformDescriptor(
    name=NAME,
    replay_window=MAX_EVENT_AGE + c.MAX_FUTURE_SKEW,
    validate_credentials=validate_credentials,
    verify_and_parse=verify_and_parse,
    verify=verify,
    recording_download=recording_download,
    required_credentials=("app_secret", "verify_token", "access_token", "phone_number_id"),
    # WhatsApp has no platform recordings: audio arrives live over WebRTC.
    recording_hosts=(),
    diagnostic_fields={"error_codes": [DIAG_TOKEN]},
)
