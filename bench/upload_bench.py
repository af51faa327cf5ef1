"""(c) Peak RSS growth of the gateway process while it receives a 1 GiB recording upload."""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp

from ._harness import GatewayProcess, peak_rss_kib, rss_kib

SIZE = int(os.environ.get("BENCH_UPLOAD_MB", "1024")) * 1024 * 1024
CHUNK = 256 * 1024


async def _upload(gw: GatewayProcess) -> dict[str, float]:
    from datetime import UTC, datetime

    from tests.gateway.helpers import call_updated, new_whsec, standard_delivery

    tenant = gw.cli("tenant", "create", "--name", "bench")
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    secret = new_whsec()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/integrations", headers=auth,
                             json={"platform": "standard", "credentials": {"secret": secret}}
                             ) as r:
            integration = await r.json()
        raw, headers = standard_delivery(secret, call_updated("big", "completed"),
                                         datetime.now(UTC))
        async with http.post(f"{gw.url}/v1/hooks/standard/{integration['id']}", data=raw,
                             headers=headers) as r:
            assert r.status == 200
        async with http.get(f"{gw.url}/v1/calls", headers=auth) as r:
            call_id = (await r.json())["items"][0]["id"]
        block = os.urandom(CHUNK)

        async def body():
            sent = 0
            while sent < SIZE:
                yield block
                sent += CHUNK

        before = rss_kib(gw.proc.pid)
        started = time.perf_counter()
        async with http.post(f"{gw.url}/v1/calls/{call_id}/recordings", data=body(),
                             headers={**auth, "Content-Type": "audio/wav"}) as r:
            result = await r.json()
            assert r.status == 201, result
        elapsed = time.perf_counter() - started
        peak = peak_rss_kib(gw.proc.pid)
    return {"upload_mb": SIZE / 2**20, "seconds": elapsed,
            "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024,
            "peak_growth_mib": (peak - before) / 1024}


def run() -> dict[str, float]:
    with GatewayProcess() as gw:
        return asyncio.run(_upload(gw))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
