"""A replica killed with -9 (issue 10, faults): mid-ingest it loses no acknowledged event
and leaves nothing half-written; mid-upload it leaves no visible recording; its leased
jobs are taken over by the other replica. This module has its own cluster: each test
kills replica A and starts it again."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import aiohttp

from tests.ingest.fakes import FakePlatform
from tests.support.poll import eventually
from tests.support.signers import standard_delivery

from .cluster import Cluster, auth, request
from .steps import call, calls, deliver, delivery, standard_integration

OK = (200, 201, 202)


async def test_killed_mid_ingest_loses_no_acknowledged_event(cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.b, tenant)
        pending = [delivery(secret, f"k-{i}", "completed") for i in range(300)]
        acknowledged: list[str] = []
        queue: asyncio.Queue = asyncio.Queue()
        for i, signed in enumerate(pending):
            queue.put_nowait((f"k-{i}", signed))

        async def sender() -> None:
            while not queue.empty():
                name, signed = queue.get_nowait()
                try:
                    if await deliver(http, cluster.a, integration, signed) in OK:
                        acknowledged.append(name)
                except aiohttp.ClientError:
                    pass             # the replica died under this request: not acknowledged

        senders = [asyncio.create_task(sender()) for _ in range(16)]
        while len(acknowledged) < 60:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(cluster.a.kill)
        await asyncio.gather(*senders)
        assert 60 <= len(acknowledged) < 300
        stored = {c["platform_call_id"]: c for c in await calls(http, cluster.b, tenant)}
        assert set(acknowledged) <= set(stored)
        for listed in stored.values():
            # Nothing half-written: every stored call has its parties and its event.
            assert listed["from"] == "+14155550100" and listed["status"] == "completed"
            assert len((await call(http, cluster.b, tenant, listed["id"]))["events"]) == 1
    await asyncio.to_thread(cluster.a.start)


async def test_killed_mid_upload_leaves_no_visible_recording(cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.b, tenant)
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "upload", "completed")) in OK
        [listed] = await calls(http, cluster.b, tenant)
        sent = asyncio.Event()

        async def body():
            for i in range(200):
                yield os.urandom(64 * 1024)
                if i == 40:                     # ~2.6 MiB in: several S3 parts under way
                    sent.set()
                await asyncio.sleep(0.01)

        upload = asyncio.create_task(request(
            http, cluster.a, "POST", f"/v1/calls/{listed['id']}/recordings",
            headers={**auth(tenant), "Content-Type": "audio/wav"}, data=body()))
        await sent.wait()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.a.kill)
        try:
            await upload
            raise AssertionError("the upload was acknowledged by a killed replica")
        except aiohttp.ClientError:
            pass
        assert (await call(http, cluster.b, tenant, listed["id"]))["recordings"] == []
        await asyncio.to_thread(cluster.a.start)
        assert (await call(http, cluster.a, tenant, listed["id"]))["recordings"] == []


async def test_a_killed_replicas_leased_fetch_job_is_taken_over(
        cluster: Cluster, fake_platform: FakePlatform):
    tenant = cluster.tenant()
    audio = os.urandom(300_000)
    # First download attempt hangs (A holds the job's lease), the next one is served.
    fake_platform.route("127.0.0.1", "/slow.wav", fake_platform.stall(audio[:1000]),
                        FakePlatform.audio(audio))
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        assert await deliver(http, cluster.a, integration,
                             delivery(secret, "leased", "completed")) in OK
        # Only A may claim the job: B is stopped until A holds it.
        await asyncio.to_thread(cluster.b.stop)
        announce = {"type": "recording.available",
                    "data": {"call_id": "leased", "content_type": "audio/wav",
                             "url": f"https://127.0.0.1:{fake_platform.port}/slow.wav"}}
        assert await deliver(http, cluster.a, integration,
                             standard_delivery(secret, announce, datetime.now(UTC))) in OK

        async def claimed() -> bool:
            return len(fake_platform.seen()) >= 1
        await eventually(claimed, timeout=20)
        await asyncio.to_thread(cluster.b.start)
        await asyncio.to_thread(cluster.a.kill)
        [listed] = await calls(http, cluster.b, tenant)

        async def fetched():
            recs = (await call(http, cluster.b, tenant, listed["id"]))["recordings"]
            return recs if recs and recs[0]["state"] == "available" else None
        [recording] = await eventually(fetched, timeout=30)
        status, data, _ = await request(http, cluster.b, "GET",
                                        f"/v1/recordings/{recording['id']}/audio",
                                        headers=auth(tenant))
        assert status == 200 and data == audio
        assert len(fake_platform.seen()) == 2
    await asyncio.to_thread(cluster.a.start)
