"""WHIP (RFC 9725) with a real aiortc publisher sending a sine over loopback."""

from __future__ import annotations

import asyncio

from . import _gw
from .helpers import loopback_peer, read_wav, sine_track


async def _setup(gateway, platform="telnyx"):
    tenant = await gateway.new_tenant("acme")
    from .helpers import telnyx_credentials
    integration = await gateway.integration(tenant, platform, telnyx_credentials())
    status, token, _ = await gateway.request(
        "POST", f"/v1/integrations/{integration['id']}/ingest-tokens", headers=tenant.auth)
    assert status == 201
    return tenant, integration, token


async def _offer(pc) -> str:
    pc.addTransceiver(sine_track(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def test_publish_record_and_delete(gateway):
    from aiortc import RTCSessionDescription

    tenant, integration, token = await _setup(gateway)
    assert token["whip_url"] == f"https://gateway.example.com/v1/whip/{integration['id']}"
    path = f"/v1/whip/{integration['id']}"
    status, _, headers = await gateway.request("OPTIONS", path)
    assert status == 204 and headers["Accept-Post"] == "application/sdp"

    pc = loopback_peer()
    try:
        offer = await _offer(pc)
        status, answer, headers = await gateway.request(
            "POST", path, data=offer.encode(),
            headers={"Authorization": f"Bearer {token['token']}",
                     "Content-Type": "application/sdp"})
        assert status == 201, answer
        assert headers["Content-Type"].startswith("application/sdp")
        location = headers["Location"]
        assert location.startswith(path + "/")
        answer = answer.decode()
        assert "a=recvonly" in answer
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        media = gateway.services.features["media"]
        await _gw.wait_for(lambda: _frames(media, 75), timeout=15)
        status, _, _ = await gateway.request(
            "DELETE", location, headers={"Authorization": f"Bearer {token['token']}"})
        assert status == 200
    finally:
        await pc.close()
    status, _, _ = await gateway.request(
        "DELETE", location, headers={"Authorization": f"Bearer {token['token']}"})
    assert status == 404
    session_id = location.rsplit("/", 1)[1]
    call = await _gw.call_by_platform_id(gateway, f"whip-{session_id}")
    assert call["status"] == "completed"
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    assert rec["state"] == "available"
    w, pcm = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    stats = await _gw.stats_of(gateway, rec["id"])
    assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 48000, 2)
    assert w.getnframes() == round(stats["duration_seconds"] * 48000)
    assert stats["frames_received"] >= 75 and w.getnframes() >= 75 * 960
    # A 440 Hz sine at 8000/32768 through Opus: about -15 dBFS RMS, not silence.
    level = stats["per_channel"][0]["rms_dbfs"]
    assert -20 < level < -12, stats
    assert stats["codec"] == "pcm16" and stats["frames_lost"] == 0


async def _frames(media, n: int) -> bool:
    return any(s.pipeline.frames_received >= n for s in media.active)


async def test_whip_refusals(gateway):
    tenant, integration, token = await _setup(gateway)
    path = f"/v1/whip/{integration['id']}"
    auth = {"Authorization": f"Bearer {token['token']}"}
    pc = loopback_peer()
    try:
        offer = await _offer(pc)
    finally:
        await pc.close()
    status, _, headers = await gateway.request(
        "POST", path, data=offer.encode(), headers={"Content-Type": "application/sdp"})
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
    status, _, _ = await gateway.request(
        "POST", path, data=offer.encode(),
        headers={"Authorization": "Bearer vgwi_0011223344556677_" + "A" * 43,
                 "Content-Type": "application/sdp"})
    assert status == 401
    status, _, _ = await gateway.request(
        "POST", path, data=offer.encode(), headers={**auth, "Content-Type": "text/plain"})
    assert status == 415
    status, body, _ = await gateway.request(
        "POST", path, data=b"v=0\r\nnonsense", headers={**auth, "Content-Type": "application/sdp"})
    assert status == 400 and body["type"] == "urn:vgw:problem:malformed-sdp"
    status, _, _ = await gateway.request(
        "POST", "/v1/whip/00000000-0000-0000-0000-000000000000", data=offer.encode(),
        headers={**auth, "Content-Type": "application/sdp"})
    assert status == 404
    status, _, _ = await gateway.request("DELETE", path + "/" + "0" * 32, headers=auth)
    assert status == 404
    status, _, headers = await gateway.request("PATCH", path + "/" + "0" * 32, headers=auth)
    assert status == 405
    # No calls or recordings were created by any of that.
    assert await gateway.services.db.fetchone("SELECT 1 FROM recordings") is None
    await asyncio.sleep(0)
