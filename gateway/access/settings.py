"""The `[staff_access]` config section: bounds on staff requests and grants, the expiry
sweep, and tenant notifications. `config.example.toml` shows every key.

Invariants:
- A leaf module: it imports only the standard library and `gateway.errors`, so
  `gateway.config` knows this section (AREA_SECTIONS) without importing the access area.
- Every bound is checked when the section is built (a ConfigError naming the key); the
  access services trust these values and do not re-check them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError

SECTION = "staff_access"

# Shortest grant anyone may ask for or allow: below a minute a grant can lapse between a
# request's approval and the first diagnostic read it was meant for.
MIN_GRANT_SECONDS = 60
# Shortest pending window a tenant may set, for the same reason on the approval side: a
# tenant admin needs at least a minute to see and decide a request.
MIN_PENDING_TTL_SECONDS = 60


@dataclass
class StaffAccessConfig:
    # Longest grant any tenant can allow (seconds). A tenant's own maximum may be lower.
    max_grant_seconds: int = 86400
    # Grant length when a request names none (seconds; clamped to the maximum).
    default_grant_seconds: int = 3600
    # How long a request waits for the tenant's decision unless the tenant set its own TTL.
    pending_ttl_seconds: int = 86400
    # Longest pending TTL a tenant may set (seconds).
    max_pending_ttl_seconds: int = 604800
    # Most call ids one request may name.
    max_scope_calls: int = 100
    # Longest time window one request may name (seconds).
    max_window_seconds: int = 2678400
    # How often expired requests and grants are swept and logged (seconds). Reads and
    # tenant listings also expire what is due, so this only bounds the log's lag.
    sweep_interval_seconds: float = 30.0
    # Tenant notifications (Standard Webhooks): per-attempt timeout, attempts before
    # giving up, first retry delay (doubling each time) and its cap, all in seconds.
    notify_timeout_seconds: float = 10.0
    notify_max_attempts: int = 10
    notify_backoff_seconds: float = 10.0
    notify_backoff_max_seconds: float = 3600.0
    # Allow http:// notification endpoints (development only; https otherwise).
    notify_allow_http: bool = False
    # Allow notification endpoints on private, loopback or link-local addresses (the
    # recording fetcher's rule: off, so a tenant cannot aim the gateway at its own network).
    notify_allow_private_addresses: bool = False

    def __post_init__(self) -> None:
        check(self)


def check(cfg: StaffAccessConfig) -> None:
    """Raise ConfigError naming the first key out of bounds."""
    def fail(key: str, rule: str) -> None:
        raise ConfigError(f"{SECTION}.{key} {rule}")

    if cfg.max_grant_seconds < MIN_GRANT_SECONDS:
        fail("max_grant_seconds", f"must be at least {MIN_GRANT_SECONDS}")
    if cfg.default_grant_seconds < MIN_GRANT_SECONDS:
        fail("default_grant_seconds", f"must be at least {MIN_GRANT_SECONDS}")
    if cfg.max_pending_ttl_seconds < MIN_PENDING_TTL_SECONDS:
        fail("max_pending_ttl_seconds", f"must be at least {MIN_PENDING_TTL_SECONDS}")
    if not MIN_PENDING_TTL_SECONDS <= cfg.pending_ttl_seconds <= cfg.max_pending_ttl_seconds:
        fail("pending_ttl_seconds", f"must be between {MIN_PENDING_TTL_SECONDS} and"
             " max_pending_ttl_seconds")
    if cfg.max_scope_calls < 1:
        fail("max_scope_calls", "must be at least 1")
    if cfg.max_window_seconds < 1:
        fail("max_window_seconds", "must be at least 1")
    for key in ("sweep_interval_seconds", "notify_timeout_seconds"):
        if not getattr(cfg, key) > 0:
            fail(key, "must be > 0")
    if cfg.notify_max_attempts < 1:
        fail("notify_max_attempts", "must be at least 1")
    if cfg.notify_backoff_seconds < 0:
        fail("notify_backoff_seconds", "must be >= 0")
    if cfg.notify_backoff_max_seconds < cfg.notify_backoff_seconds:
        fail("notify_backoff_max_seconds", "must be >= notify_backoff_seconds")
