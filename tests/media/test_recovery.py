"""Crash recovery: a stream cut by a dead process leaves a clean, truncated recording marked
'incomplete' (never a half-visible or unreadable one), and a graceful stop finishes too."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sqlite3
import time
import uuid
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench._harness import GatewayProcess
from gateway.app import build_app
from gateway.calls.recordings import LEASE_SECONDS
from gateway.core.clock import ManualClock
from gateway.media.codecs import decoder_for
from gateway.services import open_services

from . import _gw
from .helpers import (
    mulaw_frames,
    read_wav,
    twilio_credentials,
    twilio_stream,
    twilio_upgrade_headers,
)

SEGMENT = 64 * 1024


async def _abandoned_stream(gateway, tenant, seconds: int) -> tuple[str, str]:
    """A live recording fed `seconds` of 8 kHz audio and checkpointed, whose process then
    'dies': nothing finishes it. Returns (call id, recording id)."""
    integration_row = await gateway.integration(tenant, "twilio", twilio_credentials())
    integration = await gateway.services.integrations.load_for_delivery(
        "twilio", integration_row["id"])
    media = gateway.services.features["media"]
    call_id = await media.link_call(integration, "CA" + secrets.token_hex(16), "MZ1", "twilio")
    pipeline = media.pipeline(lambda: decoder_for("pcmu", 8000, g711_as_received=False),
                              tracks=("inbound",), sequenced=True)
    session = await media.start(integration, call_id, "twilio", pipeline)
    for i, frame in enumerate(mulaw_frames(440, seconds * 50)):
        await session.push("inbound", frame, i + 1, i * 20)
    await session.checkpoint()
    # The process dies here: its open file is closed by the OS, nothing else happens.
    media.active.discard(session)
    session.writer._sink._file.close()
    return call_id, session.writer.id


async def test_restart_after_a_crash_keeps_the_durable_part(gateway, config):
    tenant = await gateway.new_tenant("acme")
    call_id, rec_id = await _abandoned_stream(gateway, tenant, seconds=10)   # 160 000 bytes
    row = await gateway.services.db.fetchone(
        "SELECT durable_bytes FROM media_checkpoints WHERE recording_id = ?", (rec_id,))
    assert row["durable_bytes"] > 2 * SEGMENT
    assert await _gw.recordings_of(gateway, tenant, call_id) == []     # never half-visible
    # While the dead writer's lease runs, nothing touches the row.
    assert await gateway.services.features["media"].sweep() == {}

    # A new process starts once the lease has run out: start-up recovery finishes it.
    clock = ManualClock(gateway.clock.now() + timedelta(seconds=LEASE_SECONDS + 1))
    services = await open_services(config, clock)
    server = TestServer(build_app(config, clock, services), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            base = str(server.make_url("")).rstrip("/")
            async with http.get(f"{base}/v1/calls/{call_id}", headers=tenant.auth) as r:
                [rec] = (await r.json())["recordings"]
            assert rec["state"] == "incomplete" and rec["id"] == rec_id
            async with http.get(f"{base}/v1/recordings/{rec_id}/audio",
                                headers=tenant.auth) as r:
                assert r.status == 200
                data = await r.read()
        w, pcm = read_wav(data)
        # Two whole segments were durable (the third was still being filled).
        assert w.getnframes() == 2 * SEGMENT // 2 and len(pcm) == 2 * SEGMENT
        stats = json.loads((await services.db.fetchone(
            "SELECT stats FROM recordings WHERE id = ?", (rec_id,)))["stats"])
        assert stats["end_reason"] == "recovered"
        assert stats["duration_seconds"] == pytest.approx(2 * SEGMENT / 2 / 8000, abs=0.001)
        assert await services.db.fetchone("SELECT 1 FROM media_checkpoints") is None
    finally:
        await server.close()
        await services.close()


async def test_nothing_durable_means_no_recording(gateway):
    tenant = await gateway.new_tenant("acme")
    call_id, rec_id = await _abandoned_stream(gateway, tenant, seconds=1)   # < one segment
    gateway.clock.advance(LEASE_SECONDS + 1)
    assert await gateway.services.features["media"].sweep() == {"deleted": 1}
    assert await gateway.services.db.fetchone("SELECT 1 FROM recordings") is None
    assert await gateway.services.db.fetchone("SELECT 1 FROM blob_keys") is None


async def test_the_sweep_recovers_a_sibling_process_stream(gateway):
    tenant = await gateway.new_tenant("acme")
    call_id, rec_id = await _abandoned_stream(gateway, tenant, seconds=5)
    gateway.clock.advance(LEASE_SECONDS + 1)
    assert await gateway.services.features["media"].sweep() == {"incomplete": 1}
    [rec] = await _gw.recordings_of(gateway, tenant, call_id)
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert w.getnframes() == SEGMENT // 2


async def test_graceful_shutdown_finishes_live_streams(gateway):
    tenant = await gateway.new_tenant("acme")
    creds = twilio_credentials()
    integration = await gateway.integration(tenant, "twilio", creds)
    call_sid = "CA" + secrets.token_hex(16)
    frames = twilio_stream(creds["account_sid"], call_sid, {"inbound": mulaw_frames(440, 100)},
                           stop=False)
    url = await _gw.ws_url(gateway, "twilio", integration["id"])
    headers = twilio_upgrade_headers(creds["auth_token"], integration["id"])
    async with gateway.http.ws_connect(url, headers=headers) as ws:
        for frame in frames:
            await ws.send_str(frame)
        media = gateway.services.features["media"]
        await _gw.wait_for(lambda: _frames_in(media, 100))
        await media.shutdown()
        msg = await ws.receive(timeout=5)
        assert msg.data == 1001, msg
    call = await _gw.call_by_platform_id(gateway, call_sid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    assert rec["state"] == "incomplete"
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert w.getnframes() == 100 * 160


async def _frames_in(media, n: int) -> bool:
    return any(s.pipeline.frames_received >= n for s in media.active)


def test_kill_9_mid_stream_then_restart():
    """The real thing: `gateway serve` killed with SIGKILL mid-stream, restarted."""
    with GatewayProcess('[media]\ncheckpoint_seconds = 0.2\n') as gw:
        asyncio.run(_kill_and_restart(gw))


async def _kill_and_restart(gw: GatewayProcess) -> None:
    tenant = gw.cli("tenant", "create", "--name", "acme")
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    creds = twilio_credentials()
    call_sid = "CA" + secrets.token_hex(16)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/integrations", headers=auth,
                             json={"platform": "twilio", "credentials": creds}) as r:
            integration = await r.json()
        path = f"/v1/media/twilio/{integration['id']}"
        from twilio.request_validator import RequestValidator
        signature = RequestValidator(creds["auth_token"]).compute_signature(
            gw.url.replace("http://", "ws://") + path, {})
        frames = twilio_stream(creds["account_sid"], call_sid,
                               {"inbound": mulaw_frames(440, 600)}, stop=False)
        db = gw.config.parent / "data" / "gateway.sqlite3"
        async with http.ws_connect(gw.url.replace("http://", "ws://") + path,
                                   headers={"X-Twilio-Signature": signature}) as ws:
            for i, frame in enumerate(frames):
                await ws.send_str(frame)
                if i % 50 == 49:
                    await asyncio.sleep(0.05)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with sqlite3.connect(db) as conn:
                    row = conn.execute("SELECT durable_bytes FROM media_checkpoints").fetchone()
                if row and row[0] > 2 * SEGMENT:
                    break
                await asyncio.sleep(0.1)
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait(10)
    # Time passes beyond the dead writer's lease (the clock is the system's: move the lease).
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE recordings SET lease_until = '2000-01-01T00:00:00Z'")
    gw.__enter__()                                   # start the same gateway again
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.url}/v1/calls", headers=auth) as r:
            [call] = (await r.json())["items"]
        async with http.get(f"{gw.url}/v1/calls/{call['id']}", headers=auth) as r:
            [rec] = (await r.json())["recordings"]
        assert rec["state"] == "incomplete"
        async with http.get(f"{gw.url}/v1/recordings/{rec['id']}/audio", headers=auth) as r:
            data = await r.read()
    w, pcm = read_wav(data)
    assert w.getnframes() > 0 and w.getnframes() * 2 % SEGMENT == 0
    assert w.getnframes() <= 600 * 160
    assert uuid.UUID(rec["id"])
