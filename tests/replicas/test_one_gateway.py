"""Two replicas behave as one gateway (issue 10, item 3): ingest, caches, the log, blobs and
live streams, offboarding, whichever replica a request reaches. Every test speaks HTTP to
two real `gateway serve` processes on one PostgreSQL schema and one pair of S3 prefixes."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import secrets

import aiohttp

from tests.access.test_transparency_api import open_signed_note, verify_consistency
from tests.media.helpers import (
    mulaw_frames,
    read_wav,
    twilio_credentials,
    twilio_stream,
    twilio_upgrade_headers,
)
from tests.support.poll import eventually

from .cluster import Cluster, auth, request, run_cli
from .steps import call, calls, deliver, delivery, standard_integration

OK = (200, 201, 202)


async def test_a_delivery_sent_to_both_replicas_at_once_is_stored_once(cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        # The same signed delivery (one webhook-id) to both replicas at the same moment,
        # and a second delivery (another webhook-id) of the same new call to each: one call,
        # two events, whichever replica won each race.
        same = [delivery(secret, f"same-{i}", "ringing") for i in range(12)]
        other = [(delivery(secret, f"same-{i}", "ringing"),
                  delivery(secret, f"same-{i}", "ringing")) for i in range(12)]
        sends = [deliver(http, replica, integration, signed)
                 for signed in same for replica in (cluster.a, cluster.b)]
        sends += [deliver(http, replica, integration, signed)
                  for pair in other for replica, signed in zip((cluster.a, cluster.b), pair, strict=True)]
        statuses = await asyncio.gather(*sends)
        assert all(s in OK for s in statuses), statuses
        for replica in (cluster.a, cluster.b):
            listed = await calls(http, replica, tenant)
            assert sorted(c["platform_call_id"] for c in listed) == \
                sorted(f"same-{i}" for i in range(12))
        for listed in await calls(http, cluster.b, tenant):
            detail = await call(http, cluster.a, tenant, listed["id"])
            assert len(detail["events"]) == 3, detail["events"]


async def test_statuses_never_regress_under_concurrent_deliveries_to_both(cluster: Cluster):
    tenant = cluster.tenant()
    rng = random.Random(7)
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.b, tenant)
        sends = []
        for i in range(15):
            for status in ("ringing", "in-progress", "completed"):
                sends.append(deliver(http, rng.choice((cluster.a, cluster.b)), integration,
                                     delivery(secret, f"order-{i}", status)))
        rng.shuffle(sends)
        assert all(s in OK for s in await asyncio.gather(*sends))
        for replica in (cluster.a, cluster.b):
            listed = await calls(http, replica, tenant)
            assert len(listed) == 15
            assert {c["status"] for c in listed} == {"completed"}, listed
        # A late "ringing" redelivered to either replica changes nothing.
        late = [deliver(http, r, integration, delivery(secret, "order-0", "ringing"))
                for r in (cluster.a, cluster.b)]
        assert all(s in OK for s in await asyncio.gather(*late))
        assert {c["status"] for c in await calls(http, cluster.a, tenant)} == {"completed"}


async def test_an_integration_deleted_on_one_replica_is_refused_by_the_other_at_once(
        cluster: Cluster):
    tenant = cluster.tenant()
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        # B has the credentials cached (credential_cache_seconds is 60 s).
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "cached", "ringing")) in OK
        status, body, _ = await request(http, cluster.a, "DELETE",
                                        f"/v1/integrations/{integration}", headers=auth(tenant))
        assert status in (200, 204), body
        refused = await deliver(http, cluster.b, integration,
                                delivery(secret, "cached", "completed"))
        assert refused == 404
        refused = await deliver(http, cluster.b, integration,
                                delivery(secret, "another", "ringing"))
        assert refused == 404
        [only] = await calls(http, cluster.b, tenant)
        assert only["status"] == "ringing"


async def test_an_erasure_on_one_replica_is_not_undone_by_the_others_call_cache(
        cluster: Cluster):
    tenant = cluster.tenant()
    number = "+14155550123"
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        # B stores the call and remembers it has its parties (the known-call cache).
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "erased", "ringing", from_number=number)) in OK
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "erased", "in-progress",
                                      from_number=number)) in OK
        status, body, _ = await request(http, cluster.a, "POST", "/v1/subjects/erase",
                                        headers=auth(tenant), json={"phone_number": number})
        assert status in OK, body
        assert await calls(http, cluster.b, tenant) == []
        # The platform's next event of that call reaches B.
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "erased", "completed", from_number=number)) in OK
        for replica in (cluster.a, cluster.b):
            for listed in await calls(http, replica, tenant):
                assert listed["from"] is not None and listed["to"] is not None, listed


async def test_each_tenants_log_stays_one_linear_tree_across_replicas(cluster: Cluster):
    tenant = cluster.tenant()
    staff = cluster.staff()
    staff_auth = {"Authorization": f"Bearer {staff['token']}"}
    async with aiohttp.ClientSession() as http:
        status, body, _ = await request(http, cluster.a, "PUT", "/v1/access-policy",
                                        headers=auth(tenant),
                                        json={"rules": {"*": {"technical": "auto_approve"}}})
        assert status == 200, body

        async def ask(replica, n: int) -> None:
            status, body, _ = await request(
                http, replica, "POST", "/v1/staff/access-requests", headers=staff_auth,
                json={"tenant": tenant["tenant_id"], "scope": {"window": {
                          "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}},
                      "purpose": "operability", "reference": f"OPS-{n}",
                      "level": "technical", "duration_seconds": 600})
            assert status == 201, body

        # Appends from both replicas at once: serialised per tenant in one tree.
        await asyncio.gather(*(ask(r, n) for n, r in enumerate([cluster.a, cluster.b] * 8)))
        _, key, _ = await request(http, cluster.a, "GET", "/v1/transparency/public-key",
                                  headers=auth(tenant))
        _, first, _ = await request(http, cluster.a, "GET", "/v1/transparency/checkpoint",
                                    headers=auth(tenant))
        await asyncio.gather(*(ask(r, 100 + n) for n, r in enumerate([cluster.b, cluster.a] * 5)))
        _, second, _ = await request(http, cluster.b, "GET", "/v1/transparency/checkpoint",
                                     headers=auth(tenant))
        _, old_size, old_root = open_signed_note(first["note"], key["verifier_key"])
        _, new_size, new_root = open_signed_note(second["note"], key["verifier_key"])
        assert new_size > old_size >= 16
        for replica in (cluster.a, cluster.b):
            status, proof, _ = await request(
                http, replica, "GET",
                f"/v1/transparency/proofs/consistency?old={old_size}&new={new_size}",
                headers=auth(tenant))
            assert status == 200, proof
            assert verify_consistency(old_size, new_size, old_root, new_root,
                                      [base64.b64decode(p) for p in proof["proof"]])
    done = run_cli(cluster.b.config, "audit", "verify", "--tenant", tenant["tenant_id"],
                   env=cluster.env)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_recording_uploaded_through_one_replica_reads_through_the_other(
        cluster: Cluster):
    tenant = cluster.tenant()
    audio = os.urandom(3 * 1024 * 1024 + 12345)      # several S3 parts, several segments
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        assert await deliver(http, cluster.a, integration,
                             delivery(secret, "rec", "completed")) in OK
        [listed] = await calls(http, cluster.a, tenant)
        status, body, _ = await request(http, cluster.a, "POST",
                                        f"/v1/calls/{listed['id']}/recordings",
                                        headers={**auth(tenant), "Content-Type": "audio/wav"},
                                        data=audio)
        assert status == 201, body
        path = f"/v1/recordings/{body['id']}/audio"
        status, whole, _ = await request(http, cluster.b, "GET", path, headers=auth(tenant))
        assert status == 200 and whole == audio
        for first, last in ((0, 0), (65535, 65537), (1_000_000, 2_500_000),
                            (len(audio) - 10, len(audio) - 1)):
            status, part, headers = await request(
                http, cluster.b, "GET", path,
                headers={**auth(tenant), "Range": f"bytes={first}-{last}"})
            assert status == 206 and part == audio[first:last + 1]
            assert headers["Content-Range"] == f"bytes {first}-{last}/{len(audio)}"


async def test_a_live_stream_recorded_through_one_replica_reads_from_the_other(
        cluster: Cluster):
    tenant = cluster.tenant()
    creds = twilio_credentials()
    async with aiohttp.ClientSession() as http:
        status, integration, _ = await request(
            http, cluster.a, "POST", "/v1/integrations", headers=auth(tenant),
            json={"platform": "twilio", "credentials": creds})
        assert status == 201, integration
        call_sid = "CA" + secrets.token_hex(16)
        frames = twilio_stream(creds["account_sid"], call_sid,
                               {"inbound": mulaw_frames(440, 100),
                                "outbound": mulaw_frames(880, 100, amp=2000)})
        async with http.ws_connect(
                f"{cluster.a.ws}/v1/media/twilio/{integration['id']}",
                headers=twilio_upgrade_headers(creds["auth_token"], integration["id"])) as ws:
            for frame in frames:
                await ws.send_str(frame)
            async for _ in ws:
                pass
            assert ws.close_code == 1000

        async def finished():
            listed = await calls(http, cluster.b, tenant)
            if not listed:
                return None
            recordings = (await call(http, cluster.b, tenant, listed[0]["id"]))["recordings"]
            return recordings if recordings and recordings[0]["state"] == "available" else None
        [recording] = await eventually(finished)
        status, data, _ = await request(http, cluster.b, "GET",
                                        f"/v1/recordings/{recording['id']}/audio",
                                        headers=auth(tenant))
        assert status == 200
        wav, _ = read_wav(data)
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, 8000, 16000)


async def test_offboarding_through_one_replica_is_effective_on_the_other_at_once(
        cluster: Cluster):
    tenant = cluster.tenant("leaving")
    async with aiohttp.ClientSession() as http:
        integration, secret = await standard_integration(http, cluster.a, tenant)
        # B has the tenant's ring, credentials and the call cached.
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "gone", "ringing")) in OK
        assert len(await calls(http, cluster.b, tenant)) == 1
        done = run_cli(cluster.a.config, "tenant", "offboard", tenant["tenant_id"], "--yes",
                       env=cluster.env)
        assert done.returncode == 0, done.stderr
        status, _, _ = await request(http, cluster.b, "GET", "/v1/calls", headers=auth(tenant))
        assert status == 401
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "gone", "completed")) == 404
        assert await deliver(http, cluster.b, integration,
                             delivery(secret, "new", "ringing")) == 404
