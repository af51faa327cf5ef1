"""The platform descriptor: everything the gateway needs to know about one platform, in one
frozen object that the platform's module builds (`PLATFORM` in adapters/<name>.py) and the
registry (`adapters.PLATFORMS`) collects.

Invariants:
- The gateway never names a platform. Routes, the OpenAPI enum, the media WebSocket's
  upgrade check and parser, the recording-fetch allow-list defaults and the staff view's
  event-diagnostics allow-list are all read from descriptors; adding a platform is one
  module here (plus its media parser), its tests, docs and config example lines.
- A descriptor is checked when it is built (import time): a bad one fails the import with
  a message naming the field, never later in a request.
- Pure data and pure functions: nothing here performs I/O or reads the clock.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from .events import WebhookRequest

# How a media WebSocket upgrade (GET /v1/media/{platform}/{id}) is authenticated.
# - signature: the platform signs the upgrade request (`MediaStream.verify_upgrade`);
# - token: the platform signs nothing, the tenant puts a gateway ingest token in the URL
#   (`?token=`) or an `Authorization: Bearer` header;
# - signature_or_token: a `?token=` query parameter, when present, is checked as an ingest
#   token (for integrations that opted out of signatures); otherwise the signature.
UPGRADE_SIGNATURE = "signature"
UPGRADE_TOKEN = "token"
UPGRADE_SIGNATURE_OR_TOKEN = "signature_or_token"
UPGRADE_AUTH_KINDS = frozenset({UPGRADE_SIGNATURE, UPGRADE_TOKEN, UPGRADE_SIGNATURE_OR_TOKEN})

# Kinds of value an adapter may put in an event's `diagnostics` (the staff technical view
# keeps exactly these: gateway/access/diagnostics.py uses the same words). A technical code
# (enum member, error or SIP code) or a plain number; never free text or a party.
DIAG_TOKEN = "token"
DIAG_NUMBER = "number"
DIAGNOSTIC_KINDS = frozenset({DIAG_TOKEN, DIAG_NUMBER})

# Platform names appear in URLs, metric labels and config section keys.
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
# A recording host entry: a host name, or ".suffix" for the name and its subdomains.
_HOST_RE = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+\Z")


class MediaParser(Protocol):
    """A sans-I/O media-stream parser (adapters.media): one frame in, one event out."""

    def receive_text(self, data: str) -> Any: ...

    def receive_bytes(self, data: bytes) -> Any: ...


@dataclass(frozen=True, slots=True)
class MediaStream:
    """How a platform streams call audio to GET (WebSocket) /v1/media/{platform}/{id}."""

    # One of UPGRADE_AUTH_KINDS.
    upgrade_auth: str
    # new_parser(credentials, query) -> a fresh parser for one connection; `query` is the
    # upgrade URL's query parameters (untrusted: the factory validates what it reads).
    new_parser: Callable[[Mapping[str, Any], Mapping[str, str]], MediaParser]
    # verify_upgrade(request, credentials, now): raises AdapterError unless the upgrade is
    # the platform's (the URL is the public wss:// URL). Required unless upgrade_auth is
    # "token".
    verify_upgrade: Callable[[WebhookRequest, Mapping[str, Any], datetime], None] | None = None
    # Chunks carry sequence numbers, so gaps and reordering can be detected.
    sequenced: bool = True
    # The platform ends a stream by closing the socket (there is no stop frame), so a close
    # after the start is a complete recording rather than a cut one.
    ends_by_close: bool = False

    def __post_init__(self) -> None:
        if self.upgrade_auth not in UPGRADE_AUTH_KINDS:
            raise ValueError("upgrade_auth must be one of " + ", ".join(sorted(UPGRADE_AUTH_KINDS)))
        if self.upgrade_auth != UPGRADE_TOKEN and self.verify_upgrade is None:
            raise ValueError("verify_upgrade is required unless upgrade_auth is 'token'")
        if not callable(self.new_parser):
            raise ValueError("new_parser must be callable")


@dataclass(frozen=True, slots=True)
class PlatformDescriptor:
    """One platform, as the gateway sees it (see the module docstring).

    `replay_window` is how long a captured authentic delivery stays acceptable to the
    adapter; the gateway must keep dedupe keys at least that long for dedupe to close it.
    """

    name: str
    replay_window: timedelta
    # validate_credentials(user input) -> the normalised credentials to store (encrypted).
    validate_credentials: Callable[[Mapping[str, Any]], dict[str, Any]]
    # verify_and_parse(WebhookRequest, credentials, now) -> [Event] | HandshakeReply.
    verify_and_parse: Callable[..., Any]
    # recording_download(RecordingAvailable, credentials, now) -> (url, headers).
    recording_download: Callable[..., tuple[str, dict[str, str]]]
    # Credential fields a tenant must give to connect, and those it may add.
    required_credentials: tuple[str, ...]
    optional_credentials: tuple[str, ...] = ()
    # Hosts recordings are fetched from when the operator configures none
    # ([recording_fetch] allowed_hosts): the adapter's credential fence plus the CDN hosts
    # the platform redirects downloads to. Empty: the operator must list them.
    recording_hosts: tuple[str, ...] = ()
    # The keys this platform's adapter writes into CallEvent.diagnostics, each with its
    # kind (DIAG_TOKEN, DIAG_NUMBER), a {key: kind} object or a [kind] list.
    diagnostic_fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Live audio over a WebSocket, if the platform streams it that way.
    media_stream: MediaStream | None = None
    # verify(WebhookRequest, credentials, now): the signature check alone (raises
    # SignatureError). Lets the gateway tell a body the platform really signed but the
    # adapter cannot use (acknowledged, counted as rejected, so the platform stops
    # retrying) from a forgery (refused). None: a malformed body is always refused.
    verify: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError("name must be lower-case letters, digits and '_' (max 32)")
        if not isinstance(self.replay_window, timedelta) or self.replay_window <= timedelta(0):
            raise ValueError("replay_window must be a positive timedelta")
        for name in ("validate_credentials", "verify_and_parse", "recording_download"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{name} must be callable")
        if not self.required_credentials:
            raise ValueError("required_credentials must name at least one field")
        if set(self.required_credentials) & set(self.optional_credentials):
            raise ValueError("a credential field is either required or optional")
        for host in self.recording_hosts:
            if not is_host_entry(host):
                raise ValueError("recording_hosts: each entry is a host or .domain suffix")
        check_diagnostic_schema(self.diagnostic_fields, "diagnostic_fields")
        object.__setattr__(self, "diagnostic_fields",
                           MappingProxyType(dict(self.diagnostic_fields)))

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return self.required_credentials + self.optional_credentials


def is_host_entry(entry: str) -> bool:
    """A lower-case host name with at least two labels, or ".suffix" for a name and its
    subdomains (no scheme, port, wildcard or bare top-level domain)."""
    return bool(_HOST_RE.match(entry))


def check_diagnostic_schema(schema: Any, where: str) -> None:
    """Raise ValueError unless `schema` is built from DIAGNOSTIC_KINDS, one-element lists
    and objects with string keys."""
    if isinstance(schema, str):
        if schema not in DIAGNOSTIC_KINDS:
            raise ValueError(f"{where}: kind must be one of " + ", ".join(sorted(DIAGNOSTIC_KINDS)))
    elif isinstance(schema, list):
        if len(schema) != 1:
            raise ValueError(f"{where}: a list schema has exactly one element")
        check_diagnostic_schema(schema[0], where + "[]")
    elif isinstance(schema, Mapping):
        for key, sub in schema.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}: keys must be non-empty strings")
            check_diagnostic_schema(sub, f"{where}.{key}")
    else:
        raise ValueError(f"{where}: not a kind, list or object")


def merged_diagnostic_fields(platforms: Mapping[str, PlatformDescriptor]) -> dict[str, Any]:
    """Every platform's diagnostic fields in one object (the staff view's allow-list). Two
    platforms may share a key only with the same schema."""
    merged: dict[str, Any] = {}
    for platform in platforms.values():
        for key, schema in platform.diagnostic_fields.items():
            if key in merged and merged[key] != schema:
                raise ValueError(f"diagnostic field {key}: platforms disagree on its kind")
            merged[key] = copy.deepcopy(schema)
    return merged
