"""Shared fixtures: a real gateway on a real port, driven over HTTP."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import build_app
from gateway.config import Config
from gateway.core.clock import ManualClock
from gateway.services import GatewayServices, init_storage, open_services
from gateway.tenants.accounts import create_staff, create_tenant

ROOT = Path(__file__).resolve().parent.parent
# Session fixtures for the real backing servers: `postgres`, `seaweedfs`.
pytest_plugins = ["tests.support.postgres", "tests.support.seaweedfs"]

PUBLIC_BASE_URL = "https://gateway.example.com"

# The end-to-end suites the scale-out backends must pass run on every backend; the rest
# (unit tests, SQLite-file forensics) on the embedded one. A test that only makes sense on
# one backend says so with @pytest.mark.backends("sqlite").
BACKENDS = tuple(os.environ.get("GATEWAY_TEST_BACKENDS", "sqlite,postgres").split(","))
EVERY_BACKEND_SUITES = ("tests/gateway/test_foundation_e2e.py", "tests/platforms/",
                        "tests/access/", "tests/lifecycle/", "tests/calls/")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    relative = str(metafunc.definition.path.relative_to(ROOT))
    every = relative.startswith(EVERY_BACKEND_SUITES)
    names = marker.args if marker else (BACKENDS if every else ("sqlite",))
    metafunc.parametrize("backend", [n for n in names if n in BACKENDS] or ["sqlite"],
                         indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def postgres_schema_url(postgres) -> Iterator[str]:
    """A fresh schema in the session's throwaway database, for one test."""
    import psycopg
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres.url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


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

    async def integration(self, tenant: Tenant, platform: str, credentials: dict[str, Any],
                          **extra: Any) -> dict[str, Any]:
        status, body, _ = await self.request(
            "POST", "/v1/integrations", headers=tenant.auth,
            json={"platform": platform, "credentials": credentials, **extra})
        assert status == 201, body
        return body


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Config:
    config = make_config(tmp_path / "data")
    if backend == "postgres":
        config.storage.database_url = request.getfixturevalue("postgres_schema_url")
    init_storage(config)
    return config


@pytest.fixture
async def gateway(config: Config, clock: ManualClock) -> AsyncIterator[RunningGateway]:
    services = await open_services(config, clock)
    server = TestServer(build_app(config, clock, services), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield RunningGateway(str(server.make_url("")).rstrip("/"), http, services, clock,
                             config, server)
    await server.close()
    await services.close()
