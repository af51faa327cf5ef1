"""Prometheus metrics. One registry per gateway instance (tests run several in a process).
Label values are drawn from small fixed sets (route templates, platform names, outcomes):
never a phone number, token, id or anything a caller chose."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP requests by route template and status",
            ["method", "route", "status"], registry=r)
        self.http_latency = Histogram(
            "gateway_http_request_duration_seconds", "HTTP request latency by route template",
            ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.webhooks = Counter(
            "gateway_webhooks", "Webhook deliveries by platform and outcome",
            ["platform", "outcome"], registry=r)
        self.bytes_encrypted = Counter(
            "gateway_bytes_encrypted", "Plaintext bytes encrypted into blobs", registry=r)
        self.bytes_decrypted = Counter(
            "gateway_bytes_decrypted", "Plaintext bytes decrypted from blobs", registry=r)
        self.group_commit_size = Histogram(
            "gateway_group_commit_units", "Write units per durable commit", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.recordings_stored = Counter(
            "gateway_recordings_stored", "Recordings stored by source", ["source"], registry=r)
        self.recovered = Counter(
            "gateway_recovered_items", "Half-written items cleaned up at start", ["kind"],
            registry=r)
        self.up = Gauge("gateway_up", "1 while the gateway serves", registry=r)

    def extra(self) -> CollectorRegistry:
        """Feature modules create their own metrics on this registry."""
        return self.registry
