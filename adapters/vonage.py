"""Vonage Voice API: signed event and record webhooks, and the application JWT used to
download recordings (PROTOCOLS.md, "Vonage Voice").

Verification of a signed callback, step by step:
1. `Authorization: Bearer <JWT>` must be present (unless the tenant explicitly set
   `verify_signatures: false`; then nothing is verified and unsigned deliveries pass).
2. The JWT (RFC 7519, JWS compact form RFC 7515 section 7.1) has exactly three base64url
   parts; its header's `alg` must be exactly "HS256" (never "none" or anything else, so a
   token cannot choose its own verification, RFC 8725 section 3.1) and it may not carry
   `crit` (RFC 7515 section 4.1.11: we implement no extensions).
3. HMAC-SHA256(signature secret, `header.payload`) must equal the signature (constant time).
4. `iat` must be within 5 minutes of now (both directions); `exp`/`nbf`, when present, are
   honoured too.
5. `payload_hash` must equal the hex SHA-256 of the raw body, or of its compact
   re-serialisation (Vonage describes the hash over compact JSON). A token without
   `payload_hash` is accepted only for an empty body: otherwise the body is not bound.
6. When the token names an `application_id`, it must be the integration's (the signature
   secret is per account, shared by all its applications).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import _common as c
from ._platform import (
    DIAG_TOKEN,
    UPGRADE_SIGNATURE_OR_TOKEN,
    MediaStream,
    PlatformDescriptor,
)
from .events import (
    CallEvent,
    Event,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)
from .media import vonage as media_vonage

NAME = "vonage"

# `iat` freshness, both directions (PROTOCOLS.md: tolerance 5 minutes).
IAT_TOLERANCE = timedelta(minutes=5)
# A signed-webhook JWT is ~400 chars; 8 KiB is the header limit anyway.
MAX_JWT_CHARS = 8192
# HS256 output (RFC 7518 section 3.2) is 32 bytes.
HS256_SIGNATURE_BYTES = 32
# An HMAC key shorter than 16 characters can be brute-forced offline from one captured
# token; Vonage-generated signature secrets are far longer (RFC 7518 section 3.2 asks for
# a key at least as long as the hash output, which we cannot demand of user-chosen text).
MIN_SIGNATURE_SECRET_CHARS = 16
MAX_SIGNATURE_SECRET_CHARS = 1024
# RSA keys shorter than 2048 bits are below NIST SP 800-131A's floor.
MIN_RSA_BITS = 2048
# Lifetime of the application JWT minted for one recording download: long enough for the
# request to start (downloads start right away), short enough to be useless if it leaks.
DOWNLOAD_JWT_LIFETIME = timedelta(minutes=5)
MAX_PRIVATE_KEY_CHARS = 16384

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")

# Vonage status -> canonical status; None means "not a status change".
#  - started: the call exists on Vonage's platform, not yet ringing -> "queued".
#  - disconnected: one leg left the conversation (transfer, WebSocket closed); the call's
#    own end is reported by "completed" (or a failure status) afterwards -> no status.
#  - human / machine: answering-machine detection results, not call states -> no status.
STATUS_MAP: dict[str, str | None] = {
    "started": "queued",
    "ringing": "ringing",
    "answered": "in-progress",
    "completed": "completed",
    "busy": "busy",
    "cancelled": "canceled",
    "unanswered": "no-answer",
    "timeout": "no-answer",
    "rejected": "failed",
    "failed": "failed",
    "disconnected": None,
    "human": None,
    "machine": None,
}
DIRECTIONS = {"inbound": "inbound", "outbound": "outbound"}
# Technical values copied to diagnostics (enum-like tokens only).
DIAGNOSTIC_FIELDS = ("disconnected_by", "detail")

# Recording media lives on Vonage's API hosts (api.nexmo.com, api-us.nexmo.com,
# api-eu.vonage.com, ...): the application JWT is sent nowhere else.
RECORDING_HOSTS = (".nexmo.com", ".vonage.com")


# --- credentials --------------------------------------------------------------------------


def _verify_flag(credentials: Mapping[str, Any]) -> bool:
    flag = credentials.get("verify_signatures", True)
    if not isinstance(flag, bool):
        raise MalformedError("verify_signatures", "must be true or false")
    return flag


def _private_key(pem: str, field: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise MalformedError(field, "must be an unencrypted PEM RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MalformedError(field, "must be an unencrypted PEM RSA private key")
    if key.key_size < MIN_RSA_BITS:
        raise MalformedError(field, "RSA key must be at least 2048 bits")
    return key


@c.contained
def validate_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """`signature_secret` (required unless `verify_signatures` is false), `application_id`
    (UUID), `private_key` (PEM RSA, for recording downloads), `verify_signatures`
    (default true; false is an explicit opt-out that accepts unsigned deliveries)."""
    creds = c.cred_mapping(credentials)
    verify_signatures = _verify_flag(creds)
    secret = c.cred_str(
        creds, "signature_secret", required=verify_signatures, max_len=MAX_SIGNATURE_SECRET_CHARS
    )
    if secret is not None and len(secret) < MIN_SIGNATURE_SECRET_CHARS:
        raise MalformedError("signature_secret", "too short")
    application_id = c.req_cred(creds, "application_id", pattern=_UUID_RE)
    private_key = c.req_cred(creds, "private_key", max_len=MAX_PRIVATE_KEY_CHARS)
    _private_key(private_key, "private_key")
    result: dict[str, Any] = {
        "application_id": application_id.lower(),
        "private_key": private_key,
        "verify_signatures": verify_signatures,
    }
    if secret is not None:
        result["signature_secret"] = secret
    return result


# --- JWT ----------------------------------------------------------------------------------


def _b64url_json(part: str) -> Any:
    raw = c.b64decode_lenient(part, urlsafe=True)
    if raw is None:
        raise SignatureError()
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise SignatureError() from None


def _numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise SignatureError()
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise SignatureError()
    try:
        return c.parse_unix(int(value), name)
    except (MalformedError, OverflowError):
        raise SignatureError() from None


@c.contained
def verify_jwt(token: str, secret: str, now: datetime) -> dict[str, Any]:
    """Steps 2-4 above; returns the claims. Raises SignatureError (outcome "stale" for an
    authentic but expired/early token)."""
    now = c.utc(now)
    if not isinstance(token, str) or len(token) > MAX_JWT_CHARS or not token.isascii():
        raise SignatureError()
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError()
    header_b64, payload_b64, signature_b64 = parts
    header = _b64url_json(header_b64)
    if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
        raise SignatureError()
    signature = c.b64decode_lenient(signature_b64, urlsafe=True)
    if signature is None or len(signature) != HS256_SIGNATURE_BYTES:
        raise SignatureError()
    expected = c.hmac_digest(
        secret.encode("utf-8"), (header_b64 + "." + payload_b64).encode("ascii"), "sha256"
    )
    if not c.constant_time_equal(expected, signature):
        raise SignatureError()
    claims = _b64url_json(payload_b64)
    if not isinstance(claims, dict):
        raise SignatureError()
    iat = _numeric_date(claims, "iat", required=True)
    assert iat is not None
    c.check_window(iat, now, max_age=IAT_TOLERANCE, max_future=IAT_TOLERANCE)
    exp = _numeric_date(claims, "exp", required=False)
    if exp is not None and now >= exp:
        raise SignatureError("stale")
    nbf = _numeric_date(claims, "nbf", required=False)
    if nbf is not None and now + c.MAX_FUTURE_SKEW < nbf:
        raise SignatureError("stale")
    return claims


def _body_hash_matches(claimed: Any, body: bytes) -> bool:
    if not isinstance(claimed, str) or not _HEX64_RE.match(claimed):
        return False
    claimed = claimed.lower()
    if c.constant_time_equal(claimed, c.sha256_hex(body)):
        return True
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    for ensure_ascii in (False, True):
        compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=ensure_ascii)
        if c.constant_time_equal(claimed, c.sha256_hex(compact.encode("utf-8", "surrogatepass"))):
            return True
    return False


@c.contained
def verify(request: WebhookRequest, credentials: Mapping[str, Any], now: datetime) -> None:
    """Steps 1-6 above. With `verify_signatures: false` this returns without checking."""
    creds = c.cred_mapping(credentials)
    now = c.utc(now)
    body = c.body_bytes(request.body)
    if not _verify_flag(creds):
        return
    secret = c.req_cred(creds, "signature_secret", max_len=MAX_SIGNATURE_SECRET_CHARS)
    authorization = c.header(request.headers, "authorization")
    if not authorization:
        raise SignatureError("missing_signature")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("missing_signature")
    claims = verify_jwt(token.strip(), secret, now)
    if "payload_hash" in claims or body:
        if not _body_hash_matches(claims.get("payload_hash"), body):
            raise SignatureError()
    claimed_app = claims.get("application_id")
    own_app = creds.get("application_id")
    if claimed_app is not None and isinstance(own_app, str):
        if not isinstance(claimed_app, str) or claimed_app.lower() != own_app.lower():
            raise SignatureError()


# --- parsing ------------------------------------------------------------------------------


@c.contained
def verify_and_parse(
    request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
) -> list[Event]:
    if c.method(request) != "POST":
        raise MalformedError("method", "must be POST")
    verify(request, credentials, now)
    body = c.body_bytes(request.body)
    doc = c.obj(c.load_json(body), "body")
    if doc.get("recording_url") is not None:
        return [_recording(doc)]
    if doc.get("status") is not None:
        return [_call_event(doc, body)]
    # Input (DTMF), transfer and other callbacks carry no call metadata we keep.
    return []


def _call_event(doc: Mapping[str, Any], body: bytes) -> CallEvent:
    call_uuid = c.req_id(doc, "uuid", "uuid")
    raw_status = c.req_str(doc, "status", "status", max_len=c.MAX_TOKEN_CHARS)
    if raw_status not in STATUS_MAP:
        raise MalformedError("status", "unknown value")
    raw_direction = c.opt_enum(doc, "direction", "direction")
    timestamp_raw = c.opt_str(doc, "timestamp", "timestamp", max_len=c.MAX_TIME_CHARS)
    occurred_at = c.opt_time(doc, "timestamp", "timestamp", c.parse_iso8601)
    marker = timestamp_raw if timestamp_raw is not None else "h" + c.sha256_hex(body)[:32]
    diagnostics = {}
    for name in DIAGNOSTIC_FIELDS:
        value = c.token_or_none(doc.get(name))
        if value is not None:
            diagnostics[name] = value
    return CallEvent(
        platform=NAME,
        dedupe_key=f"{call_uuid}:{raw_status}:{marker}",
        platform_call_id=call_uuid,
        platform_session_id=c.opt_id(doc, "conversation_uuid", "conversation_uuid"),
        status=STATUS_MAP[raw_status],
        direction=DIRECTIONS.get(raw_direction) if raw_direction else None,
        from_number=c.opt_party(doc, "from", "from"),
        to_number=c.opt_party(doc, "to", "to"),
        occurred_at=occurred_at,
        started_at=c.opt_time(doc, "start_time", "start_time", c.parse_iso8601),
        ended_at=c.opt_time(doc, "end_time", "end_time", c.parse_iso8601),
        duration_seconds=c.opt_int(doc, "duration", "duration", maximum=c.MAX_DURATION_SECONDS),
        diagnostics=diagnostics,
    )


def _recording(doc: Mapping[str, Any]) -> RecordingAvailable:
    url = c.https_url(
        c.req_str(doc, "recording_url", "recording_url", max_len=c.MAX_URL_CHARS), "recording_url"
    )
    recording_uuid = c.req_id(doc, "recording_uuid", "recording_uuid")
    conversation = c.opt_id(doc, "conversation_uuid", "conversation_uuid")
    call_id = c.opt_id(doc, "uuid", "uuid") or conversation
    if call_id is None:
        raise MalformedError("conversation_uuid", "required")
    started = c.opt_time(doc, "start_time", "start_time", c.parse_iso8601)
    ended = c.opt_time(doc, "end_time", "end_time", c.parse_iso8601)
    duration = None
    if started is not None and ended is not None and ended >= started:
        duration = min(int((ended - started).total_seconds()), c.MAX_DURATION_SECONDS)
    return RecordingAvailable(
        platform=NAME,
        dedupe_key=f"{recording_uuid}:recording",
        # Vonage records per conversation: link through platform_session_id.
        platform_call_id=call_id,
        platform_recording_id=recording_uuid,
        url=url,
        duration_seconds=duration,
        occurred_at=c.opt_time(doc, "timestamp", "timestamp", c.parse_iso8601),
        platform_session_id=conversation,
    )


# --- recording download -------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def application_jwt(application_id: str, private_key_pem: str, now: datetime) -> str:
    """RS256 application JWT (RFC 7518 section 3.3: RSASSA-PKCS1-v1_5 with SHA-256) with
    the claims Vonage requires: application_id, iat, jti (random, so no two tokens repeat),
    exp."""
    key = _private_key(private_key_pem, "private_key")
    issued = int(c.utc(now).timestamp())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "application_id": application_id,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "exp": issued + int(DOWNLOAD_JWT_LIFETIME.total_seconds()),
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


@c.contained
def recording_download(
    recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, str]]:
    creds = c.cred_mapping(credentials)
    application_id = c.req_cred(creds, "application_id", pattern=_UUID_RE)
    private_key = c.req_cred(creds, "private_key", max_len=MAX_PRIVATE_KEY_CHARS)
    url = c.https_url(recording.url, "recording.url")
    if not c.host_matches(c.url_host(url), RECORDING_HOSTS):
        raise MalformedError("recording.url", "not a Vonage API URL")
    token = application_jwt(application_id, private_key, now)
    return url, {"Authorization": f"Bearer {token}"}


PLATFORM = PlatformDescriptor(
    name=NAME,
    replay_window=IAT_TOLERANCE * 2,
    validate_credentials=validate_credentials,
    verify_and_parse=verify_and_parse,
    verify=verify,
    recording_download=recording_download,
    # signature_secret stops being required only with an explicit verify_signatures: false.
    required_credentials=("signature_secret", "application_id", "private_key"),
    optional_credentials=("verify_signatures",),
    recording_hosts=RECORDING_HOSTS,
    diagnostic_fields={name: DIAG_TOKEN for name in DIAGNOSTIC_FIELDS},
    media_stream=MediaStream(
        # The upgrade carries the signed JWT; an integration that opted out of signatures
        # uses an ingest token (?token=) instead.
        upgrade_auth=UPGRADE_SIGNATURE_OR_TOKEN, new_parser=media_vonage.parser_for,
        verify_upgrade=verify,
        # Raw PCM frames carry no sequence numbers, and Vonage ends a stream by closing.
        sequenced=False, ends_by_close=True),
)
