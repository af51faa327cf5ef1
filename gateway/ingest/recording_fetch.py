"""RecordingFetchJob: download a recording a platform announced, straight into the
encrypted blob store.

When a delivery announcing a recording is durable, a job row is written (unless the
integration's `store_audio` is off). The announcement is handed over again when the
platform redelivers it, and the insert is idempotent, so a crash between the two commits
loses nothing. A worker task claims due jobs with a lease, asks the platform's adapter how
to fetch (URL and auth headers from the tenant's credentials), checks every hop against
the operator's allow-list, and streams the body into a RecordingWriter: ciphertext only,
never a plaintext temp file.

Transport rules, all enforced here whatever the adapter said:
- https only, with certificate verification (the system trust store unless a context is
  injected); no `user:pass@` in any URL;
- every host, the first and each redirect target, must be on `[recording_fetch]
  allowed_hosts` for the integration's platform; a refused host is never contacted (the
  check runs before any DNS lookup);
- credentials go to the origin the adapter issued them for and nowhere else: on any change
  of scheme, host or port they are dropped, and never restored;
- names must resolve to public addresses unless `allow_private_addresses` is set.

Outcomes: 5xx, 404, 408, 429, timeouts and connection errors are retried with exponential
backoff and full jitter; after `max_attempts` (or at once on 401/403, a refused host, a
recording over the size limit) the job is `failed` with a short code in `last_error`, which
the call shows (`GET /v1/calls/{id}` -> `recording_fetches`). A 'running' job whose lease
ran out (the process died mid-download) is claimed again and its lost attempt counts; a
clean shutdown hands its running jobs back at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import Counter, Gauge

import adapters
from adapters.events import RecordingAvailable
from gateway.calls.recordings import RecordingService
from gateway.config import ConfigError, register_section
from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import cancel_and_wait, start_for_app_lifetime
from gateway.errors import DomainError
from gateway.ingest.integrations import Integration, IntegrationService
from gateway.store.sqlite import Database, WriteTx
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.recording_fetch")
REQUEST_RECORD = "recording-fetch-request"

# Hosts recordings may be fetched from, per platform, when the config names none. They
# match the adapters' own credential fences (adapters/README.md) plus the CDN hosts the
# platforms redirect media downloads to (credentials are never forwarded there).
DEFAULT_ALLOWED_HOSTS: dict[str, list[str]] = {
    "twilio": [".twilio.com", ".twiliocdn.com"],
    "telnyx": [".telnyx.com", ".amazonaws.com"],
    "vonage": [".nexmo.com", ".vonage.com"],
    "whatsapp": [],
    # A generic sender hosts its own media: the operator must list its hosts.
    "standard": [],
}
_HOST_ENTRY_RE = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]{0,200})?\Z")
_CHUNK_BYTES = 64 * 1024


@dataclass
class RecordingFetchConfig:
    # Attempts before a job is marked failed (8 attempts with these delays span ~10 min).
    max_attempts: int = 8
    # Backoff: delay before attempt n+1 is uniform in [0, min(max, base * 2**n)] ("full
    # jitter"), so many failed jobs do not retry in lockstep against a struggling platform.
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0
    # Whole-download timeout, connect timeout, and longest silence between two reads.
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    # How often the worker looks for due jobs when nothing woke it.
    poll_interval_seconds: float = 1.0
    # How long a claimed job stays claimed before another worker may take it over. Must
    # exceed timeout_seconds, so a live download is never taken over.
    lease_seconds: float = 900.0
    # Jobs one process downloads at once.
    concurrency: int = 4
    # Redirect hops followed (each hop's host must be allowed too).
    max_redirects: int = 3
    # Allow allowed hosts to resolve to private, loopback or link-local addresses (e.g. an
    # on-premises PBX listed for `standard`). Off: such answers are refused, so a name on
    # the allow-list cannot be pointed at the gateway's own network.
    allow_private_addresses: bool = False
    # Hosts recordings may be fetched from, per platform. An entry starting with "." allows
    # the name itself and any subdomain. Platforms not named keep DEFAULT_ALLOWED_HOSTS.
    allowed_hosts: dict = field(default_factory=dict)


register_section("recording_fetch", RecordingFetchConfig)


def validate(cfg: RecordingFetchConfig) -> dict[str, list[str]]:
    """Check the section; returns the effective allow-list (defaults merged)."""
    for name in ("base_delay_seconds", "max_delay_seconds", "timeout_seconds",
                 "connect_timeout_seconds", "read_timeout_seconds", "poll_interval_seconds",
                 "lease_seconds"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"recording_fetch.{name} must be > 0")
    if cfg.max_attempts < 1 or cfg.concurrency < 1 or cfg.max_redirects < 0:
        raise ConfigError("recording_fetch.max_attempts and concurrency must be >= 1,"
                          " max_redirects >= 0")
    if cfg.lease_seconds <= cfg.timeout_seconds:
        raise ConfigError("recording_fetch.lease_seconds must exceed timeout_seconds")
    if not isinstance(cfg.allowed_hosts, dict):
        raise ConfigError("recording_fetch.allowed_hosts must be a table of lists")
    allowed = {k: list(v) for k, v in DEFAULT_ALLOWED_HOSTS.items()}
    for platform, hosts in cfg.allowed_hosts.items():
        if platform not in adapters.PLATFORMS:
            raise ConfigError(f"recording_fetch.allowed_hosts.{platform}: unknown platform")
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(f"recording_fetch.allowed_hosts.{platform} must be a list of"
                              " host names")
        for host in hosts:
            host = host.lower()
            if not _HOST_ENTRY_RE.match(host) or "." not in host.strip("."):
                raise ConfigError(f"recording_fetch.allowed_hosts.{platform}: {host!r} is not"
                                  " a host name or .domain suffix")
        allowed[platform] = [h.lower() for h in hosts]
    return allowed


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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port or 443


def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return False


def _private_literal(host: str) -> bool:
    """True for an IP literal that is not globally routable (literals skip the resolver)."""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def _status_code(status: int) -> str:
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


class RecordingFetchService:
    def __init__(self, db: Database, keyring: KeyRing, integrations: IntegrationService,
                 recordings: RecordingService, clock: Clock, cfg: RecordingFetchConfig,
                 registry: Any, *, max_bytes: int | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 resolver: AbstractResolver | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.integrations = integrations
        self.recordings = recordings
        self.clock = clock
        self.cfg = cfg
        self.allowed_hosts = validate(cfg)
        self.max_bytes = max_bytes
        # Transport: None means the system's (trust store, DNS). Tests inject a context
        # trusting their own CA and a resolver pointing platform names at a local server.
        self.ssl_context = ssl_context
        self.resolver = resolver
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._rounds = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupted: set[str] = set()
        self.attempts = Counter("gateway_recording_fetch_attempts",
                                "Recording download attempts by platform and outcome",
                                ["platform", "outcome"], registry=registry)
        self.failures = Counter("gateway_recording_fetch_failures",
                                "Recording fetch jobs that gave up, by platform and reason",
                                ["platform", "reason"], registry=registry)
        self.queue_depth = Gauge("gateway_recording_fetch_queue_depth",
                                 "Recording fetch jobs pending or running", registry=registry)

    def configure_transport(self, *, ssl_context: ssl.SSLContext | None = None,
                            resolver: AbstractResolver | None = None) -> None:
        """Replace the TLS context and/or DNS resolver; takes effect at `start()`."""
        if self._session is not None:
            raise RuntimeError("configure the transport before start()")
        self.ssl_context = ssl_context
        self.resolver = resolver

    # -- enqueue --------------------------------------------------------------------------
    async def enqueue(self, integration: Integration, call_id: str,
                      recording: RecordingAvailable) -> str | None:
        """Called once the announcing delivery is durable, and again on each redelivery:
        idempotent per (integration, platform recording id)."""
        if not integration.options.get("store_audio", True):
            return None
        ring = await self.keyring.for_tenant(integration.tenant_id)
        job_id = str(uuid.uuid4())
        sealed = ring.seal_record(REQUEST_RECORD, job_id, json.dumps({
            "platform": recording.platform, "dedupe_key": recording.dedupe_key,
            "platform_call_id": recording.platform_call_id,
            "platform_recording_id": recording.platform_recording_id, "url": recording.url,
            "content_type": recording.content_type,
            "duration_seconds": recording.duration_seconds, "channels": recording.channels,
        }).encode())
        ref = hashlib.sha256(recording.platform_recording_id.encode()).hexdigest()
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> bool:
            return tx.execute(
                "INSERT INTO recording_fetch_jobs (id, tenant_id, integration_id, call_id,"
                " recording_ref, request, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                " ON CONFLICT (integration_id, recording_ref) DO NOTHING",
                (job_id, integration.tenant_id, integration.id, call_id, ref, sealed, now, now,
                 now)) > 0

        created = await self.db.write(unit)
        if created:
            self.queue_depth.inc()
        self._wake.set()
        return job_id if created else None

    # -- worker ---------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_seconds,
                                        connect=cfg.connect_timeout_seconds,
                                        sock_read=cfg.read_timeout_seconds)
        resolver = self.resolver or aiohttp.DefaultResolver()
        if not cfg.allow_private_addresses:
            resolver = PublicAddressResolver(resolver)
        connector = aiohttp.TCPConnector(
            ssl=self.ssl_context if self.ssl_context is not None else True,
            resolver=resolver, limit=cfg.concurrency)
        # No cookies (a platform must not be able to plant state), no proxy from the
        # environment, no transparent decompression (the bytes stored are the bytes served).
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": "vgw-recording-fetch"})
        await self._update_depth()
        self._task = asyncio.create_task(self._run(), name="recording-fetch-worker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        # Jobs cut off by the shutdown go back to the queue at once, without counting the
        # attempt (a crash instead leaves them to their lease).
        interrupted, self._interrupted = self._interrupted, set()
        if interrupted:
            now = isoformat(self.clock.now())
            marks = ",".join("?" * len(interrupted))
            try:
                await self.db.write(lambda tx: tx.execute(
                    "UPDATE recording_fetch_jobs SET state = 'pending', lease_until = NULL,"
                    f" next_attempt_at = ?, updated_at = ? WHERE state = 'running' AND id IN"
                    f" ({marks})", (now, now, *interrupted)))
            except Exception:
                log.warning("could not hand back interrupted recording fetch jobs")
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            ran = 0
            try:
                ran = await self.run_due()
            except Exception:
                log.exception("recording fetch round failed")
            if ran >= self.cfg.concurrency:
                continue        # a full batch: there may be more due right away
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    def wake(self) -> None:
        """Ask the worker to look for due jobs now (e.g. after the clock moved)."""
        self._wake.set()

    async def idle(self) -> None:
        """Wait until no round of attempts is running (tests, orderly shutdown)."""
        await self._idle.wait()

    async def run_due(self) -> int:
        """Claim and run every due job (up to `concurrency` at once). Returns jobs run."""
        self._rounds += 1
        self._idle.clear()
        try:
            jobs = await self._claim(self.cfg.concurrency)
            if jobs:
                await asyncio.gather(*(self._attempt(job) for job in jobs))
            await self._update_depth()
            return len(jobs)
        finally:
            self._rounds -= 1
            if self._rounds == 0:
                self._idle.set()

    async def _update_depth(self) -> None:
        depth = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM recording_fetch_jobs WHERE state IN ('pending','running')")
        self.queue_depth.set(depth["n"] if depth else 0)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        now = self.clock.now()
        now_text = isoformat(now)
        lease = isoformat(now + timedelta(seconds=self.cfg.lease_seconds))
        max_attempts = self.cfg.max_attempts

        def unit(tx: WriteTx) -> list[dict[str, Any]]:
            rows = tx.fetchall(
                "SELECT id, tenant_id, integration_id, call_id, request, attempts, state"
                " FROM recording_fetch_jobs WHERE (state = 'pending' AND next_attempt_at <= ?)"
                " OR (state = 'running' AND lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
                (now_text, now_text, limit))
            claimed = []
            for row in rows:
                job = dict(row)
                if job["state"] == "running":
                    # Its worker died mid-attempt: that attempt counts, so a recording that
                    # crashes the process cannot be retried forever.
                    job["attempts"] += 1
                    if job["attempts"] >= max_attempts:
                        tx.execute("UPDATE recording_fetch_jobs SET state = 'failed',"
                                   " attempts = ?, lease_until = NULL, last_error = 'abandoned',"
                                   " updated_at = ? WHERE id = ?",
                                   (job["attempts"], now_text, job["id"]))
                        continue
                tx.execute("UPDATE recording_fetch_jobs SET state = 'running', attempts = ?,"
                           " lease_until = ?, updated_at = ? WHERE id = ?",
                           (job["attempts"], lease, now_text, job["id"]))
                claimed.append(job)
            return claimed

        return await self.db.write(unit)

    async def _attempt(self, job: dict[str, Any]) -> None:
        platform = "unknown"
        try:
            ring = await self.keyring.for_tenant(job["tenant_id"])
            request = json.loads(ring.open_record(REQUEST_RECORD, job["id"],
                                                  bytes(job["request"])))
            platform = request["platform"]
            try:
                integration = await self.integrations.load_for_delivery(
                    platform, job["integration_id"])
            except DomainError:
                raise FetchRefused("integration_gone") from None
            if not integration.options.get("store_audio", True):
                raise FetchRefused("store_audio_off")
            call = await self.db.fetchone(
                "SELECT restricted_at FROM calls WHERE id = ?", (job["call_id"],))
            if call is None:
                raise FetchRefused("call_gone")
            if call["restricted_at"] is not None:
                # A data subject restricted processing of this call: no new content.
                raise FetchRefused("call_restricted")
            recording = RecordingAvailable(**{k: request[k] for k in (
                "platform", "dedupe_key", "platform_call_id", "platform_recording_id", "url",
                "content_type", "duration_seconds", "channels")})
            recording_id = await self._download(integration, job, recording)
        except asyncio.CancelledError:
            self._interrupted.add(job["id"])
            raise
        except FetchRefused as exc:
            self.attempts.labels(platform, outcome_label(exc.code)).inc()
            await self._finish(job, platform, "failed", exc.code)
        except FetchFailed as exc:
            self.attempts.labels(platform, outcome_label(exc.code)).inc()
            await self._retry(job, platform, exc.code)
        except Exception as exc:  # a decryption error, a storage failure: permanent
            log.warning("recording fetch job failed", extra={"outcome": type(exc).__name__})
            self.attempts.labels(platform, "internal").inc()
            await self._finish(job, platform, "failed", "internal")
        else:
            self.attempts.labels(platform, "stored").inc()
            await self._finish(job, platform, "done", None, recording_id)

    async def _download(self, integration: Integration, job: dict[str, Any],
                        recording: RecordingAvailable) -> str:
        adapter = adapters.get_adapter(integration.platform)
        try:
            url, headers = adapter.recording_download(recording, integration.credentials,
                                                      self.clock.now())
        except adapters.AdapterError:
            raise FetchRefused("url_refused") from None
        allowed = self.allowed_hosts.get(integration.platform, [])
        origin = _origin(url)
        assert self._session is not None, "start() the service first"
        for _hop in range(self.cfg.max_redirects + 1):
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
            if not self.cfg.allow_private_addresses and _private_literal(parts.hostname):
                raise FetchRefused("address_not_allowed")
            if headers and _origin(url) != origin:
                # Credentials go only to the origin they were issued for; once dropped
                # they stay dropped.
                headers = {}
            try:
                async with self._session.get(url, headers=headers,
                                             allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchRefused("bad_redirect")
                        url = urljoin(url, location)
                        continue
                    return await self._store(integration, job, recording, response)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, AddressRefused) or \
                        isinstance(exc.__cause__, AddressRefused):
                    raise FetchRefused("address_not_allowed") from None
                if isinstance(exc, aiohttp.ClientSSLError):
                    raise FetchFailed("tls_error") from None
                raise FetchFailed("network_error") from None
            except TimeoutError:
                raise FetchFailed("timeout") from None
            except aiohttp.ClientError:
                raise FetchFailed("network_error") from None
        raise FetchRefused("too_many_redirects")

    async def _store(self, integration: Integration, job: dict[str, Any],
                     recording: RecordingAvailable, response: aiohttp.ClientResponse) -> str:
        status = response.status
        if status in (401, 403):
            raise FetchRefused(_status_code(status))
        if status in (404, 408, 429) or status >= 500:
            # 404: platforms announce some recordings a moment before they can be served.
            raise FetchFailed(_status_code(status))
        if status != 200:
            raise FetchRefused(_status_code(status))
        limit = self.max_bytes
        if limit is not None and response.content_length is not None \
                and response.content_length > limit:
            raise FetchRefused("too_large")
        served_type = response.headers.get("Content-Type", "")
        content_type = recording.content_type or (
            served_type if _CONTENT_TYPE_RE.match(served_type) else None)
        try:
            stored = await self.recordings.store_stream(
                integration.tenant_id, job["call_id"], content_type,
                response.content.iter_chunked(_CHUNK_BYTES), source="fetch", max_bytes=limit)
        except DomainError as exc:
            if exc.status == 413:
                raise FetchRefused("too_large") from None
            raise
        return stored["id"]

    async def _retry(self, job: dict[str, Any], platform: str, code: str) -> None:
        attempts = job["attempts"] + 1
        if attempts >= self.cfg.max_attempts:
            await self._finish(job, platform, "failed", code)
            return
        now = self.clock.now()
        due = isoformat(now + timedelta(seconds=backoff_delay(attempts, self.cfg, self.rng)))
        # Shielded: a shutdown arriving now must not lose the outcome of this attempt.
        await asyncio.shield(self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = 'pending', attempts = ?,"
            " next_attempt_at = ?, lease_until = NULL, last_error = ?, updated_at = ?"
            " WHERE id = ?", (attempts, due, code, isoformat(now), job["id"]))))

    async def _finish(self, job: dict[str, Any], platform: str, state: str,
                      code: str | None, recording_id: str | None = None) -> None:
        if state == "failed":
            self.failures.labels(platform, outcome_label(code or "internal")).inc()
            log.info("recording fetch gave up", extra={"outcome": code})
        attempts = job["attempts"] + 1
        await asyncio.shield(self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = ?, attempts = ?, lease_until = NULL,"
            " last_error = ?, recording_id = ?, updated_at = ? WHERE id = ?",
            (state, attempts, code, recording_id, isoformat(self.clock.now()), job["id"]))))

    async def jobs_for_call(self, call_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, state, attempts, last_error, recording_id, next_attempt_at,"
            " created_at, updated_at FROM recording_fetch_jobs WHERE call_id = ?"
            " ORDER BY created_at, id", (call_id,))
        return [dict(r) for r in rows]


def register(services: Any) -> None:
    """Feature hook (gateway/features.py): the service exists in the server and the CLI
    alike, subscribed to ingest; its worker starts with the server (`startup`)."""
    service = RecordingFetchService(
        services.db, services.keyring, services.integrations, services.recordings,
        services.clock, services.config.section("recording_fetch"), services.metrics.registry,
        max_bytes=services.config.limits.max_recording_bytes)
    services.features["recording_fetch"] = service
    services.ingest.on_recording_available.append(service.enqueue)


async def startup(app: Any, services: Any) -> None:
    """Feature hook: start the worker; stop it (handing back running jobs) at cleanup."""
    service: RecordingFetchService = services.features["recording_fetch"]
    await start_for_app_lifetime(app, service)
