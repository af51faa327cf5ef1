"""The `[recording_fetch]` config section: a leaf module (stdlib, gateway.errors and the
adapters registry only), listed in gateway.config.AREA_SECTIONS so load_config knows it
without importing the ingest area. config.example.toml documents each key.

Invariant: a platform's default allow-list is its descriptor's `recording_hosts`
(adapters/<platform>.py); this module names no platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import adapters
from gateway.errors import ConfigError

SECTION = "recording_fetch"

# Hosts recordings may be fetched from, per platform, when the config names none: each
# descriptor's own list (the adapter's credential fence plus the CDN hosts the platform
# redirects media downloads to; credentials are never forwarded there).
DEFAULT_ALLOWED_HOSTS = MappingProxyType(
    {name: list(platform.recording_hosts) for name, platform in adapters.PLATFORMS.items()})


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
            if not adapters.is_host_entry(host):
                raise ConfigError(f"recording_fetch.allowed_hosts.{platform}: {host!r} is not"
                                  " a host name or .domain suffix")
        allowed[platform] = [h.lower() for h in hosts]
    return allowed
