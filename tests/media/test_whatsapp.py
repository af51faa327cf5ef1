"""WhatsApp calling: a signed `connect` webhook with an SDP offer from a real aiortc caller
is answered through a fake Graph API on 127.0.0.1 (pre_accept, then accept, SHA-256
fingerprints only), the caller's audio is recorded, and `terminate` finishes it."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.media.settings import MediaConfig

from . import _gw
from .helpers import loopback_peer, read_wav, sine_track

PHONE_NUMBER_ID = "106540352242922"


@pytest.fixture
async def graph():
    received: list[dict] = []

    async def calls(request: web.Request) -> web.Response:
        received.append({"phone": request.match_info["phone"],
                         "auth": request.headers.get("Authorization"),
                         "body": await request.json()})
        return web.json_response({"success": True})

    app = web.Application()
    app.router.add_post("/v23.0/{phone}/calls", calls)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, received
    await server.close()


@pytest.fixture
def media_config(graph) -> MediaConfig:
    server, _ = graph
    return MediaConfig(idle_timeout_seconds=5.0, checkpoint_seconds=0.5,
                       webrtc_host_addresses=["127.0.0.1"],
                       whatsapp_graph_base_url=str(server.make_url("/v23.0")))


def _webhook(secret: str, call: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881",
                         "phone_number_id": PHONE_NUMBER_ID},
            "calls": [call]}}]}]}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}


async def test_connect_is_answered_recorded_and_terminated(gateway, graph):
    from aiortc import RTCSessionDescription

    _, received = graph
    tenant = await gateway.new_tenant("acme")
    creds = {"app_secret": secrets.token_hex(16), "verify_token": "vt",
             "access_token": "EAAG" + secrets.token_hex(20), "phone_number_id": PHONE_NUMBER_ID}
    integration = await gateway.integration(tenant, "whatsapp", creds)
    hook = f"/v1/hooks/whatsapp/{integration['id']}"
    call_id = "wacid.HBgLMTIxODU1NTI4MjgVAgARGCAyODVD" + secrets.token_hex(4)
    now = str(int(gateway.clock.now().timestamp()))

    caller = loopback_peer()
    try:
        caller.addTransceiver(sine_track(330), direction="sendrecv")
        await caller.setLocalDescription(await caller.createOffer())
        body, headers = _webhook(creds["app_secret"], {
            "id": call_id, "to": "15550783881", "from": "4915112345678", "event": "connect",
            "timestamp": now, "direction": "USER_INITIATED",
            "session": {"sdp_type": "offer", "sdp": caller.localDescription.sdp}})
        status, reply, _ = await gateway.request("POST", hook, data=body, headers=headers)
        assert status == 200 and reply["accepted"] == 1

        async def answered():
            return len(received) >= 2
        await _gw.wait_for(answered, timeout=15)
        assert [r["body"]["action"] for r in received] == ["pre_accept", "accept"]
        for r in received:
            assert r["phone"] == PHONE_NUMBER_ID
            assert r["auth"] == f"Bearer {creds['access_token']}"
            assert r["body"]["call_id"] == call_id
            assert r["body"]["messaging_product"] == "whatsapp"
            assert r["body"]["session"]["sdp_type"] == "answer"
        answer = received[1]["body"]["session"]["sdp"]
        fingerprints = [line for line in answer.splitlines() if line.startswith("a=fingerprint:")]
        assert fingerprints and all(f.startswith("a=fingerprint:sha-256 ") for f in fingerprints)
        assert "a=sendrecv" in answer
        await caller.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        media = gateway.services.features["media"]

        async def flowing():
            return any(s.pipeline.frames_received >= 60 for s in media.active)
        await _gw.wait_for(flowing, timeout=15)

        # A duplicate delivery of the connect webhook does not answer twice.
        status, reply, _ = await gateway.request("POST", hook, data=body, headers=headers)
        assert status == 200 and reply["duplicates"] == 1
        body, headers = _webhook(creds["app_secret"], {
            "id": call_id, "to": "15550783881", "from": "4915112345678",
            "event": "terminate", "timestamp": now, "direction": "USER_INITIATED",
            "status": "Completed", "start_time": now, "end_time": now, "duration": 2})
        status, reply, _ = await gateway.request("POST", hook, data=body, headers=headers)
        assert status == 200
    finally:
        await caller.close()
    call = await _gw.call_by_platform_id(gateway, call_id)
    recs = await _gw.wait_for(lambda: _gw.recordings_of(gateway, tenant, call["id"]))
    [rec] = recs
    assert rec["state"] == "available" and len(received) == 2
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    stats = await _gw.stats_of(gateway, rec["id"])
    assert (w.getnchannels(), w.getframerate()) == (1, 48000)
    assert w.getnframes() == round(stats["duration_seconds"] * 48000) >= 60 * 960
    assert stats["per_channel"][0]["silence_ratio"] < 0.5
    # The offer was used and forgotten: no event body or column holds SDP.
    rows = await gateway.services.db.fetchall("SELECT body FROM call_events")
    assert all(b"a=fingerprint" not in bytes(r["body"]) for r in rows)


async def test_graph_failure_ends_the_session_cleanly(gateway, graph):
    server, received = graph
    tenant = await gateway.new_tenant("acme")
    creds = {"app_secret": "s" * 32, "verify_token": "vt", "access_token": "tok",
             "phone_number_id": PHONE_NUMBER_ID}
    integration = await gateway.integration(tenant, "whatsapp", creds)
    media = gateway.services.features["media"]
    # The Graph API answers 404 (a wrong base URL, an expired token: the same to us).
    media.config.whatsapp_graph_base_url = str(server.make_url("/missing"))
    media.whatsapp = None
    caller = loopback_peer()
    try:
        caller.addTransceiver(sine_track(), direction="sendrecv")
        await caller.setLocalDescription(await caller.createOffer())
        body, headers = _webhook(creds["app_secret"], {
            "id": "wacid.fail", "from": "4915112345678", "to": "15550783881",
            "event": "connect", "timestamp": str(int(gateway.clock.now().timestamp())),
            "session": {"sdp_type": "offer", "sdp": caller.localDescription.sdp}})
        status, _, _ = await gateway.request("POST", f"/v1/hooks/whatsapp/{integration['id']}",
                                             data=body, headers=headers)
        assert status == 200

        async def failed():
            return gateway.services.metrics.registry.get_sample_value(
                "gateway_whatsapp_answers_total", {"outcome": "graph_error"}) and \
                not media.active and not media.webrtc.sessions
        await _gw.wait_for(failed, timeout=15)
    finally:
        await caller.close()
    assert await gateway.services.db.fetchone("SELECT 1 FROM recordings") is None
