"""A real gateway on a real loopback port, driven over HTTP: the harness every end-to-end
test uses (the `gateway` fixture in tests/conftest.py wraps `start_gateway`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from gateway.app import build_app
from gateway.config import Config
from gateway.core.clock import ManualClock
from gateway.services import GatewayServices, open_services
from gateway.tenants.accounts import create_staff, create_tenant

PUBLIC_BASE_URL = "https://gateway.example.com"


def make_config(data_dir: Path) -> Config:
    config = Config()
    config.storage.data_dir = str(data_dir)
    config.server.public_base_url = PUBLIC_BASE_URL
    return config


@dataclass
class Tenant:
    id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class RunningGateway:
    url: str
    http: aiohttp.ClientSession
    services: GatewayServices
    clock: ManualClock
    config: Config
    server: TestServer

    async def new_tenant(self, name: str) -> Tenant:
        tenant_id, api_key = await create_tenant(self.services.db, self.services.keyring,
                                                 self.clock, name)
        return Tenant(tenant_id, api_key)

    async def new_staff(self, name: str = "Sam Support", employer: str = "Operator GmbH",
                        country: str = "DE") -> dict[str, str]:
        staff_id, pseudonym, token = await create_staff(
            self.services.db, self.clock, name=name, employer=employer, country=country)
        return {"id": staff_id, "pseudonym": pseudonym, "token": token,
                "auth": {"Authorization": f"Bearer {token}"}}

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        """Send a request; returns (status, parsed body or bytes, headers)."""
        async with self.http.request(method, self.url + path, **kwargs) as response:
            raw = await response.read()
            ctype = response.headers.get("Content-Type", "")
            body: Any = raw
            if "json" in ctype:
                body = json.loads(raw)
            return response.status, body, response.headers

    async def scrape_metrics(self) -> str:
        """The Prometheus exposition, fetched over HTTP from the metrics listener's app."""
        from gateway.app import build_metrics_app
        server = TestServer(build_metrics_app(self.services.metrics), host="127.0.0.1")
        await server.start_server()
        try:
            async with self.http.get(str(server.make_url("/metrics"))) as response:
                return await response.text()
        finally:
            await server.close()

    async def integration(self, tenant: Tenant, platform: str, credentials: dict[str, Any],
                          **extra: Any) -> dict[str, Any]:
        status, body, _ = await self.request(
            "POST", "/v1/integrations", headers=tenant.auth,
            json={"platform": platform, "credentials": credentials, **extra})
        assert status == 201, body
        return body


@contextlib.asynccontextmanager
async def start_gateway(config: Config, clock: ManualClock) -> AsyncIterator[RunningGateway]:
    """Open the services, serve the app on a free loopback port, and close both after."""
    services = await open_services(config, clock)
    server = TestServer(build_app(config, clock, services), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningGateway(str(server.make_url("")).rstrip("/"), http, services, clock,
                                 config, server)
    finally:
        await server.close()
        await services.close()
