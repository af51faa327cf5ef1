"""Helpers for the retention tests: a tenant with a Standard Webhooks integration, calls
created by signed deliveries (signed by the reference library, not by the gateway), and
recordings uploaded over HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.signers import call_updated, new_whsec, standard_delivery


@dataclass
class Env:
    gateway: Any
    tenant: Any
    secret: str
    integration: dict[str, Any]
    calls: dict[str, str] = field(default_factory=dict)   # platform id -> call id

    @property
    def auth(self) -> dict[str, str]:
        return self.tenant.auth

    async def request(self, method: str, path: str, **kwargs: Any):
        kwargs.setdefault("headers", self.auth)
        return await self.gateway.request(method, path, **kwargs)

    async def call(self, platform_id: str | None = None, *, from_number: str = "+14155550100",
                   to_number: str = "+14155550199", status: str = "completed",
                   started_at: str | None = None) -> str:
        """Deliver one call event; returns the gateway's call id."""
        platform_id = platform_id or f"pc-{uuid.uuid4().hex[:12]}"
        started_at = started_at or self.gateway.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = call_updated(platform_id, status, from_number=from_number, to_number=to_number,
                            started_at=started_at)
        raw, headers = standard_delivery(self.secret, body, self.gateway.clock.now())
        status_code, reply, _ = await self.gateway.request(
            "POST", f"/v1/hooks/standard/{self.integration['id']}", data=raw, headers=headers)
        assert status_code == 200, reply
        row = await self.gateway.services.db.fetchone(
            "SELECT id FROM calls WHERE integration_id = ? AND platform_call_id = ?",
            (self.integration["id"], platform_id))
        self.calls[platform_id] = row["id"]
        return row["id"]

    async def event(self, platform_id: str, status: str = "completed") -> None:
        """Another event of an existing call."""
        body = call_updated(platform_id, status)
        raw, headers = standard_delivery(self.secret, body, self.gateway.clock.now())
        code, reply, _ = await self.gateway.request(
            "POST", f"/v1/hooks/standard/{self.integration['id']}", data=raw, headers=headers)
        assert code == 200, reply

    async def recording(self, call_id: str, data: bytes = b"RIFF-test-audio" * 100) -> str:
        code, body, _ = await self.request("POST", f"/v1/calls/{call_id}/recordings", data=data,
                                           headers={**self.auth, "Content-Type": "audio/wav"})
        assert code == 201, body
        return body["id"]

    async def sweep(self, **kwargs: Any):
        from gateway.lifecycle.retention import get_retention
        return await get_retention(self.gateway.services).sweep(**kwargs)

    async def count(self, table: str, where: str = "TRUE", params: tuple = ()) -> int:
        row = await self.gateway.services.db.fetchone(
            f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ? AND {where}",
            (self.tenant.id, *params))
        return row[0]

    async def blob_exists(self, object_id: str) -> bool:
        """Through the blob-store seam, so the same test runs on files and on S3."""
        return await self.gateway.services.blobs.exists(self.tenant.id, object_id)

    async def blob_bytes(self, object_id: str) -> bytes:
        fileobj = await self.gateway.services.blobs.open(self.tenant.id, object_id)
        try:
            return await asyncio.to_thread(fileobj.read)
        finally:
            fileobj.close()

    async def put_blob(self, object_id: str, data: bytes) -> None:
        """A blob the database knows nothing of (a writer that died before its row)."""
        sink = await self.gateway.services.blobs.create(self.tenant.id, object_id)
        await sink.write(data)
        await sink.commit()

    async def audit_entries(self) -> list[dict[str, Any]]:
        from gateway.transparency.log import get_audit_log
        log = get_audit_log(self.gateway.services)
        size = await log.size(self.tenant.id)
        return [json.loads(e) for e in await log.entries(self.tenant.id, 0, size)]


async def make_env(gateway, name: str = "acme") -> Env:
    tenant = await gateway.new_tenant(name)
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    return Env(gateway, tenant, secret, integration)


def storage_toml(gateway) -> str:
    """The [storage] section of a config file for the CLI that reaches the same stores as
    the running test gateway (its data directory and, on PostgreSQL, its database)."""
    storage = gateway.config.storage
    return (f'[storage]\ndata_dir = "{gateway.config.data_dir}"\n'
            f'database_url = "{storage.database_url}"\n'
            f'blob_url = "{storage.blob_url}"\nkey_store_url = "{storage.key_store_url}"\n'
            f'[storage.s3]\nendpoint_url = "{storage.s3.endpoint_url}"\n'
            f'region = "{storage.s3.region}"\n')


def iso(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
