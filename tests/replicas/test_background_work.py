"""Background work runs on every replica and each unit is done once (issue 10, item 3):
recording fetch jobs, tenant notifications, key rotation and retention sweeps, with two
real `gateway serve` processes competing for the same rows."""

from __future__ import annotations

import asyncio
import collections
import os
import re
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from tests.ingest.fakes import FakePlatform
from tests.support.poll import eventually
from tests.support.signers import standard_delivery

from .cluster import Cluster, Replica, auth, request
from .steps import call, calls, deliver, delivery, standard_integration

OK = (200, 201, 202)


async def metric(http: aiohttp.ClientSession, replica: Replica, name: str,
                 labels: str = "") -> float:
    """Sum of a counter's samples on one replica's metrics listener."""
    async with http.get(f"http://127.0.0.1:{replica.metrics_port}/metrics") as response:
        text = await response.text()
    pattern = re.compile(rf"^{name}(?:{{([^}}]*)}})? ([0-9.e+-]+)$", re.MULTILINE)
    return sum(float(m.group(2)) for m in pattern.finditer(text)
               if labels in (m.group(1) or ""))


async def log_entries(http: aiohttp.ClientSession, replica: Replica, tenant) -> list[dict]:
    _, checkpoint, _ = await request(http, replica, "GET", "/v1/transparency/checkpoint",
                                     headers=auth(tenant))
    status, body, _ = await request(http, replica, "GET",
                                    f"/v1/transparency/entries?start=0&end={checkpoint['size']}",
                                    headers=auth(tenant))
    assert status == 200, body
    return [e["entry"] for e in body["entries"]]


async def test_recording_fetch_jobs_run_on_both_replicas_each_download_once(
        cluster: Cluster, fake_platform: FakePlatform):
    tenant = cluster.tenant()
    audio = {f"/rec-{i}.wav": os.urandom(200_000 + i) for i in range(10)}
    for path, data in audio.items():
        fake_platform.route("127.0.0.1", path, FakePlatform.audio(data))
    async with aiohttp.ClientSession() as http:
        before = [await metric(http, r, "gateway_recording_fetch_attempts_total",
                              'outcome="stored"')
                  for r in cluster.replicas]
        integration, secret = await standard_integration(http, cluster.a, tenant)
        sends = []
        for i, path in enumerate(audio):
            assert await deliver(http, cluster.a, integration,
                                 delivery(secret, f"f-{i}", "completed")) in OK
            announce = {"type": "recording.available",
                        "data": {"call_id": f"f-{i}", "content_type": "audio/wav",
                                 "url": f"https://127.0.0.1:{fake_platform.port}{path}"}}
            signed = standard_delivery(secret, announce, datetime.now(UTC))
            # The same announcement reaches both replicas (a platform retrying).
            sends += [deliver(http, r, integration, signed) for r in cluster.replicas]
        assert all(s in OK for s in await asyncio.gather(*sends))

        async def all_fetched():
            listed = await calls(http, cluster.b, tenant)
            recs = [(await call(http, cluster.b, tenant, c["id"]))["recordings"]
                    for c in listed]
            return recs if all(r and r[0]["state"] == "available" for r in recs) else None
        recordings = await eventually(all_fetched, timeout=30)
        assert [len(r) for r in recordings] == [1] * 10
        requested = collections.Counter(s.path_qs for s in fake_platform.seen())
        assert requested == {path: 1 for path in audio}, requested
        for recs in recordings:
            status, data, _ = await request(http, cluster.a, "GET",
                                            f"/v1/recordings/{recs[0]['id']}/audio",
                                            headers=auth(tenant))
            assert status == 200 and data in audio.values()
        after = [await metric(http, r, "gateway_recording_fetch_attempts_total",
                              'outcome="stored"')
                 for r in cluster.replicas]
        done = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(done) == 10, done


async def test_notifications_are_delivered_once_whichever_replica_sends_them(
        cluster: Cluster):
    tenant = cluster.tenant()
    staff = cluster.staff()
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request.headers["webhook-id"])
        return web.Response(status=204)
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            status, body, _ = await request(
                http, cluster.a, "PUT", "/v1/access-policy/webhook", headers=auth(tenant),
                json={"url": f"http://127.0.0.1:{port}/hook",
                      "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
            assert status in (200, 201, 204), body
            asks = [request(http, r, "POST", "/v1/staff/access-requests",
                            headers={"Authorization": f"Bearer {staff['token']}"},
                            json={"tenant": tenant["tenant_id"],
                                  "scope": {"window": {"since": "2026-01-01T00:00:00Z",
                                                       "until": "2026-01-02T00:00:00Z"}},
                                  "purpose": "fault_diagnostics", "reference": f"OPS-{n}",
                                  "level": "audio", "duration_seconds": 600})
                    for n, r in enumerate(cluster.replicas * 6)]
            assert all(s == 201 for s, _, _ in await asyncio.gather(*asks))
            async def all_received() -> bool:
                return len(received) >= 12
            await eventually(all_received, timeout=20)
            await asyncio.sleep(2)          # time for any duplicate to arrive
            assert len(received) == len(set(received)) >= 12, received
    finally:
        await runner.cleanup()


async def test_key_rotation_runs_once_across_replicas(cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        for i in range(20):
            assert await deliver(http, cluster.a, integration,
                                 delivery(secret, f"k-{i}", "completed",
                                          from_number=f"+1415555{i:04d}")) in OK
        before = {c["id"]: c for c in await calls(http, cluster.a, tenant)}
        status, body, _ = await request(http, cluster.a, "POST", "/v1/keys/rotate",
                                        headers=auth(tenant))
        assert status == 202, body

        async def completed():
            status, rotation, _ = await request(http, cluster.b, "GET", "/v1/keys/rotation",
                                                headers=auth(tenant))
            return rotation if rotation["state"] == "completed" else None
        rotation = await eventually(completed, timeout=40)
        assert rotation["destroyed_versions"] == [1]
        outcomes = collections.Counter(e.get("outcome") for e in
                                       await log_entries(http, cluster.b, tenant)
                                       if e.get("kind") == "key_event")
        assert outcomes["rotation_started"] == 1 and outcomes["versions_destroyed"] == 1
        for replica in cluster.replicas:
            after = {c["id"]: c for c in await calls(http, replica, tenant)}
            assert after == before


async def test_retention_sweeps_on_both_replicas_delete_each_call_once(cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.b, tenant)
        for i in range(10):
            assert await deliver(http, cluster.replicas[i % 2], integration,
                                 delivery(secret, f"s-{i}", "completed")) in OK
        status, body, _ = await request(http, cluster.a, "PUT", "/v1/retention",
                                        headers=auth(tenant),
                                        json={"call_metadata": 0, "call_events": 0,
                                              "recordings": 0, "diagnostics": 0})
        assert status == 200, body

        async def emptied():
            return await calls(http, cluster.a, tenant) == []
        await eventually(emptied, timeout=30)
        await asyncio.sleep(1.5)            # both sweepers have run again
        receipts = [e for e in await log_entries(http, cluster.a, tenant)
                    if e.get("kind") == "deletion_receipt" and e.get("outcome") == "deleted"
                    and e["details"]["data_class"] == "call_metadata"]
        hashes = [h for r in receipts for h in r["details"]["ids_sha256"]]
        assert len(hashes) == len(set(hashes)) == 10
