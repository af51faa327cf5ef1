"""TOML configuration. `config.example.toml` documents every key; unknown keys are an error
so a typo never silently falls back to a default."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from gateway.access.settings import StaffAccessConfig
from gateway.errors import ConfigError
from gateway.ingest.settings import RecordingFetchConfig
from gateway.lifecycle.settings import KeysConfig, RetentionConfig
from gateway.media.settings import MediaConfig
from gateway.store.urls import store_location, stores_overlap

__all__ = ["AREA_SECTIONS", "Config", "ConfigError", "load_config"]


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:8080"
    # The URL platforms use to reach the gateway. Signatures (Twilio's especially) cover the
    # URL the platform requested, so behind a proxy the gateway rebuilds it from this value.
    public_base_url: str = "http://127.0.0.1:8080"
    # Seconds a shutdown waits for in-flight requests.
    shutdown_timeout: float = 10.0
    # Slow and idle clients (gateway/web/server.py): seconds from a request's first byte to
    # the end of its headers; seconds a body read may wait for the next bytes; seconds an
    # idle keep-alive connection is kept; concurrent connections served (more: 503, closed).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keepalive_timeout_seconds: float = 15.0
    max_connections: int = 1024


@dataclass
class MetricsConfig:
    listen: str = "127.0.0.1:9090"


@dataclass
class S3Config:
    # Empty: AWS. Credentials only from the standard AWS environment or profile.
    endpoint_url: str = ""
    region: str = "us-east-1"


@dataclass
class StorageConfig:
    data_dir: str = "./data"
    # Relative paths are resolved against data_dir.
    database: str = "gateway.sqlite3"
    blob_dir: str = "blobs"
    root_key_file: str = "root.key"
    signing_key_file: str = "signing.key"
    # One small wrapped key file per tenant (wraps that tenant's key rows). Offboarding
    # deletes the tenant's file, which is what makes its data in database and blob backups
    # unreadable: back this directory up apart from them (docs/retention-and-dsr.md).
    tenant_key_dir: str = "tenant-keys"
    # Largest number of writes one group commit carries.
    group_commit_max_batch: int = 256
    # Scale-out backends (empty: the embedded defaults under data_dir). See
    # gateway/store/__init__.py for the URL forms.
    database_url: str = ""
    database_pool_size: int = 8
    # SQLite: batches of webhooks are written by a child process, off the event loop's
    # GIL (gateway/store/writer_process.py). Off: the writer thread runs them.
    sqlite_writer_process: bool = True
    blob_url: str = ""
    key_store_url: str = ""
    s3: S3Config = field(default_factory=lambda: S3Config())
    # /readyz answers 503 (component named) once a local store has less free space than
    # this, so a load balancer drains the replica before writes start failing.
    min_free_bytes: int = 256 * 1024 * 1024


@dataclass
class LimitsConfig:
    # Platforms send small webhooks; 1 MiB is 50x the largest documented payload.
    max_webhook_body_bytes: int = 1024 * 1024
    max_json_body_bytes: int = 256 * 1024
    # Uploads are streamed with constant memory; this bounds disk use per recording.
    max_recording_bytes: int = 4 * 1024 * 1024 * 1024
    # Seconds a decrypted integration credential stays cached in memory.
    credential_cache_seconds: float = 60.0


@dataclass
class PrivacyConfig:
    # Bits of the blind index a NEW tenant starts with (stored with the tenant; changing
    # this never changes an existing tenant's). Few bits means many numbers share a value,
    # so the index does not reveal who called whom; lookups decrypt and compare. The
    # planner then sets each tenant's width from its size (gateway/lifecycle/blind_index.py).
    blind_index_bits: int = 16
    # How often the blind-index planner checks every tenant's width against its size and
    # starts a reindex when it is out of range; 0 turns the planner off (reindexes started
    # by a blind-index key rotation still run).
    blind_index_check_seconds: float = 3600.0
    # Region assumed for numbers written without a country code (ISO 3166 alpha-2), or ""
    # to require a +country prefix.
    default_region: str = ""


@dataclass
class LoggingConfig:
    level: str = "INFO"
    # Share of requests written to the access log (1 = all, 0 = none; a 5xx always is).
    access_log_sample: float = 1.0


# Long enough for "EU standard contractual clauses (2021/914), module 3"; short enough to
# fit every transfer item and log entry.
MAX_LEGAL_BASIS_LENGTH = 200


@dataclass
class TransfersConfig:
    """`[transfers]`: the legal basis the operator relies on when staff in a country outside
    a tenant's region read its data (docs/residency.md). Values are copied into the
    tenant's log, which refuses anything that reads as a phone number."""
    # Country code -> basis, e.g. {US = "EU-US Data Privacy Framework"}.
    legal_basis: dict = field(default_factory=dict)
    # Refuse an access request from a staff member outside the tenant's region whose country
    # has no legal_basis (403 naming the rule, logged). False: allow, recorded with null.
    require_legal_basis: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.legal_basis, dict):
            raise ConfigError('transfers.legal_basis must be a table {COUNTRY = "basis"}')
        for country, basis in self.legal_basis.items():
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise ConfigError("transfers.legal_basis keys must be ISO 3166-1 alpha-2"
                                  " country codes such as US")
            if not isinstance(basis, str) or not 0 < len(basis) <= MAX_LEGAL_BASIS_LENGTH:
                raise ConfigError(f"transfers.legal_basis.{country} must be a text of 1-"
                                  f"{MAX_LEGAL_BASIS_LENGTH} characters")

    def basis_for(self, country: str) -> str | None:
        return self.legal_basis.get(country)


@dataclass
class RegionConfig:
    """One `[regions.<name>]` table: the stores a pinned tenant's data may live in
    (docs/residency.md). Both URLs are required, as `[storage]`'s URL forms."""
    blob_url: str = ""
    key_store_url: str = ""
    # S3 endpoint and signing region for this region's buckets where they differ from
    # [storage.s3] (empty: those).
    endpoint_url: str = ""
    region: str = ""
    # ISO 3166-1 alpha-2 countries inside this region: a staff read from elsewhere is a
    # transfer ([transfers]).
    countries: list = field(default_factory=list)


# Region names are config keys, metric labels and CLI arguments: short, lower case.
_REGION_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # Sections added by later features register here (see `register_section`).
    extra: dict[str, Any] = field(default_factory=lambda: _Sections())

    @property
    def regions(self) -> dict[str, RegionConfig]:
        """The `[regions.<name>]` tables by name; empty without `[regions]` (one set of
        stores, as before regions existed)."""
        return self.extra.get(REGIONS_SECTION) or {}

    def section(self, name: str) -> Any:
        """A feature's own section (registered with `register_section`); the defaults if
        the config file had none."""
        return self.extra[name]

    # Derived paths.
    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def database_path(self) -> Path:
        return self.path(self.storage.database)

    @property
    def blob_dir(self) -> Path:
        return self.path(self.storage.blob_dir)

    @property
    def root_key_path(self) -> Path:
        return self.path(self.storage.root_key_file)

    @property
    def signing_key_path(self) -> Path:
        return self.path(self.storage.signing_key_file)

    @property
    def tenant_key_dir(self) -> Path:
        return self.path(self.storage.tenant_key_dir)


# Every [section] an area owns, by name. Each class lives in its area's `settings.py`, a
# leaf module (dataclasses and checks; it imports nothing from gateway but gateway.errors),
# so load_config knows every section without importing the areas themselves.
AREA_SECTIONS: dict[str, type] = {
    "staff_access": StaffAccessConfig,
    "retention": RetentionConfig,
    "keys": KeysConfig,
    "recording_fetch": RecordingFetchConfig,
    "media": MediaConfig,
    "transfers": TransfersConfig,
}
# [regions.<name>] is a table of tables, parsed by _build_regions (not an AREA_SECTION: its
# keys are the operator's region names).
REGIONS_SECTION = "regions"

# (Transitional) sections still registered at import time by their feature module.
_EXTRA_SECTIONS: dict[str, type] = AREA_SECTIONS


class _Sections(dict):
    """Feature sections; one the config file did not mention reads as its defaults."""

    def __missing__(self, name: str) -> Any:
        value = self[name] = _EXTRA_SECTIONS[name]()
        return value


def register_section(name: str, cls: type) -> None:
    _EXTRA_SECTIONS[name] = cls


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {where}.{key}")
        expected = known[key].type
        default = getattr(cls(), key)
        if is_dataclass(default):
            values[key] = _build(type(default), value, f"{where}.{key}")
            continue
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, (int, float)) and not isinstance(value, (int, float))
        ) or (isinstance(default, str) and not isinstance(value, str)):
            raise ConfigError(f"{where}.{key} must be of type {expected}")
        values[key] = value
    return cls(**values)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load from `path`, else $GATEWAY_CONFIG, else defaults."""
    path = path or os.environ.get("GATEWAY_CONFIG")
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        base_dir = p.resolve().parent
    config = Config()
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"top-level key {name} must be a [section]")
        if name == REGIONS_SECTION:
            config.extra[name] = _build_regions(value)
        elif name in _EXTRA_SECTIONS:
            config.extra[name] = _build(_EXTRA_SECTIONS[name], value, name)
        elif name in {f.name for f in fields(Config)} and name != "extra":
            setattr(config, name, _build(type(getattr(config, name)), value, name))
        else:
            raise ConfigError(f"unknown section [{name}]")
    for name, cls in _EXTRA_SECTIONS.items():
        config.extra.setdefault(name, cls())
    # A relative data_dir is relative to the config file, so `make run` works from anywhere.
    if not Path(config.storage.data_dir).is_absolute():
        config.storage.data_dir = str(base_dir / config.storage.data_dir)
    if not 1 <= config.privacy.blind_index_bits <= 32:
        raise ConfigError("privacy.blind_index_bits must be between 1 and 32")
    if config.privacy.blind_index_check_seconds < 0:
        raise ConfigError("privacy.blind_index_check_seconds must be 0 (off) or more")
    if not 0 <= config.logging.access_log_sample <= 1:
        raise ConfigError("logging.access_log_sample must be between 0 and 1")
    _check_storage(config)
    return config


def _check_storage(config: Config) -> None:
    url = config.storage.database_url
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("storage.database_url must be a postgresql:// URL (or empty for"
                          " SQLite under data_dir)")
    if config.storage.database_pool_size < 1:
        raise ConfigError("storage.database_pool_size must be >= 1")
    blobs = store_location(config.storage.blob_url, config.blob_dir)
    keys = store_location(config.storage.key_store_url, config.tenant_key_dir)
    # Key material never sits beside the data it protects: neither store may contain the
    # other, or one copy of the bucket (or directory) would hold both.
    if stores_overlap(blobs, keys):
        raise ConfigError("storage.key_store_url must be another bucket or prefix than"
                          " storage.blob_url (and not inside it): key material never sits"
                          " beside the recordings it protects")
    _check_regions(config, [("storage.blob_url", blobs), ("storage.key_store_url", keys)])


def _build_regions(raw: dict[str, Any]) -> dict[str, RegionConfig]:
    regions = {}
    for name, table in raw.items():
        if not _REGION_NAME_RE.fullmatch(name) or name == "default":
            raise ConfigError(f"region name {name!r}: 1-32 lower-case letters, digits and"
                              " '-', starting with a letter (and not 'default')")
        if not isinstance(table, dict):
            raise ConfigError(f"regions.{name} must be a [regions.{name}] table")
        region = _build(RegionConfig, table, f"regions.{name}")
        if not region.blob_url or not region.key_store_url:
            raise ConfigError(f"regions.{name} needs blob_url and key_store_url")
        if not isinstance(region.countries, list) or not all(
                isinstance(c, str) and re.fullmatch(r"[A-Z]{2}", c) for c in region.countries):
            raise ConfigError(f"regions.{name}.countries must be ISO 3166-1 alpha-2 codes"
                              " such as [\"DE\", \"FR\"]")
        regions[name] = region
    return regions


def _check_regions(config: Config, taken: list[tuple[str, tuple[str, str]]]) -> None:
    """No two stores of any region (or [storage]) may overlap: a region's copy never holds
    another region's objects, and keys never sit beside blobs."""
    taken = list(taken)
    for name, region in config.regions.items():
        for key, url in (("blob_url", region.blob_url), ("key_store_url", region.key_store_url)):
            where = f"regions.{name}.{key}"
            try:
                location = store_location(url, config.data_dir)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for other, other_location in taken:
                if stores_overlap(location, other_location):
                    raise ConfigError(f"{where} overlaps {other}: each region's stores (and"
                                      " [storage]'s) must be apart, keys never beside blobs")
            taken.append((where, location))





def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"listen address must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)
