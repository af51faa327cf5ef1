"""(a) Signed generic webhooks per second through the full path (signature check,
normalise, encrypt, group-committed fsync) vs a bare aiohttp handler that only reads the
body. Same load generator, same requests, same run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import UTC, datetime

import aiohttp

from tests.gateway.helpers import call_updated, standard_delivery

from ._harness import GatewayProcess, python_server, run_load

BARE_SERVER = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response({"accepted": 1})
app = web.Application()
app.router.add_post("/v1/hooks/standard/{integration_id}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

REQUESTS = int(os.environ.get("BENCH_WEBHOOKS", "3000"))
CONCURRENCY = 32


def make_requests(base_url: str, integration_id: str, secret: str, n: int, prefix: str = "m"):
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        # A realistic mix: each call gets ringing, in-progress, completed.
        status = ("ringing", "in-progress", "completed")[i % 3]
        body = call_updated(f"bench-{i // 3}", status, started_at="2026-03-01T10:00:00Z")
        raw, headers = standard_delivery(secret, body, now, msg_id=f"msg_{prefix}{i}")
        out.append((f"{base_url}/v1/hooks/standard/{integration_id}", raw, headers))
    return out


async def _setup(gw: GatewayProcess) -> tuple[str, str]:
    tenant = gw.cli("tenant", "create", "--name", "bench")
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/integrations",
                             headers={"Authorization": f"Bearer {tenant['api_key']}"},
                             json={"platform": "standard", "credentials": {"secret": secret}}
                             ) as response:
            integration = await response.json()
    return integration["id"], secret


def run() -> dict[str, float]:
    with python_server(BARE_SERVER) as (bare_url, _):
        bare_reqs = make_requests(bare_url, "x", "whsec_" + base64.b64encode(b"k" * 32).decode(),
                                  REQUESTS)
        asyncio.run(run_load(bare_reqs[:300], CONCURRENCY))  # warm-up
        bare = asyncio.run(run_load(bare_reqs, CONCURRENCY))
    with GatewayProcess() as gw:
        integration_id, secret = asyncio.run(_setup(gw))
        asyncio.run(run_load(make_requests(gw.url, integration_id, secret, 300, "warm"),
                             CONCURRENCY))
        reqs = make_requests(gw.url, integration_id, secret, REQUESTS)
        full = asyncio.run(run_load(reqs, CONCURRENCY))
    return {"bare_rps": bare, "gateway_rps": full, "ratio": full / bare}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
