"""A sample call event for each platform, signed the way that platform signs it.

Pure: no I/O, no clock reads (`now` is passed in). `sign_sample(platform, call, credentials,
url, now)` returns the HTTP request a platform would send to `url` (the integration's
webhook URL, built from [server] public_base_url, because that is the URL the platform
signs).

Invariants:
- Every platform in `adapters.PLATFORMS` has a signer here (a test checks it), so
  `gateway dev send-webhook` works for any integration a tenant can create.
- Signing follows the platforms' published rules (PROTOCOLS.md), step by step in each
  function; only Twilio's HMAC is shared with the adapter (`compute_signature`).
- The sample carries the documentation numbers (+1 415 555 01xx, reserved for fiction)
  unless the caller passes others; nothing here logs or prints a credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import ed25519

import adapters
from adapters import telnyx, twilio, vonage, whatsapp

# Fictional numbers (the 555-01xx block is reserved for examples in the NANP).
SAMPLE_FROM = "+14155550100"
SAMPLE_TO = "+14155550199"
# Canonical statuses a sample can carry; ringing and in-progress are not terminal.
SAMPLE_STATUSES = ("ringing", "in-progress", "completed", "busy", "failed", "no-answer",
                   "canceled")


class SigningError(ValueError):
    """The sample cannot be signed with what is available (the message says what to pass;
    it never contains a credential)."""


@dataclass(frozen=True)
class SampleCall:
    """What the sample says about the call, in canonical terms."""

    platform_call_id: str
    status: str = "completed"
    direction: str = "inbound"
    from_number: str = SAMPLE_FROM
    to_number: str = SAMPLE_TO
    duration_seconds: int = 42

    def __post_init__(self) -> None:
        if self.status not in SAMPLE_STATUSES:
            raise SigningError("status must be one of " + ", ".join(SAMPLE_STATUSES))
        if self.direction not in adapters.DIRECTIONS:
            raise SigningError("direction must be one of " + ", ".join(adapters.DIRECTIONS))

    @property
    def terminal(self) -> bool:
        return self.status in adapters.TERMINAL_STATUSES


@dataclass(frozen=True)
class SignedDelivery:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = field(repr=False)


def new_platform_call_id(platform: str) -> str:
    """A fresh id in the form the platform uses for its calls."""
    if platform == "twilio":
        return "CA" + uuid.uuid4().hex
    if platform == "whatsapp":
        return "wacid." + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if platform == "telnyx":
        return "v3:" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return str(uuid.uuid4())


def _times(call: SampleCall, now: datetime) -> tuple[datetime, datetime | None]:
    """(started, ended): a terminal call ended now after its duration; others started now."""
    if call.terminal:
        return now - timedelta(seconds=call.duration_seconds), now
    return now, None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _inverse(mapping: Mapping[str, str | None], canonical: str) -> str:
    """The first platform value the adapter maps to `canonical`."""
    return next(raw for raw, value in mapping.items() if value == canonical)


# --- Standard Webhooks -------------------------------------------------------------------
def _sign_standard(call: SampleCall, credentials: Mapping[str, Any], url: str, now: datetime,
                   signing_key: str | None) -> SignedDelivery:
    started, ended = _times(call, now)
    data: dict[str, Any] = {"call_id": call.platform_call_id, "status": call.status,
                            "direction": call.direction, "from": call.from_number,
                            "to": call.to_number, "started_at": _iso(started),
                            "ended_at": _iso(ended) if ended else None}
    if call.terminal:
        data["duration_seconds"] = call.duration_seconds
    body = json.dumps({"type": "call.updated", "data": data}).encode()
    # 1. the secret is whsec_ + base64 of the key bytes (padding may be missing);
    secret = str(credentials["secret"]).removeprefix("whsec_")
    key = base64.b64decode(secret + "=" * (-len(secret) % 4))
    # 2. sign "{webhook-id}.{webhook-timestamp}.{body}" with HMAC-SHA256;
    message_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(now.timestamp()))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    # 3. send it as "v1,<base64>" with the id and timestamp it covers.
    return SignedDelivery("POST", url, {
        "content-type": "application/json", "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode()}, body)


# --- Twilio -----------------------------------------------------------------------------
def _sign_twilio(call: SampleCall, credentials: Mapping[str, Any], url: str, now: datetime,
                 signing_key: str | None) -> SignedDelivery:
    params = {"AccountSid": str(credentials["account_sid"]), "ApiVersion": "2010-04-01",
              "CallSid": call.platform_call_id,
              "CallStatus": _inverse(twilio.STATUS_MAP, call.status),
              "Direction": "inbound" if call.direction == "inbound" else "outbound-api",
              "From": call.from_number, "To": call.to_number,
              "CallbackSource": "call-progress-events",
              "SequenceNumber": "0" if not call.terminal else "3",
              "Timestamp": format_datetime(now.astimezone(UTC), usegmt=True)}
    if call.terminal:
        params["CallDuration"] = str(call.duration_seconds)
    # base64(HMAC-SHA1(auth token, URL + name+value of every form field, names sorted)),
    # over exactly the URL Twilio requests (the integration's webhook_url).
    signature = twilio.compute_signature(str(credentials["auth_token"]), url,
                                         {k: [v] for k, v in params.items()})
    return SignedDelivery("POST", url, {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature}, urlencode(params).encode())


# --- Telnyx -----------------------------------------------------------------------------
def _telnyx_private_key(signing_key: str | None,
                        credentials: Mapping[str, Any]) -> ed25519.Ed25519PrivateKey:
    if not signing_key:
        raise SigningError(
            "Telnyx signs with its private Ed25519 key and the integration stores only the"
            " public key: pass --signing-key with the base64 private key (32 bytes) whose"
            " public key the integration was created with")
    try:
        raw = base64.b64decode(signing_key, validate=True)
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError:
        raise SigningError("--signing-key must be the base64 of a 32-byte Ed25519 private"
                           " key") from None
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    if public != credentials.get("public_key"):
        raise SigningError("--signing-key does not belong to the integration's public_key")
    return key


def _sign_telnyx(call: SampleCall, credentials: Mapping[str, Any], url: str, now: datetime,
                 signing_key: str | None) -> SignedDelivery:
    key = _telnyx_private_key(signing_key, credentials)
    started, _ = _times(call, now)
    if call.status == "ringing":
        event_type = "call.initiated"
    elif call.status == "in-progress":
        event_type = "call.answered"
    else:
        event_type = "call.hangup"
    payload: dict[str, Any] = {
        "call_control_id": call.platform_call_id, "call_leg_id": str(uuid.uuid4()),
        "call_session_id": str(uuid.uuid4()), "connection_id": "1684641123236054244",
        "from": call.from_number, "to": call.to_number,
        "direction": "incoming" if call.direction == "inbound" else "outgoing",
        "start_time": _iso(started), "state": "hangup" if call.terminal else "parked"}
    if call.terminal:
        payload["hangup_cause"] = _inverse(telnyx.HANGUP_STATUS, call.status)
        payload["hangup_source"] = "caller"
    body = json.dumps({"data": {"record_type": "event", "event_type": event_type,
                                "id": str(uuid.uuid4()), "occurred_at": _iso(now),
                                "payload": payload},
                       "meta": {"attempt": 1, "delivered_to": url}}).encode()
    # Ed25519 over "{telnyx-timestamp}|{body}", base64 in telnyx-signature-ed25519.
    timestamp = str(int(now.timestamp()))
    signature = key.sign(timestamp.encode() + b"|" + body)
    return SignedDelivery("POST", url, {
        "content-type": "application/json", "telnyx-timestamp": timestamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()}, body)


# --- Vonage -----------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _sign_vonage(call: SampleCall, credentials: Mapping[str, Any], url: str, now: datetime,
                 signing_key: str | None) -> SignedDelivery:
    started, ended = _times(call, now)
    doc: dict[str, Any] = {"uuid": call.platform_call_id, "conversation_uuid":
                           "CON-" + str(uuid.uuid4()),
                           "status": _inverse(vonage.STATUS_MAP, call.status),
                           "direction": call.direction, "from": call.from_number.lstrip("+"),
                           "to": call.to_number.lstrip("+"), "timestamp": _iso(now)}
    if ended is not None:
        doc.update(start_time=_iso(started), end_time=_iso(ended),
                   duration=str(call.duration_seconds))
    body = json.dumps(doc, separators=(",", ":")).encode()
    if credentials.get("verify_signatures") is False:
        return SignedDelivery("POST", url, {"content-type": "application/json"}, body)
    # A signed callback: Authorization: Bearer <HS256 JWT> under the signature secret,
    # whose payload_hash is the hex SHA-256 of the body (RFC 7519 compact form).
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iat": int(now.timestamp()), "jti": str(uuid.uuid4()), "iss": "Vonage",
              "payload_hash": hashlib.sha256(body).hexdigest(),
              "application_id": credentials.get("application_id")}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    mac = hmac.new(str(credentials["signature_secret"]).encode(), signing_input.encode(),
                   hashlib.sha256).digest()
    return SignedDelivery("POST", url, {
        "content-type": "application/json",
        "authorization": f"Bearer {signing_input}.{_b64url(mac)}"}, body)


# --- WhatsApp ---------------------------------------------------------------------------
def _sign_whatsapp(call: SampleCall, credentials: Mapping[str, Any], url: str, now: datetime,
                   signing_key: str | None) -> SignedDelivery:
    started, ended = _times(call, now)
    record: dict[str, Any] = {
        "id": call.platform_call_id, "from": call.from_number.lstrip("+"),
        "to": call.to_number.lstrip("+"),
        "direction": "USER_INITIATED" if call.direction == "inbound" else "BUSINESS_INITIATED",
        "timestamp": str(int(now.timestamp()))}
    if call.terminal:
        record.update(event="terminate",
                      status=_inverse(whatsapp.TERMINATE_STATUS, call.status).upper(),
                      start_time=str(int(started.timestamp())),
                      end_time=str(int(ended.timestamp())) if ended else None,
                      duration=call.duration_seconds)
    else:
        # A connect without an SDP offer: metadata only (answering it with WebRTC is the
        # live-audio feature's business and needs a real offer).
        record["event"] = "connect"
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": call.to_number.lstrip("+"),
                         "phone_number_id": credentials["phone_number_id"]},
            "calls": [record]}}]}]}).encode()
    # X-Hub-Signature-256: "sha256=" + lower-case hex HMAC-SHA256(app secret, raw body).
    digest = hmac.new(str(credentials["app_secret"]).encode(), body, hashlib.sha256)
    return SignedDelivery("POST", url, {
        "content-type": "application/json",
        "x-hub-signature-256": "sha256=" + digest.hexdigest()}, body)


Signer = Callable[[SampleCall, Mapping[str, Any], str, datetime, "str | None"], SignedDelivery]
SIGNERS: dict[str, Signer] = {
    "standard": _sign_standard,
    "twilio": _sign_twilio,
    "telnyx": _sign_telnyx,
    "vonage": _sign_vonage,
    "whatsapp": _sign_whatsapp,
}


def sign_sample(platform: str, call: SampleCall, credentials: Mapping[str, Any], url: str,
                now: datetime, *, signing_key: str | None = None) -> SignedDelivery:
    """The request `platform` would send to `url` about `call`, signed with `credentials`
    (the integration's, as stored). Raises SigningError when it cannot be signed."""
    if platform not in adapters.PLATFORMS:
        raise SigningError("platform must be one of " + ", ".join(adapters.PLATFORMS))
    signer = SIGNERS.get(platform)
    if signer is None:
        raise SigningError(f"no sample signer for platform {platform} yet")
    return signer(call, credentials, url, now, signing_key)
