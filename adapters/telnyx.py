"""Telnyx Call Control (API v2) webhooks (PROTOCOLS.md, "Telnyx").

Verification, step by step:
1. `telnyx-signature-ed25519` (base64 of a 64-byte Ed25519 signature) and
   `telnyx-timestamp` (Unix seconds) must be present.
2. signed bytes = `{timestamp}|{raw body}`; verify with the integration's public key
   (base64 of the raw 32-byte key, RFC 8032 Ed25519).
3. |now - timestamp| must not exceed 300 seconds (checked after authenticity, so "stale"
   only ever describes an authentic delivery).

Deliveries can be duplicated and out of order: `data.id` is the dedupe key and
`data.occurred_at` the ordering hint.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import _common as c
from ._platform import DIAG_NUMBER, DIAG_TOKEN, UPGRADE_TOKEN, MediaStream, PlatformDescriptor
from .events import (
    CallEvent,
    Event,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)
from .media import telnyx as media_telnyx

NAME = "telnyx"

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

# Telnyx's documented tolerance for `telnyx-timestamp`, applied in both directions.
TIMESTAMP_TOLERANCE = timedelta(seconds=300)
# RFC 8032 section 5.1.5/5.1.6: public keys are 32 bytes, signatures 64.
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# base64 of 64 bytes is 88 characters; some slack for whitespace-free variants.
MAX_SIGNATURE_CHARS = 128
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}\Z")
# API keys are "KEY" + base32-ish text (~60 chars); any printable token up to 256.
_API_KEY_RE = re.compile(r"[\x21-\x7e]{1,256}\Z")

CALL_EVENTS = ("call.initiated", "call.answered", "call.hangup")
RECORDING_EVENT = "call.recording.saved"

DIRECTION_MAP = {"incoming": "inbound", "outgoing": "outbound"}

# hangup_cause -> canonical status. Telnyx's documented causes; anything else (including
# "unspecified") means the call ended without a reason we can classify: "completed", with
# the raw cause kept in diagnostics for whoever investigates.
HANGUP_STATUS = {
    "normal_clearing": "completed",
    "time_limit": "completed",
    "user_busy": "busy",
    "timeout": "no-answer",
    "no_answer": "no-answer",
    "originator_cancel": "canceled",
    "call_rejected": "failed",
    "not_found": "failed",
    "unallocated_number": "failed",
}
UNKNOWN_HANGUP_STATUS = "completed"

# call_quality_stats: per direction, only these numeric fields are kept.
QUALITY_DIRECTIONS = ("inbound", "outbound")
QUALITY_FIELDS = (
    "jitter_max_variance",
    "jitter_packet_count",
    "mos",
    "packet_count",
    "skip_packet_count",
)

# Telnyx serves recordings from pre-signed S3 URLs (X-Amz-Signature in the query, valid 10
# minutes): those carry their own authorisation, and S3 rejects a request that also has an
# Authorization header ("Only one auth mechanism allowed"). The API key is therefore sent
# only to Telnyx's own API hosts, never to a third party.
API_HOSTS = (".telnyx.com",)
RECORDING_FORMATS = (("wav", "audio/wav"), ("mp3", "audio/mpeg"))
CHANNELS = {"single": 1, "dual": 2}


# --- credentials --------------------------------------------------------------------------


def _public_key(value: str, field: str) -> Ed25519PublicKey:
    raw = c.b64decode_lenient(value)
    if raw is None or len(raw) != PUBLIC_KEY_BYTES:
        raise MalformedError(field, "must be base64 of a 32-byte Ed25519 key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise MalformedError(field, "must be base64 of a 32-byte Ed25519 key") from None


@c.contained
def validate_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """`public_key` (required), `api_key` (optional: needed only to download recordings
    from Telnyx API hosts)."""
    creds = c.cred_mapping(credentials)
    public_key = c.req_cred(creds, "public_key", max_len=128)
    raw = _public_key(public_key, "public_key").public_bytes_raw()
    result: dict[str, Any] = {"public_key": base64.b64encode(raw).decode("ascii")}
    api_key = c.cred_str(creds, "api_key", required=False, pattern=_API_KEY_RE)
    if api_key is not None:
        result["api_key"] = api_key
    return result


# --- signature ----------------------------------------------------------------------------


@c.contained
def verify(request: WebhookRequest, credentials: Mapping[str, Any], now: datetime) -> None:
    creds = c.cred_mapping(credentials)
    key = _public_key(
        c.req_cred(creds, "public_key", max_len=128), "credentials.public_key"
    )
    now = c.utc(now)
    body = c.body_bytes(request.body)
    signature = c.header(request.headers, SIGNATURE_HEADER)
    timestamp = c.header(request.headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureError("missing_signature")
    if len(signature) > MAX_SIGNATURE_CHARS or not _TIMESTAMP_RE.match(timestamp):
        raise SignatureError()
    raw_signature = c.b64decode_lenient(signature)
    if raw_signature is None or len(raw_signature) != SIGNATURE_BYTES:
        raise SignatureError()
    try:
        key.verify(raw_signature, timestamp.encode("ascii") + b"|" + body)
    except InvalidSignature:
        raise SignatureError() from None
    c.check_window(
        c.parse_unix(timestamp, TIMESTAMP_HEADER),
        now,
        max_age=TIMESTAMP_TOLERANCE,
        max_future=TIMESTAMP_TOLERANCE,
    )


# --- parsing ------------------------------------------------------------------------------


@c.contained
def verify_and_parse(
    request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
) -> list[Event]:
    if c.method(request) != "POST":
        raise MalformedError("method", "must be POST")
    verify(request, credentials, now)
    doc = c.obj(c.load_json(c.body_bytes(request.body)), "body")
    data = c.req_obj(doc, "data", "data")
    event_type = c.opt_enum(data, "event_type", "data.event_type")
    if event_type in CALL_EVENTS:
        return [_call_event(data, event_type)]
    if event_type == RECORDING_EVENT:
        return _recording(data)
    # Everything else (call.bridged, call.dtmf.received, speak/playback events, ...) is not
    # call metadata this gateway keeps: acknowledged and dropped.
    return []


def _call_id(payload: Mapping[str, Any]) -> str:
    """The call's key: `call_control_id`, because it is the one id every Call Control
    webhook and the media stream's `start` frame share (media frames carry no leg id), so
    a live recording joins the call its webhooks created. `call_leg_id` is the fallback
    for payloads without a control id."""
    control = c.opt_id(payload, "call_control_id", "data.payload.call_control_id")
    return control or c.req_id(payload, "call_leg_id", "data.payload.call_leg_id")


def _call_event(data: Mapping[str, Any], event_type: str) -> CallEvent:
    event_id = c.req_id(data, "id", "data.id")
    occurred_at = c.opt_time(data, "occurred_at", "data.occurred_at", c.parse_iso8601)
    payload = c.req_obj(data, "payload", "data.payload")
    raw_direction = c.opt_enum(payload, "direction", "data.payload.direction")
    direction = DIRECTION_MAP.get(raw_direction) if raw_direction else None
    ended_at = None
    diagnostics: dict[str, Any] = {}
    if event_type == "call.initiated":
        # An incoming call is offered to the application: it is ringing at the tenant. An
        # outgoing one has been created and is being dialled: canonical "queued".
        status = "ringing" if direction == "inbound" else "queued"
    elif event_type == "call.answered":
        status = "in-progress"
    else:
        cause = c.token_or_none(payload.get("hangup_cause"))
        status = HANGUP_STATUS.get(cause or "", UNKNOWN_HANGUP_STATUS)
        # Telnyx's hangup has no end_time (PROTOCOLS.md): the event time is the end.
        ended_at = (
            c.opt_time(payload, "end_time", "data.payload.end_time", c.parse_iso8601)
            or occurred_at
        )
        diagnostics = _hangup_diagnostics(payload, cause)
    return CallEvent(
        platform=NAME,
        dedupe_key=event_id,
        platform_call_id=_call_id(payload),
        platform_session_id=c.opt_id(payload, "call_session_id", "data.payload.call_session_id"),
        status=status,
        direction=direction,
        from_number=c.opt_party(payload, "from", "data.payload.from"),
        to_number=c.opt_party(payload, "to", "data.payload.to"),
        occurred_at=occurred_at,
        started_at=c.opt_time(payload, "start_time", "data.payload.start_time", c.parse_iso8601),
        ended_at=ended_at,
        diagnostics=diagnostics,
    )


def _hangup_diagnostics(payload: Mapping[str, Any], cause: str | None) -> dict[str, Any]:
    diagnostics: dict[str, Any] = {}
    if cause is not None:
        diagnostics["hangup_cause"] = cause
    for name in ("hangup_source", "sip_hangup_cause"):
        value = c.token_or_none(payload.get(name))
        if value is not None:
            diagnostics[name] = value
    stats = payload.get("call_quality_stats")
    if isinstance(stats, dict):
        quality: dict[str, dict[str, int | float]] = {}
        for leg in QUALITY_DIRECTIONS:
            values = stats.get(leg)
            if not isinstance(values, dict):
                continue
            kept = {}
            for name in QUALITY_FIELDS:
                number = c.number_or_none(values.get(name))
                if number is not None:
                    kept[name] = number
            if kept:
                quality[leg] = kept
        if quality:
            diagnostics["call_quality_stats"] = quality
    return diagnostics


def _recording(data: Mapping[str, Any]) -> list[Event]:
    event_id = c.req_id(data, "id", "data.id")
    occurred_at = c.opt_time(data, "occurred_at", "data.occurred_at", c.parse_iso8601)
    payload = c.req_obj(data, "payload", "data.payload")
    url = content_type = None
    for key in ("recording_urls", "public_recording_urls"):
        urls = c.opt_obj(payload, key, f"data.payload.{key}") or {}
        for fmt, mime in RECORDING_FORMATS:
            value = c.opt_str(urls, fmt, f"data.payload.{key}.{fmt}", max_len=c.MAX_URL_CHARS)
            if value is not None:
                url, content_type = c.https_url(value, f"data.payload.{key}.{fmt}"), mime
                break
        if url is not None:
            break
    if url is None:
        # Recordings stored in the tenant's own bucket come without URLs: nothing to fetch.
        return []
    channels_raw = payload.get("channels")
    if isinstance(channels_raw, str):
        channels = CHANNELS.get(channels_raw)
    else:
        channels = c.opt_int(payload, "channels", "data.payload.channels", maximum=2)
    started = c.opt_time(
        payload, "recording_started_at", "data.payload.recording_started_at", c.parse_iso8601
    )
    ended = c.opt_time(
        payload, "recording_ended_at", "data.payload.recording_ended_at", c.parse_iso8601
    )
    duration = None
    if started is not None and ended is not None and ended >= started:
        duration = min(int((ended - started).total_seconds()), c.MAX_DURATION_SECONDS)
    return [
        RecordingAvailable(
            platform=NAME,
            dedupe_key=event_id,
            platform_call_id=_call_id(payload),
            platform_recording_id=c.opt_id(payload, "recording_id", "data.payload.recording_id")
            or event_id,
            url=url,
            content_type=content_type,
            duration_seconds=duration,
            channels=channels,
            occurred_at=occurred_at,
            platform_session_id=c.opt_id(
                payload, "call_session_id", "data.payload.call_session_id"
            ),
        )
    ]


# --- recording download -------------------------------------------------------------------


@c.contained
def recording_download(
    recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, str]]:
    """Pre-signed URLs (the usual case: S3, valid about 10 minutes, so fetch promptly) are
    fetched as given; URLs on a Telnyx API host get `Authorization: Bearer <api_key>`."""
    url = c.https_url(recording.url, "recording.url")
    if not c.host_matches(c.url_host(url), API_HOSTS):
        return url, {}
    api_key = c.cred_str(
        c.cred_mapping(credentials), "api_key", required=False, pattern=_API_KEY_RE
    )
    if api_key is None:
        raise MalformedError("api_key", "required to download Telnyx-hosted recordings")
    return url, {"Authorization": f"Bearer {api_key}"}


PLATFORM = PlatformDescriptor(
    name=NAME,
    replay_window=TIMESTAMP_TOLERANCE * 2,
    validate_credentials=validate_credentials,
    verify_and_parse=verify_and_parse,
    verify=verify,
    recording_download=recording_download,
    required_credentials=("public_key",),
    optional_credentials=("api_key",),
    # API_HOSTS, plus the S3 buckets its pre-signed recording_urls point to.
    recording_hosts=(*API_HOSTS, ".amazonaws.com"),
    diagnostic_fields={
        "hangup_cause": DIAG_TOKEN, "hangup_source": DIAG_TOKEN, "sip_hangup_cause": DIAG_TOKEN,
        "call_quality_stats": {leg: {name: DIAG_NUMBER for name in QUALITY_FIELDS}
                               for leg in QUALITY_DIRECTIONS},
    },
    media_stream=MediaStream(
        # Telnyx signs no upgrade: the tenant puts an ingest token in the stream URL.
        upgrade_auth=UPGRADE_TOKEN, new_parser=media_telnyx.parser_for),
)
