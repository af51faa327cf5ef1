"""Platform adapters: pure protocol code (sans-I/O), and the one registry of platforms.

Each adapter takes the parts of one HTTP delivery (a `WebhookRequest`), the integration's
decrypted credentials and the current time, verifies the platform's signature and returns
canonical events, a handshake reply, or raises exactly one kind of `AdapterError`. Nothing
here performs I/O, reads the clock or imports a web framework.

    adapter = get_adapter("twilio")
    creds = adapter.validate_credentials(user_input)       # store these (encrypted)
    result = adapter.verify_and_parse(request, creds, now)  # list[Event] | HandshakeReply
    url, headers = adapter.recording_download(recording, creds, now)

Each platform module builds one `PlatformDescriptor` (`PLATFORM`): webhook verify/parse,
credentials, default recording hosts, the diagnostics it emits and, if it streams audio
over a WebSocket, a `MediaStream` (upgrade auth kind, parser factory). `PLATFORMS` maps
names to descriptors; the gateway lists platforms only by reading it. To add a platform,
write its module and add it to `_MODULES` below (docs/platforms.md, "Adding a platform").

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
from ._platform import (
    DIAG_NUMBER,
    DIAG_TOKEN,
    UPGRADE_SIGNATURE,
    UPGRADE_SIGNATURE_OR_TOKEN,
    UPGRADE_TOKEN,
    MediaStream,
    PlatformDescriptor,
    is_host_entry,
    merged_diagnostic_fields,
)
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
    "DIAG_NUMBER",
    "DIAG_TOKEN",
    "DIRECTIONS",
    "EVENT_DIAGNOSTIC_FIELDS",
    "MEDIA_STREAM_PLATFORMS",
    "PLATFORMS",
    "TERMINAL_STATUSES",
    "AdapterError",
    "CallEvent",
    "Event",
    "HandshakeError",
    "HandshakeReply",
    "MalformedError",
    "MediaStream",
    "PlatformAdapter",
    "PlatformDescriptor",
    "RecordingAvailable",
    "SignatureError",
    "UPGRADE_SIGNATURE",
    "UPGRADE_SIGNATURE_OR_TOKEN",
    "UPGRADE_TOKEN",
    "WebhookRequest",
    "get_adapter",
    "is_host_entry",
]


@runtime_checkable
class PlatformAdapter(Protocol):
    """The calling surface every descriptor offers (PlatformDescriptor has more fields)."""

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


# The one list of platform modules. Order is the documentation's order.
_MODULES = (standard, twilio, telnyx, vonage, whatsapp)

PLATFORMS: Mapping[str, PlatformDescriptor] = MappingProxyType(
    {module.PLATFORM.name: module.PLATFORM for module in _MODULES}
)

# Platforms that stream live audio to the media WebSocket, in registry order.
MEDIA_STREAM_PLATFORMS: tuple[str, ...] = tuple(
    name for name, platform in PLATFORMS.items() if platform.media_stream is not None
)

# What any adapter may write into CallEvent.diagnostics: {key: kind | [kind] | {...}}.
EVENT_DIAGNOSTIC_FIELDS: Mapping[str, Any] = MappingProxyType(
    merged_diagnostic_fields(PLATFORMS)
)


def get_adapter(platform: str) -> PlatformDescriptor:
    """The descriptor registered under `platform`; KeyError if there is none."""
    return PLATFORMS[platform]
