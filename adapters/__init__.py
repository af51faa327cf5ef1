"""Platform adapters: pure protocol code (sans-I/O).

Each adapter takes the parts of one HTTP delivery (a `WebhookRequest`), the integration's
decrypted credentials and the current time, verifies the platform's signature and returns
canonical events, a handshake reply, or raises exactly one kind of `AdapterError`. Nothing
here performs I/O, reads the clock or imports a web framework.

    adapter = get_adapter("twilio")
    creds = adapter.validate_credentials(user_input)       # store these (encrypted)
    result = adapter.verify_and_parse(request, creds, now)  # list[Event] | HandshakeReply
    url, headers = adapter.recording_download(recording, creds, now)

`SignatureError.outcome` is one of "bad_signature", "missing_signature" (no signature
headers at all), "stale" (authentic but outside the freshness window) or "bad_handshake"
(`HandshakeError`, status 403). `MalformedError.outcome` is "malformed".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from . import standard, telnyx, twilio, vonage, whatsapp
from .events import (
    CALL_STATUSES,
    DIRECTIONS,
    TERMINAL_STATUSES,
    AdapterError,
    CallEvent,
    Event,
    HandshakeError,
    HandshakeReply,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)

__all__ = [
    "CALL_STATUSES",
    "DIRECTIONS",
    "PLATFORMS",
    "TERMINAL_STATUSES",
    "AdapterError",
    "CallEvent",
    "Event",
    "HandshakeError",
    "HandshakeReply",
    "MalformedError",
    "PlatformAdapter",
    "RecordingAvailable",
    "SignatureError",
    "WebhookRequest",
    "get_adapter",
]


@runtime_checkable
class PlatformAdapter(Protocol):
    name: str
    # How long a captured authentic delivery stays acceptable; keep dedupe keys longer.
    replay_window: timedelta

    def validate_credentials(self, credentials: Mapping[str, Any]) -> dict[str, Any]: ...

    def verify_and_parse(
        self, request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
    ) -> list[Event] | HandshakeReply: ...

    def recording_download(
        self, recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
    ) -> tuple[str, dict[str, str]]: ...


PLATFORMS: Mapping[str, PlatformAdapter] = MappingProxyType(
    {
        module.ADAPTER.name: module.ADAPTER
        for module in (standard, twilio, telnyx, vonage, whatsapp)
    }
)


def get_adapter(platform: str) -> PlatformAdapter:
    """The adapter registered under `platform`; KeyError if there is none."""
    return PLATFORMS[platform]
