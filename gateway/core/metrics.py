"""Prometheus metrics. One registry per gateway instance (tests run several in a process).

Invariants:
- Label values are drawn from small fixed sets (route templates, platform names, outcomes,
  component and store names from code): never a phone number, token, id, path or anything
  a caller chose.
- Every metric has a HELP text that says what one unit is and when it moves; every metric
  defined is fed by the code (tests/ops checks a real scrape, the dashboard and the alerts
  in deploy/ name only metrics found there).
- A scrape never fails because one reading failed: a filesystem that cannot be read
  reports NaN, a readiness check that raises reports 0.

Area modules (media, retention, staff access, the audit log, recording fetch) define their
own metrics on `registry`; docs/operations.md lists them all.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Stores whose filesystem is watched (the `store` label; one series each). They may sit on
# different filesystems (config [storage]); the key store is meant to.
STORES = ("database", "blobs", "keys")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"], registry=r)
        self.http_latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time from request received to response returned, by route template",
            ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.webhooks = Counter(
            "gateway_webhooks",
            "Webhook deliveries by platform and outcome (accepted, duplicate, empty, handshake,"
            " bad_signature, missing_signature, stale, bad_handshake, malformed, rejected)",
            ["platform", "outcome"], registry=r)
        self.bytes_encrypted = Counter(
            "gateway_bytes_encrypted", "Plaintext audio bytes encrypted into blobs", registry=r)
        self.bytes_decrypted = Counter(
            "gateway_bytes_decrypted", "Plaintext audio bytes decrypted from blobs for readers",
            registry=r)
        self.group_commit_size = Histogram(
            "gateway_group_commit_units",
            "Write units (deliveries, grants, log appends, ...) that shared one durable commit",
            registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.recordings_stored = Counter(
            "gateway_recordings_stored", "Recordings stored and made visible, by source",
            ["source"], registry=r)
        self.recovered = Counter(
            "gateway_recovered_items",
            "Half-written items found and cleaned up (at start or by a lease sweep), by kind",
            ["kind"], registry=r)
        self.up = Gauge(
            "gateway_up", "1 while the API listener serves requests, 0 during start and stop",
            registry=r)
        self.ready = Gauge(
            "gateway_ready",
            "1 when a component the gateway needs passes its readiness check at scrape time,"
            " 0 when not (the same checks as GET /readyz)", ["component"], registry=r)
        self.storage_free = Gauge(
            "gateway_storage_free_bytes",
            "Bytes available to the gateway on the filesystem holding each store",
            ["store"], registry=r)
        self.storage_size = Gauge(
            "gateway_storage_size_bytes", "Size in bytes of the filesystem holding each store",
            ["store"], registry=r)
        self.backend_latency = Histogram(
            "gateway_backend_operation_seconds",
            "Time one operation on a scale-out backend took, by backend (postgresql, s3) and"
            " operation (commit, read, put_part, get_range, ...)",
            ["backend", "operation"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
        self.backend_errors = Counter(
            "gateway_backend_errors",
            "Operations on a scale-out backend that failed, by backend and operation",
            ["backend", "operation"], registry=r)
        self.database_pool_in_use = Gauge(
            "gateway_database_pool_in_use",
            "PostgreSQL read connections checked out of the pool at scrape time (0 on SQLite)",
            registry=r)
        self.region_objects_written = Counter(
            "gateway_region_objects_written",
            "Objects written to a region's stores ([regions.<name>]; 'default' is [storage]),"
            " by region and store (blobs: recordings committed; keys: key objects put)",
            ["region", "store"], registry=r)
        self.region_bytes_written = Counter(
            "gateway_region_bytes_written",
            "Bytes of those objects (ciphertext as stored), by region and store",
            ["region", "store"], registry=r)
        self._before_scrape: list[Callable[[], Awaitable[None]]] = []
        # Label children of the per-request metrics, bound once per label set: `labels()`
        # takes a lock and builds a tuple each call, which the ingest path felt (issue 12).
        self._request_counters: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._webhook_counters: dict[tuple[str, str], Any] = {}

    def count_webhook(self, platform: str, outcome: str, count: int = 1) -> None:
        """Deliveries (or events) by platform and outcome; label children bound once."""
        child = self._webhook_counters.get((platform, outcome))
        if child is None:
            child = self._webhook_counters[(platform, outcome)] = self.webhooks.labels(
                platform, outcome)
        child.inc(count)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request: its count and its latency, by route template."""
        counter = self._request_counters.get((method, route, status))
        if counter is None:
            counter = self.http_requests.labels(method, route, str(status))
            self._request_counters[(method, route, status)] = counter
        counter.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.http_latency.labels(route)
        latency.observe(seconds)

    def extra(self) -> CollectorRegistry:
        """Feature modules create their own metrics on this registry."""
        return self.registry

    def watch_filesystem(self, store: str, path: Path) -> None:
        """Report free and total bytes of the filesystem holding `path`, read at each scrape
        (a statvfs call: cheap, and never stale)."""
        if store not in STORES:
            raise ValueError(f"store must be one of {STORES}")
        self.storage_free.labels(store).set_function(lambda: _disk_usage(path, "free"))
        self.storage_size.labels(store).set_function(lambda: _disk_usage(path, "total"))

    def before_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run `refresh` before each scrape, for readings that need the event loop (a
        database ping). Keep it quick: Prometheus waits for it."""
        self._before_scrape.append(refresh)

    def record_readiness(self, checks: dict[str, bool]) -> None:
        for component, ok in checks.items():
            self.ready.labels(component).set(1 if ok else 0)

    async def exposition(self) -> bytes:
        """The text a scrape returns, after the pre-scrape readings are refreshed."""
        for refresh in self._before_scrape:
            await refresh()
        return generate_latest(self.registry)


def _disk_usage(path: Path, field: str) -> float:
    # A store directory not made yet (the key store before the first tenant) will be made
    # on its parent's filesystem: report that one.
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return float(getattr(shutil.disk_usage(path), field))
    except OSError:
        return math.nan
