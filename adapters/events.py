"""Canonical events: what every platform adapter returns.

Adapters translate a platform's delivery into these types and nothing else; the gateway
stores only the fields named here (data minimisation: unknown platform fields are dropped
at this boundary and never stored raw).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Canonical call statuses, in lifecycle order. A status later in this tuple never regresses
# to an earlier one, and the terminal ones never change once reached.
CALL_STATUSES = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
DIRECTIONS = ("inbound", "outbound")


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP delivery as the adapter sees it: no framework objects.

    `url` is the public URL the platform requested (rebuilt from the configured public base
    URL behind a proxy), including the query string. Header names are lower-case.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class CallEvent:
    """A change to one call as a platform reported it.

    Phone numbers are passed through as the platform wrote them; the gateway normalises them
    to E.164 and encrypts them. `diagnostics` holds technical-only values (hangup cause,
    quality statistics) and never content, digits or numbers.
    """

    platform: str
    dedupe_key: str
    platform_call_id: str
    status: str | None = None
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    occurred_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    sequence: int | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    # The platform's id for the session/conversation grouping this call's legs (Telnyx
    # call_session_id, Vonage conversation_uuid). Vonage reports recordings per
    # conversation only, so this is how a recording is linked to its call.
    platform_session_id: str | None = None
    # WhatsApp `connect` only: the caller's SDP offer, needed to answer the call (pre_accept
    # / accept). Transient and technical: the gateway uses it to answer and never stores it.
    sdp_offer: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RecordingAvailable:
    """The platform says a recording of a call can be downloaded from `url`."""

    platform: str
    dedupe_key: str
    platform_call_id: str
    platform_recording_id: str
    url: str
    content_type: str | None = None
    duration_seconds: int | None = None
    channels: int | None = None
    occurred_at: datetime | None = None
    # See CallEvent.platform_session_id (Vonage: the conversation the recording belongs to).
    platform_session_id: str | None = None


@dataclass(frozen=True)
class HandshakeReply:
    """A subscription handshake answered in place (WhatsApp's GET hub.challenge)."""

    status: int
    body: str


Event = CallEvent | RecordingAvailable


class AdapterError(Exception):
    """Base of every error an adapter raises. `problem_type` is the stable slug the gateway
    renders in its problem+json body; `outcome` is the metrics label."""

    status = 400
    problem_type = "malformed-request"
    outcome = "malformed"


class SignatureError(AdapterError):
    """The delivery is not authentic or not fresh. The message never says which check
    failed, so an attacker learns nothing from it; `outcome` tells metrics apart."""

    status = 401
    problem_type = "invalid-signature"

    def __init__(self, outcome: str = "bad_signature") -> None:
        super().__init__("signature verification failed")
        self.outcome = outcome


class MalformedError(AdapterError):
    """The body or headers could not be understood. `field` names what was wrong; the
    message never echoes the offending value."""

    status = 422
    problem_type = "malformed-payload"
    outcome = "malformed"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class HandshakeError(SignatureError):
    """A subscription handshake (WhatsApp GET hub.verify_token) with the wrong token. The
    platform expects 403 here, not 401."""

    status = 403

    def __init__(self) -> None:
        super().__init__("bad_handshake")
