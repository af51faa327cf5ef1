"""Generic platform: Standard Webhooks v1 (standardwebhooks.com) with the gateway's own
event body (PROTOCOLS.md, "Generic platform").

Verification, step by step (spec "Verifying webhooks"):
1. `webhook-id`, `webhook-timestamp`, `webhook-signature` must all be present.
2. signed bytes = `{id}.{timestamp}.{raw body}`; HMAC-SHA256 under the decoded secret.
3. `webhook-signature` is a space-separated list of `{version},{base64}`; versions other
   than `v1` are skipped; the delivery is authentic if any v1 signature matches
   (constant-time compare).
4. the timestamp must be within 5 minutes of `now`, in either direction.

Authenticity is checked before freshness, so "stale" is only ever reported for an authentic
(but old) delivery; a forged one is always "bad_signature".
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from . import _common as c
from ._platform import PlatformDescriptor
from .events import (
    CALL_STATUSES,
    DIRECTIONS,
    CallEvent,
    Event,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)

NAME = "standard"

SECRET_PREFIX = "whsec_"
# The spec generates 24-64 byte secrets (Svix: 24 bytes; the spec allows up to 64). Fewer
# than 24 bytes (192 bits) is too weak to accept; more than 64 is not a Standard secret.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

# Freshness window for `webhook-timestamp`, both directions (spec: 5 minutes).
TIMESTAMP_TOLERANCE = timedelta(minutes=5)

# The spec allows several signatures (key rotation); a sender rotating through more than a
# handful of keys at once is not plausible, and each one costs a compare.
MAX_SIGNATURES = 16

# `webhook-id` is the idempotency key the gateway stores; Svix ids are ~30 chars.
MAX_WEBHOOK_ID_CHARS = 256
# Unix seconds: 10 digits until 2286; 12 digits bounds the parse.
MAX_TIMESTAMP_DIGITS = 12

# Content types the gateway's generic recording body may name.
MAX_CONTENT_TYPE_CHARS = 128
_CONTENT_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:\s*;[\x20-\x7e]*)?\Z")
_TIMESTAMP_RE = re.compile(rf"[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}\Z")
_WEBHOOK_ID_RE = re.compile(r"[\x21-\x7e]+\Z")


@functools.lru_cache(maxsize=1024)
def _signing_key(secret: str) -> bytes:
    """The decoded secret, remembered per secret text: every delivery of an integration
    carries the same one, and decoding it is a regex and a base64 pass (issue 12). A
    malformed secret raises and is not remembered."""
    return _decode_secret(secret, "credentials.secret")


def _decode_secret(secret: str, field: str = "secret") -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    key = c.b64decode_lenient(raw)
    if key is None:
        raise MalformedError(field, "must be base64 (optionally prefixed whsec_)")
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise MalformedError(field, "must decode to 24-64 bytes")
    return key


@c.contained
def validate_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """`{"secret": "whsec_<base64>"}` (prefix optional, padding optional). Returns the secret
    normalised to `whsec_` + padded base64."""
    secret = c.req_cred(c.cred_mapping(credentials), "secret", max_len=256)
    key = _decode_secret(secret)
    return {"secret": SECRET_PREFIX + base64.b64encode(key).decode("ascii")}


@c.contained
def verify(request: WebhookRequest, credentials: Mapping[str, Any], now: datetime) -> None:
    """Check the signature and freshness only; raise SignatureError or return None."""
    _verified_time(request, credentials, now)


def _verified_time(request: WebhookRequest, credentials: Mapping[str, Any],
                   now: datetime) -> datetime:
    """`verify`, returning the signed webhook-timestamp."""
    secret = c.req_cred(c.cred_mapping(credentials), "secret", max_len=256)
    key = _signing_key(secret)
    now = c.utc(now)
    body = c.body_bytes(request.body)

    msg_id = c.header(request.headers, "webhook-id")
    timestamp = c.header(request.headers, "webhook-timestamp")
    signatures = c.header(request.headers, "webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise SignatureError("missing_signature")
    if (
        len(msg_id) > MAX_WEBHOOK_ID_CHARS
        or not _WEBHOOK_ID_RE.match(msg_id)
        or not _TIMESTAMP_RE.match(timestamp)
    ):
        raise SignatureError()

    signed = msg_id.encode("ascii") + b"." + timestamp.encode("ascii") + b"." + body
    expected = c.hmac_digest(key, signed, "sha256")
    matched = False
    for entry in signatures.split(" ")[:MAX_SIGNATURES]:
        version, sep, value = entry.partition(",")
        if not sep or version != "v1":
            continue
        candidate = c.b64decode_lenient(value)
        if candidate is not None and c.constant_time_equal(candidate, expected):
            matched = True
    if not matched:
        raise SignatureError()
    signed_at = c.parse_unix(timestamp, "webhook-timestamp")
    c.check_window(signed_at, now, max_age=TIMESTAMP_TOLERANCE, max_future=TIMESTAMP_TOLERANCE)
    return signed_at


@c.contained
def verify_and_parse(
    request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
) -> list[Event]:
    if c.method(request) != "POST":
        raise MalformedError("method", "must be POST")
    occurred_at = _verified_time(request, credentials, now)
    # Verified: the webhook-id header is present and well-formed.
    msg_id = c.header(request.headers, "webhook-id") or ""

    doc = c.obj(c.load_json(c.body_bytes(request.body)), "body")
    event_type = c.req_str(doc, "type", "type", max_len=c.MAX_TOKEN_CHARS)
    if event_type == "call.updated":
        return [_call_updated(c.req_obj(doc, "data", "data"), msg_id, occurred_at)]
    if event_type == "recording.available":
        return [_recording(c.req_obj(doc, "data", "data"), msg_id, occurred_at)]
    # Other event types are not ours to store (minimisation): acknowledged, dropped.
    return []


def _call_updated(data: Mapping[str, Any], msg_id: str, occurred_at: datetime) -> CallEvent:
    status = c.opt_enum(data, "status", "data.status")
    if status is not None and status not in CALL_STATUSES:
        raise MalformedError("data.status", "unknown value")
    direction = c.opt_enum(data, "direction", "data.direction")
    if direction is not None and direction not in DIRECTIONS:
        raise MalformedError("data.direction", "unknown value")
    return CallEvent(
        platform=NAME,
        dedupe_key=msg_id,
        platform_call_id=c.req_id(data, "call_id", "data.call_id"),
        status=status,
        direction=direction,
        from_number=c.opt_party(data, "from", "data.from"),
        to_number=c.opt_party(data, "to", "data.to"),
        occurred_at=occurred_at,
        started_at=c.opt_time(data, "started_at", "data.started_at", c.parse_iso8601),
        ended_at=c.opt_time(data, "ended_at", "data.ended_at", c.parse_iso8601),
        duration_seconds=c.opt_int(
            data, "duration_seconds", "data.duration_seconds", maximum=c.MAX_DURATION_SECONDS
        ),
    )


def _recording(data: Mapping[str, Any], msg_id: str, occurred_at: datetime) -> RecordingAvailable:
    url = c.https_url(
        c.req_str(data, "url", "data.url", max_len=c.MAX_URL_CHARS), "data.url"
    )
    call_id = c.req_id(data, "call_id", "data.call_id")
    return RecordingAvailable(
        platform=NAME,
        dedupe_key=msg_id,
        platform_call_id=call_id,
        # The generic body has no recording id: the delivery id names this recording.
        platform_recording_id=c.opt_id(data, "recording_id", "data.recording_id") or msg_id,
        url=url,
        content_type=c.opt_str(
            data,
            "content_type",
            "data.content_type",
            max_len=MAX_CONTENT_TYPE_CHARS,
            pattern=_CONTENT_TYPE_RE,
        ),
        duration_seconds=c.opt_int(
            data, "duration_seconds", "data.duration_seconds", maximum=c.MAX_DURATION_SECONDS
        ),
        occurred_at=occurred_at,
    )


@c.contained
def recording_download(
    recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, str]]:
    """The generic sender hosts its own media: the URL as given, no credentials attached
    (the gateway's secret is a signing key, never a bearer token)."""
    return c.https_url(recording.url, "recording.url"), {}


PLATFORM = PlatformDescriptor(
    name=NAME,
    replay_window=TIMESTAMP_TOLERANCE * 2,
    validate_credentials=validate_credentials,
    verify_and_parse=verify_and_parse,
    verify=verify,
    recording_download=recording_download,
    required_credentials=("secret",),
    # A generic sender hosts its own media: the operator must list its hosts.
    recording_hosts=(),
)
