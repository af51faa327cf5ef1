"""PostgreSQL going away and coming back, as a platform and an operator see it: 503 with
Retry-After (platforms redeliver), /readyz naming the database, nothing half-written, and
recovery without a restart."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.server import make_config, start_gateway
from tests.support.signers import call_updated, new_whsec, standard_delivery
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(postgres_schema_url):
    parts = urlsplit(postgres_schema_url)
    proxy = await TcpProxy(parts.hostname, parts.port).start()
    url = urlunsplit((parts.scheme, f"{parts.username}@127.0.0.1:{proxy.port}", parts.path,
                      parts.query, ""))
    yield proxy, url
    await proxy.stop()


async def test_database_outage_is_a_503_then_heals_by_itself(tmp_path, clock, proxy):
    proxy, url = proxy
    from gateway.services import init_storage
    config = make_config(tmp_path / "data")
    config.storage.database_url = url
    init_storage(config)
    async with start_gateway(config, clock) as gateway:
        tenant = await gateway.new_tenant("acme")
        secret = new_whsec()
        integration = await gateway.integration(tenant, "standard", {"secret": secret})
        path = f"/v1/hooks/standard/{integration['id']}"

        async def deliver(call_id: str):
            raw, headers = standard_delivery(secret, call_updated(call_id, "ringing"),
                                             clock.now())
            return await gateway.request("POST", path, data=raw, headers=headers)

        assert (await deliver("c-before"))[0] == 200
        proxy.cut()
        status, body, headers = await deliver("c-during")
        assert status == 503, body
        assert body["type"] == "urn:vgw:problem:unavailable" and body["component"] == "database"
        assert int(headers["Retry-After"]) > 0
        status, ready, _ = await gateway.request("GET", "/readyz")
        assert status == 503 and ready["checks"]["database"] is False

        proxy.restore()
        # Connections broken by the cut are replaced as they fail: within seconds, with no
        # restart, deliveries and readiness are back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            status, body, _ = await deliver("c-during")
            ready_status, ready, _ = await gateway.request("GET", "/readyz")
            if (status, ready_status) == (200, 200) or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 200, body
        assert ready_status == 200, ready
        status, calls, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
        assert status == 200
        assert sorted(c["platform_call_id"] for c in calls["items"]) == ["c-before", "c-during"]
