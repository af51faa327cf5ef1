"""Crash test: a real `gateway serve` takes signed webhooks at a steady rate, is killed
with SIGKILL mid-stream and started again on the same data (issue 13's third test).

What must hold: every webhook that got a 2xx before the kill is stored after the restart
(a 2xx means durable), and nothing is stored twice, even when the platform redelivers
every event, acknowledged or not, after the restart (as platforms do).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import requests

from tests.hostile.conftest import served_gateway
from tests.support.signers import call_updated, new_whsec, standard_delivery

RATE_PER_SECOND = 150
KILL_AFTER_SECONDS = 1.5
SEND_SECONDS = 2.5


async def _send_steadily(url: str, secret: str, deliveries: dict[str, tuple[bytes, dict]],
                         acked: set[str]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async def one(call_id: str) -> None:
            raw, headers = standard_delivery(secret, call_updated(call_id, "completed"),
                                             datetime.now(UTC), msg_id=f"msg_{call_id}")
            deliveries[call_id] = (raw, headers)
            try:
                async with http.post(url, data=raw, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        acked.add(call_id)
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass                                   # not acknowledged: may or may not be stored
        tasks = []
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < SEND_SECONDS:
            due = int((time.monotonic() - started) * RATE_PER_SECOND)
            while sent < due:
                tasks.append(asyncio.create_task(one(f"crash-{uuid.uuid4()}")))
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)


async def _stored_calls(base: str, auth: dict[str, str]) -> list[dict]:
    items, cursor = [], None
    async with aiohttp.ClientSession() as http:
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            async with http.get(base + "/v1/calls", params=params, headers=auth) as response:
                page = await response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


async def _redeliver(hook: str, deliveries: dict[str, tuple[bytes, dict]]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        async def again(raw: bytes, headers: dict) -> int:
            async with http.post(hook, data=raw, headers=headers) as response:
                body = await response.json()
                assert response.status == 200, body
                return body["duplicates"]
        return await asyncio.gather(*(again(raw, headers)
                                      for raw, headers in deliveries.values()))


def test_acknowledged_webhooks_survive_kill_9_and_are_stored_once():
    with contextlib.contextmanager(served_gateway)() as served:
        gw = served.gw
        secret = new_whsec()
        integration = requests.post(gw.url + "/v1/integrations", headers=served.tenant_auth,
                                    timeout=10, json={"platform": "standard",
                                                      "credentials": {"secret": secret}}).json()
        hook = f"{gw.url}/v1/hooks/standard/{integration['id']}"
        deliveries: dict[str, tuple[bytes, dict]] = {}
        acked: set[str] = set()
        killer = threading.Timer(KILL_AFTER_SECONDS, gw.kill9)
        killer.start()
        asyncio.run(_send_steadily(hook, secret, deliveries, acked))
        killer.join()
        print(f"crash test: {len(deliveries)} sent, {len(acked)} acknowledged before kill -9")
        assert acked, "nothing was acknowledged before the kill"
        assert len(acked) < len(deliveries), "the kill landed after the last delivery"

        gw.start()
        stored = asyncio.run(_stored_calls(gw.url, served.tenant_auth))
        ids = [c["platform_call_id"] for c in stored]
        assert acked <= set(ids), f"{len(acked - set(ids))} acknowledged events lost"
        assert len(ids) == len(set(ids)), "a call was stored twice"

        # The platform redelivers everything (same webhook-id): nothing is stored twice.
        duplicates = asyncio.run(_redeliver(hook, deliveries))
        assert sum(duplicates) >= len(acked)
        stored = asyncio.run(_stored_calls(gw.url, served.tenant_auth))
        ids = [c["platform_call_id"] for c in stored]
        assert len(ids) == len(set(ids)) == len(deliveries)
        for call in stored[:20]:
            detail = requests.get(f"{gw.url}/v1/calls/{call['id']}",
                                  headers=served.tenant_auth, timeout=10).json()
            assert len(detail["events"]) == 1
