"""Integrations: a tenant's connection to one platform. Credentials are sealed at rest,
write-only through the API, and cached decrypted in memory only briefly for webhooks."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import adapters
from adapters.events import AdapterError
from gateway.core.clock import Clock, isoformat
from gateway.errors import invalid, not_found
from gateway.store import Database, sealed
from gateway.tenants.keyring import KeyRing

CREDENTIALS_RECORD = "integration-credentials"
# Key rotation reseals this column (gateway/store/sealed.py).
sealed.register(sealed.SealedColumn("integrations", "credentials", CREDENTIALS_RECORD,
                                    keyset=("created_at", "id")))
# Technical options a tenant may set per integration, with their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {"store_audio": True}


@dataclass(frozen=True)
class Integration:
    id: str
    tenant_id: str
    platform: str
    name: str | None
    options: dict[str, Any]
    created_at: str
    credentials: dict[str, Any] = field(repr=False, default_factory=dict)


def validate_options(raw: Any) -> dict[str, Any]:
    if raw is None:
        return dict(DEFAULT_OPTIONS)
    if not isinstance(raw, dict):
        raise invalid("options", "must be an object")
    options = dict(DEFAULT_OPTIONS)
    for key, value in raw.items():
        if key not in DEFAULT_OPTIONS:
            raise invalid(f"options.{key}", "unknown option")
        if type(value) is not type(DEFAULT_OPTIONS[key]):
            raise invalid(f"options.{key}", f"must be {type(DEFAULT_OPTIONS[key]).__name__}")
        options[key] = value
    return options


class IntegrationService:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, *,
                 public_base_url: str, cache_seconds: float) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.public_base_url = public_base_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Integration]] = {}

    def webhook_url(self, integration: Integration) -> str:
        return f"{self.public_base_url}/v1/hooks/{integration.platform}/{integration.id}"

    async def create(self, tenant_id: str, body: Any) -> Integration:
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        platform = body.get("platform")
        if not isinstance(platform, str) or platform not in adapters.PLATFORMS:
            raise invalid("platform", "must be one of " + ", ".join(sorted(adapters.PLATFORMS)))
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 100):
            raise invalid("name", "must be a string of 1-100 characters")
        raw_credentials = body.get("credentials")
        if not isinstance(raw_credentials, dict):
            raise invalid("credentials", "must be an object")
        try:
            credentials = adapters.get_adapter(platform).validate_credentials(raw_credentials)
        except AdapterError as exc:
            field_name = getattr(exc, "field", "credentials")
            raise invalid(f"credentials.{field_name}".replace("credentials.credentials",
                                                              "credentials"),
                          getattr(exc, "reason", "invalid")) from None
        options = validate_options(body.get("options"))
        integration_id = str(uuid.uuid4())
        ring = await self.keyring.for_tenant(tenant_id)
        sealed = ring.seal_record(CREDENTIALS_RECORD, integration_id,
                                  json.dumps(credentials).encode())
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO integrations (id, tenant_id, platform, name, credentials, options,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (integration_id, tenant_id, platform, name, sealed, json.dumps(options), now)))
        return Integration(integration_id, tenant_id, platform, name, options, now)

    async def list(self, tenant_id: str) -> list[Integration]:
        rows = await self.db.fetchall(
            "SELECT id, tenant_id, platform, name, options, created_at FROM integrations"
            " WHERE tenant_id = ? AND disabled_at IS NULL ORDER BY created_at, id", (tenant_id,))
        return [self._from_row(r) for r in rows]

    async def get(self, tenant_id: str, integration_id: str) -> Integration:
        row = await self.db.fetchone(
            "SELECT id, tenant_id, platform, name, options, created_at FROM integrations"
            " WHERE id = ? AND tenant_id = ? AND disabled_at IS NULL",
            (integration_id, tenant_id))
        if row is None:
            raise not_found("integration")
        return self._from_row(row)

    async def disable(self, tenant_id: str, integration_id: str) -> None:
        await self.get(tenant_id, integration_id)
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "UPDATE integrations SET disabled_at = ? WHERE id = ? AND tenant_id = ?",
            (now, integration_id, tenant_id)))
        self._cache.pop(integration_id, None)

    async def load_for_delivery(self, platform: str, integration_id: str) -> Integration:
        """The integration a webhook or media connection names, with its credentials
        decrypted. 404 for unknown, disabled, or a platform that does not match."""
        cached = self._cache.get(integration_id)
        if cached is not None and cached[0] > time.monotonic():
            integration = cached[1]
        else:
            row = await self.db.fetchone(
                "SELECT id, tenant_id, platform, name, options, created_at, credentials"
                " FROM integrations WHERE id = ? AND disabled_at IS NULL", (integration_id,))
            if row is None:
                raise not_found("integration")
            ring = await self.keyring.for_tenant(row["tenant_id"])
            credentials = json.loads(ring.open_record(CREDENTIALS_RECORD, row["id"],
                                                      bytes(row["credentials"])))
            base = self._from_row(row)
            integration = Integration(base.id, base.tenant_id, base.platform, base.name,
                                      base.options, base.created_at, credentials)
            self._cache[integration_id] = (time.monotonic() + self.cache_seconds, integration)
        if integration.platform != platform:
            raise not_found("integration")
        return integration

    def forget(self, integration_id: str) -> None:
        self._cache.pop(integration_id, None)

    @staticmethod
    def _from_row(row: Any) -> Integration:
        return Integration(row["id"], row["tenant_id"], row["platform"], row["name"],
                           json.loads(row["options"]), row["created_at"])

    def render(self, integration: Integration) -> dict[str, Any]:
        """The public view: never the credentials."""
        return {"id": integration.id, "platform": integration.platform,
                "name": integration.name, "options": integration.options,
                "created_at": integration.created_at,
                "webhook_url": self.webhook_url(integration)}
