"""RecordingFetchJob: download a recording a platform announced, straight into the
encrypted blob store.

When a delivery announcing a recording is durable, a job row is written (unless the
integration's `store_audio` is off). A worker task claims due jobs with a lease, asks the
platform's adapter how to fetch (URL and auth headers from the tenant's credentials),
checks the host against the operator's allow-list, and streams the body into a
RecordingWriter: ciphertext only, never a plaintext temp file. 5xx, 404, 408, 429,
timeouts and connection errors are retried with exponential backoff and full jitter; after
`max_attempts` (or at once on 401/403 or a refused host) the job is `failed`, and the call
shows it. A 'running' job whose lease ran out (the process died) is claimed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from prometheus_client import Counter, Gauge

import adapters
from adapters.events import RecordingAvailable

from .clock import Clock, isoformat
from .config import register_section
from .db import Database, WriteTx
from .integrations import Integration, IntegrationService
from .keyring import KeyRing
from .recordings import RecordingService

log = logging.getLogger("gateway.recording_fetch")
REQUEST_RECORD = "recording-fetch-request"


@dataclass
class RecordingFetchConfig:
    # Attempts before a job is marked failed (8 attempts with these delays span ~10 min).
    max_attempts: int = 8
    # Backoff: delay before attempt n+1 is uniform in [0, min(max, base * 2**n)] ("full
    # jitter"), so many failed jobs do not retry in lockstep against a struggling platform.
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0
    # Whole-download timeout and connect timeout.
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    # How often the worker looks for due jobs when nothing woke it.
    poll_interval_seconds: float = 1.0
    # How long a claimed job stays claimed before another worker may take it over.
    lease_seconds: float = 900.0
    # Jobs one process downloads at once.
    concurrency: int = 4
    # Redirect hops followed (each hop's host must be allowed too).
    max_redirects: int = 3
    # Plain http is refused unless this is set (tests against local fake platforms).
    allow_insecure_http: bool = False
    # Hosts recordings may be fetched from, per platform. An entry starting with "." allows
    # any subdomain. Credentials are only ever sent to these hosts.
    allowed_hosts: dict = field(default_factory=lambda: {
        "twilio": [".twilio.com"],
        "telnyx": [".telnyx.com", ".amazonaws.com"],
        "vonage": [".nexmo.com", ".vonage.com"],
        "whatsapp": [],
        "standard": [],
    })


register_section("recording_fetch", RecordingFetchConfig)


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


class RecordingFetchService:
    def __init__(self, db: Database, keyring: KeyRing, integrations: IntegrationService,
                 recordings: RecordingService, clock: Clock, cfg: RecordingFetchConfig,
                 registry: Any) -> None:
        self.db = db
        self.keyring = keyring
        self.integrations = integrations
        self.recordings = recordings
        self.clock = clock
        self.cfg = cfg
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.attempts = Counter("gateway_recording_fetch_attempts",
                                "Recording download attempts by platform and outcome",
                                ["platform", "outcome"], registry=registry)
        self.failures = Counter("gateway_recording_fetch_failures",
                                "Recording fetch jobs that gave up, by platform", ["platform"],
                                registry=registry)
        self.queue_depth = Gauge("gateway_recording_fetch_queue_depth",
                                 "Recording fetch jobs pending or running", registry=registry)

    # -- enqueue --------------------------------------------------------------------------
    async def enqueue(self, integration: Integration, call_id: str,
                      recording: RecordingAvailable) -> str | None:
        """Called once the announcing delivery is durable. Idempotent per recording."""
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
        self._wake.set()
        return job_id if created else None

    # -- worker ---------------------------------------------------------------------------
    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_seconds,
                                        connect=self.cfg.connect_timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        self._task = asyncio.create_task(self._run(), name="recording-fetch-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("recording fetch round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run_due(self) -> int:
        """Claim and run every due job (up to `concurrency` at once). Returns jobs run."""
        jobs = await self._claim(self.cfg.concurrency)
        if jobs:
            await asyncio.gather(*(self._attempt(job) for job in jobs))
        depth = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM recording_fetch_jobs WHERE state IN ('pending','running')")
        self.queue_depth.set(depth["n"] if depth else 0)
        return len(jobs)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        now = self.clock.now()
        now_text = isoformat(now)
        lease = isoformat(now + timedelta(seconds=self.cfg.lease_seconds))

        def unit(tx: WriteTx) -> list[dict[str, Any]]:
            rows = tx.fetchall(
                "SELECT id, tenant_id, integration_id, call_id, request, attempts"
                " FROM recording_fetch_jobs WHERE (state = 'pending' AND next_attempt_at <= ?)"
                " OR (state = 'running' AND lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
                (now_text, now_text, limit))
            for row in rows:
                tx.execute("UPDATE recording_fetch_jobs SET state = 'running', lease_until = ?,"
                           " updated_at = ? WHERE id = ?", (lease, now_text, row["id"]))
            return [dict(r) for r in rows]

        return await self.db.write(unit)

    async def _attempt(self, job: dict[str, Any]) -> None:
        platform = "unknown"
        try:
            ring = await self.keyring.for_tenant(job["tenant_id"])
            request = json.loads(ring.open_record(REQUEST_RECORD, job["id"],
                                                  bytes(job["request"])))
            platform = request["platform"]
            integration = await self.integrations.load_for_delivery(platform,
                                                                    job["integration_id"])
            recording = RecordingAvailable(**{k: request[k] for k in (
                "platform", "dedupe_key", "platform_call_id", "platform_recording_id", "url",
                "content_type", "duration_seconds", "channels")})
            recording_id = await self._download(integration, job, recording)
        except FetchRefused as exc:
            await self._finish(job, platform, "failed", exc.code)
        except FetchFailed as exc:
            await self._retry(job, platform, exc.code)
        except Exception as exc:  # an unknown integration, a decryption error: permanent
            log.warning("recording fetch job failed", extra={"outcome": type(exc).__name__})
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
            raise FetchRefused("bad_url") from None
        allowed = list(self.cfg.allowed_hosts.get(integration.platform, []))
        assert self._session is not None
        for _ in range(self.cfg.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme != "https" and not (parts.scheme == "http"
                                                and self.cfg.allow_insecure_http):
                raise FetchRefused("scheme_not_allowed")
            if not parts.hostname or not host_allowed(parts.hostname, allowed):
                raise FetchRefused("host_not_allowed")
            try:
                async with self._session.get(url, headers=headers,
                                             allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchRefused("bad_redirect")
                        next_url = urljoin(url, location)
                        # Credentials go only to the host they were issued for.
                        if urlsplit(next_url).hostname != parts.hostname:
                            headers = {}
                        url = next_url
                        continue
                    self.attempts.labels(integration.platform, f"http_{response.status}"
                                         if response.status != 200 else "ok").inc()
                    if response.status in (401, 403):
                        raise FetchRefused(f"http_{response.status}")
                    if response.status in (404, 408, 429) or response.status >= 500:
                        raise FetchFailed(f"http_{response.status}")
                    if response.status != 200:
                        raise FetchRefused(f"http_{response.status}")
                    content_type = (response.headers.get("Content-Type")
                                    or recording.content_type)
                    stored = await self.recordings.store_stream(
                        integration.tenant_id, job["call_id"], content_type,
                        response.content.iter_chunked(64 * 1024), source="fetch")
                    return stored["id"]
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.attempts.labels(integration.platform, "network_error").inc()
                raise FetchFailed("timeout" if isinstance(exc, TimeoutError)
                                  else "network_error") from None
        raise FetchRefused("too_many_redirects")

    async def _retry(self, job: dict[str, Any], platform: str, code: str) -> None:
        attempts = job["attempts"] + 1
        if attempts >= self.cfg.max_attempts:
            await self._finish(job, platform, "failed", code, attempts=attempts)
            return
        now = self.clock.now()
        due = isoformat(now + timedelta(seconds=backoff_delay(attempts, self.cfg, self.rng)))
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = 'pending', attempts = ?,"
            " next_attempt_at = ?, lease_until = NULL, last_error = ?, updated_at = ?"
            " WHERE id = ?", (attempts, due, code, isoformat(now), job["id"])))

    async def _finish(self, job: dict[str, Any], platform: str, state: str,
                      code: str | None, recording_id: str | None = None,
                      attempts: int | None = None) -> None:
        if state == "failed":
            self.failures.labels(platform).inc()
        attempts = attempts if attempts is not None else job["attempts"] + 1
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = ?, attempts = ?, lease_until = NULL,"
            " last_error = ?, recording_id = ?, updated_at = ? WHERE id = ?",
            (state, attempts, code, recording_id, isoformat(self.clock.now()), job["id"])))

    async def jobs_for_call(self, call_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, state, attempts, last_error, recording_id, next_attempt_at,"
            " created_at, updated_at FROM recording_fetch_jobs WHERE call_id = ?"
            " ORDER BY created_at", (call_id,))
        return [dict(r) for r in rows]


async def startup(app: Any, services: Any) -> None:
    """Feature hook (gateway/features.py): start the worker and subscribe to ingest."""
    service = RecordingFetchService(
        services.db, services.keyring, services.integrations, services.recordings,
        services.clock, services.config.section("recording_fetch"), services.metrics.registry)
    services.features["recording_fetch"] = service
    services.ingest.on_recording_available.append(service.enqueue)
    await service.start()

    async def stop(_app: Any) -> None:
        await service.stop()
    app.on_cleanup.append(stop)
