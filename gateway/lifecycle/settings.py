"""The [retention] and [keys] config sections (listed in gateway.config.AREA_SECTIONS).

Invariants:
- A LEAF module: it imports the stdlib, gateway.errors and the data-class registry (itself
  stdlib-only), so `load_config` knows these sections without importing any service.
- Every check raises ConfigError naming the key; values are never echoed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.errors import ConfigError
from gateway.lifecycle.data_classes import BY_NAME, default_bounds

# A receipt lists the SHA-256 of each id it deleted: 1000 ids is ~70 KB, well inside the
# audit log's 256 KiB entry limit (gateway/transparency/entries.py MAX_ENTRY_SIZE).
MAX_BATCH_SIZE = 1000


@dataclass
class RetentionConfig:
    # Seconds between in-process sweeps; 0 turns the in-process sweep off (run
    # `gateway retention run` from cron instead).
    sweep_interval_seconds: float = 300.0
    # Items one write unit deletes. Each unit holds the single writer for its statements
    # (~20-40 us per call with its children), so 500 keeps ingest waiting < ~20 ms.
    batch_size: int = 500
    # Seconds between full orphan scans (blob files and data keys with no recording row,
    # e.g. from a writer that crashed mid-rename); 0 turns it off. Costs a walk of the blob
    # directory, so it runs rarely; crash leftovers of the sweep itself need no scan.
    orphan_scan_interval_seconds: float = 86400.0
    # Days a data-subject request has before it is due (GDPR Art. 12(3): one month).
    dsr_due_days: int = 30
    # Operator bounds per data class (gateway/lifecycle/data_classes.py); a class or key
    # left out keeps its default.
    classes: dict = field(default_factory=default_bounds)

    def __post_init__(self) -> None:
        for name, given in (self.classes or {}).items():
            if name not in BY_NAME:
                raise ConfigError(f"unknown data class retention.classes.{name}")
            if not isinstance(given, dict):
                raise ConfigError(f"retention.classes.{name} must be a table")
            for key, value in given.items():
                if key not in BY_NAME[name].bounds():
                    raise ConfigError(f"unknown key retention.classes.{name}.{key}")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"retention.classes.{name}.{key} must be an integer >= 0")
        merged: dict[str, dict[str, int]] = {}
        for name, defaults in default_bounds().items():
            bounds = {**defaults, **(self.classes or {}).get(name, {})}
            if not bounds["min_days"] <= bounds["default_days"] <= bounds["max_days"]:
                raise ConfigError(f"retention.classes.{name}: need min_days <= default_days"
                                  " <= max_days")
            merged[name] = bounds
        self.classes = merged
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"retention.batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if self.sweep_interval_seconds < 0 or self.orphan_scan_interval_seconds < 0:
            raise ConfigError("retention intervals must be >= 0")
        if self.dsr_due_days < 1:
            raise ConfigError("retention.dsr_due_days must be >= 1")


@dataclass
class KeysConfig:
    # Records resealed (or data keys rewrapped) per write unit.
    rotation_batch_size: int = 500
    # Old KEK versions are destroyed no earlier than this many seconds after a rotation
    # starts. Must exceed the key ring cache (30 s, gateway/tenants/keyring.py) plus the
    # longest request, so every process sharing the database seals under the new version.
    grace_seconds: float = 120.0
    # How often the rotation job looks for work when nothing woke it.
    poll_interval_seconds: float = 5.0
    # A rotation claimed by a process stays its own this long without progress; then
    # another process takes it over (and a blocked rotation is re-checked).
    lease_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.rotation_batch_size <= 5000:
            raise ConfigError("keys.rotation_batch_size must be between 1 and 5000")
        if self.grace_seconds < 0 or self.poll_interval_seconds <= 0 or self.lease_seconds <= 0:
            raise ConfigError("keys: grace_seconds >= 0, intervals > 0")
