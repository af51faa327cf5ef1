"""Where a recording may be fetched from, over what transport, and what each outcome is
called. No database, no job state: RecordingFetchService applies these rules to every hop.

Transport rules, enforced here whatever the adapter said:
- https only, with certificate verification (the system trust store unless a context is
  injected); no `user:pass@` in any URL;
- every host, the first and each redirect target, must be on `[recording_fetch]
  allowed_hosts` for the integration's platform; a refused host is never contacted (the
  check runs before any DNS lookup);
- credentials go to the origin the adapter issued them for and nowhere else: on any change
  of scheme, host or port they are dropped, and never restored;
- names must resolve to public addresses unless `allow_private_addresses` is set
  (`PublicAddressResolver`; IP literals are checked by `check_hop`);
- no cookies, no proxy from the environment, no transparent decompression.

Outcome codes are short, fixed strings (a job's `last_error`, a metric label): a hostile
server can mint neither (`outcome_label` buckets HTTP statuses).
"""

from __future__ import annotations

import ipaddress
import random
import socket
import ssl
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.ingest.settings import RecordingFetchConfig

REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchRefused(Exception):
    """A permanent failure: retrying cannot help."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class FetchFailed(Exception):
    """A transient failure: retry later."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class AddressRefused(OSError):
    """A name resolved only to addresses the fetcher may not contact."""


def host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith(".") and (host.endswith(entry) or host == entry[1:]):
            return True
        if host == entry:
            return True
    return False


def check_hop(url: str, allowed: list[str], *, allow_private: bool) -> SplitResult:
    """Raise FetchRefused unless `url` may be requested (before any DNS lookup)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise FetchRefused("scheme_not_allowed")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise FetchRefused("bad_redirect") from None
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("url_refused")
    if not parts.hostname or not host_allowed(parts.hostname, allowed):
        raise FetchRefused("host_not_allowed")
    if not allow_private and private_literal(parts.hostname):
        raise FetchRefused("address_not_allowed")
    return parts


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port or 443


def backoff_delay(attempts: int, cfg: RecordingFetchConfig, rng: random.Random) -> float:
    return rng.uniform(0, min(cfg.max_delay_seconds, cfg.base_delay_seconds * 2 ** attempts))


class PublicAddressResolver(AbstractResolver):
    """Wraps a resolver and keeps only globally routable addresses; if none is left the
    lookup fails with AddressRefused. IP literals never reach a resolver, but they cannot
    pass the host allow-list either unless the operator lists them."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        public = [r for r in results if _is_global(r["host"])]
        if not public:
            raise AddressRefused("no public address")
        return public

    async def close(self) -> None:
        await self.inner.close()


def open_session(cfg: RecordingFetchConfig, ssl_context: ssl.SSLContext | None,
                 resolver: AbstractResolver | None) -> aiohttp.ClientSession:
    """The one HTTP client every download goes through. `ssl_context` and `resolver` None
    mean the system's trust store and DNS (tests inject their own CA and names)."""
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_seconds,
                                    connect=cfg.connect_timeout_seconds,
                                    sock_read=cfg.read_timeout_seconds)
    resolver = resolver or aiohttp.DefaultResolver()
    if not cfg.allow_private_addresses:
        resolver = PublicAddressResolver(resolver)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True,
                                     resolver=resolver, limit=cfg.concurrency)
    # No cookies (a platform must not be able to plant state), no proxy from the
    # environment, no transparent decompression (the bytes stored are the bytes served).
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": "vgw-recording-fetch"})


def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return False


def private_literal(host: str) -> bool:
    """True for an IP literal that is not globally routable (literals skip the resolver)."""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def status_code(status: int) -> str:
    """The job's last_error for an HTTP status (exact, bounded to 3 digits)."""
    return f"http_{status}" if 100 <= status <= 999 else "http_other"


# Metric label for an outcome: codes from a fixed set; HTTP statuses bucketed so a hostile
# server cannot mint label values.
_FIXED_OUTCOMES = frozenset({
    "stored", "timeout", "network_error", "host_not_allowed", "address_not_allowed",
    "scheme_not_allowed", "url_refused", "bad_redirect", "too_many_redirects", "too_large",
    "integration_gone", "call_gone", "call_restricted", "store_audio_off", "abandoned",
    "internal", "tls_error", "http_401", "http_403", "http_404", "http_408", "http_429",
})


def outcome_label(code: str) -> str:
    if code in _FIXED_OUTCOMES:
        return code
    if code.startswith("http_5"):
        return "http_5xx"
    return "http_other"
