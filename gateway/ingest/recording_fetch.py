"""RecordingFetchService: download a recording a platform announced, straight into the
encrypted blob store.

When a delivery announcing a recording is durable, a job row is written (unless the
integration's `store_audio` is off). The announcement is handed over again when the
platform redelivers it, and the insert is idempotent, so a crash between the two commits
loses nothing. A worker (one `PeriodicJob`) claims due jobs with a lease, asks the
platform's adapter how to fetch (URL and auth headers from the tenant's credentials),
checks every hop against the operator's allow-list, and streams the body into a
RecordingWriter: ciphertext only, never a plaintext temp file.

Rooms: `settings` (the [recording_fetch] section and the per-platform default hosts, read
from the adapters registry), `fetch_policy` (transport rules, host and address checks,
outcome codes), `fetch_jobs` (the job table), this module (the worker and the area hooks).

Outcomes: 5xx, 404, 408, 429, timeouts and connection errors are retried with exponential
backoff and full jitter; after `max_attempts` (or at once on 401/403, a refused host, a
recording over the size limit) the job is `failed` with a short code in `last_error`, which
the call shows (`GET /v1/calls/{id}` -> `recording_fetches`). A 'running' job whose lease
ran out (the process died mid-download) is claimed again and its lost attempt counts; a
clean shutdown hands its running jobs back at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver
from prometheus_client import Counter, Gauge

import adapters
from adapters.events import RecordingAvailable
from gateway.calls.recordings import RecordingService
from gateway.core.clock import Clock
from gateway.core.jobs import PeriodicJob, start_for_app_lifetime
from gateway.errors import DomainError
from gateway.ingest.fetch_jobs import FetchJobQueue
from gateway.ingest.fetch_policy import (
    REDIRECTS,
    AddressRefused,
    FetchFailed,
    FetchRefused,
    backoff_delay,
    check_hop,
    open_session,
    origin,
    outcome_label,
    status_code,
)
from gateway.ingest.integrations import Integration, IntegrationService
from gateway.ingest.settings import SECTION, RecordingFetchConfig, validate
from gateway.store import Database
from gateway.store.sealed import SealedColumn
from gateway.store.sealed import register as register_sealed
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.recording_fetch")
REQUEST_RECORD = "recording-fetch-request"
# Key rotation reseals this column (gateway/store/sealed.py).
register_sealed(SealedColumn("recording_fetch_jobs", "request", REQUEST_RECORD))
FEATURE = "recording_fetch"
_CONTENT_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]{0,200})?\Z")
_CHUNK_BYTES = 64 * 1024
# The announcement fields sealed into a job's request (RecordingAvailable's own fields).
_REQUEST_FIELDS = ("platform", "dedupe_key", "platform_call_id", "platform_recording_id",
                   "url", "content_type", "duration_seconds", "channels")


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
        self.jobs = FetchJobQueue(db, clock)
        # Transport: None means the system's (trust store, DNS). Tests inject a context
        # trusting their own CA and a resolver pointing platform names at a local server.
        self.ssl_context = ssl_context
        self.resolver = resolver
        self.rng = random.Random()
        # A full batch means there may be more due right away: the next round runs at once.
        self.worker = PeriodicJob("recording-fetch-worker", self._worker_round,
                                  cfg.poll_interval_seconds, run_at_start=True,
                                  on_stop=self._after_stop)
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
        sealed = ring.seal_record(REQUEST_RECORD, job_id, json.dumps(
            {name: getattr(recording, name) for name in _REQUEST_FIELDS}).encode())
        created = await self.jobs.insert(job_id, integration.tenant_id, integration.id,
                                         call_id, recording.platform_recording_id, sealed)
        if created:
            self.queue_depth.inc()
        self.worker.wake()
        return job_id if created else None

    async def jobs_for_call(self, call_id: str) -> list[dict[str, Any]]:
        return await self.jobs.for_call(call_id)

    # -- worker ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = open_session(self.cfg, self.ssl_context, self.resolver)
        await self._update_depth()
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    async def _after_stop(self) -> None:
        # Jobs cut off by the shutdown go back to the queue at once, without counting the
        # attempt (a crash instead leaves them to their lease).
        interrupted, self._interrupted = self._interrupted, set()
        try:
            await self.jobs.hand_back(interrupted)
        except Exception:
            log.warning("could not hand back interrupted recording fetch jobs")
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _worker_round(self) -> bool:
        return await self.run_due() >= self.cfg.concurrency

    def wake(self) -> None:
        """Ask the worker to look for due jobs now (e.g. after the clock moved)."""
        self.worker.wake()

    async def idle(self) -> None:
        """Wait until no round of attempts is running (tests, orderly shutdown)."""
        await self._idle.wait()

    async def run_due(self) -> int:
        """Claim and run every due job (up to `concurrency` at once). Returns jobs run."""
        self._rounds += 1
        self._idle.clear()
        try:
            jobs = await self.jobs.claim(self.cfg.concurrency, self.cfg.lease_seconds,
                                         self.cfg.max_attempts)
            if jobs:
                await asyncio.gather(*(self._attempt(job) for job in jobs))
            await self._update_depth()
            return len(jobs)
        finally:
            self._rounds -= 1
            if self._rounds == 0:
                self._idle.set()

    async def _update_depth(self) -> None:
        self.queue_depth.set(await self.jobs.depth())

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
            recording = RecordingAvailable(**{k: request[k] for k in _REQUEST_FIELDS})
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
        first_origin = origin(url)
        assert self._session is not None, "start() the service first"
        for _hop in range(self.cfg.max_redirects + 1):
            check_hop(url, allowed, allow_private=self.cfg.allow_private_addresses)
            if headers and origin(url) != first_origin:
                # Credentials go only to the origin they were issued for; once dropped
                # they stay dropped.
                headers = {}
            try:
                async with self._session.get(url, headers=headers,
                                             allow_redirects=False) as response:
                    if response.status in REDIRECTS:
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
            raise FetchRefused(status_code(status))
        if status in (404, 408, 429) or status >= 500:
            # 404: platforms announce some recordings a moment before they can be served.
            raise FetchFailed(status_code(status))
        if status != 200:
            raise FetchRefused(status_code(status))
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
        due = self.clock.now() + timedelta(seconds=backoff_delay(attempts, self.cfg, self.rng))
        await self.jobs.reschedule(job["id"], attempts, due, code)

    async def _finish(self, job: dict[str, Any], platform: str, state: str,
                      code: str | None, recording_id: str | None = None) -> None:
        if state == "failed":
            self.failures.labels(platform, outcome_label(code or "internal")).inc()
            log.info("recording fetch gave up", extra={"outcome": code})
        await self.jobs.finish(job["id"], job["attempts"] + 1, state, code, recording_id)


def register(services: Any) -> None:
    """Feature hook (gateway/features.py): the service exists in the server and the CLI
    alike, subscribed to ingest; its worker starts with the server (`startup`)."""
    service = RecordingFetchService(
        services.db, services.keyring, services.integrations, services.recordings,
        services.clock, services.config.section(SECTION), services.metrics.registry,
        max_bytes=services.config.limits.max_recording_bytes)
    services.features[FEATURE] = service
    services.ingest.on_recording_available.append(service.enqueue)


async def startup(app: Any, services: Any) -> None:
    """Feature hook: start the worker; stop it (handing back running jobs) at cleanup."""
    service: RecordingFetchService = services.features[FEATURE]
    await start_for_app_lifetime(app, service)
