"""Telnyx (ingest token, out-of-order chunks) and Vonage (JWT, binary L16) end to end."""

from __future__ import annotations

import json
import secrets
import struct
import uuid

from gateway.media.settings import MediaConfig

from . import _gw
from .helpers import (
    WS_BASE,
    mulaw_frames,
    read_wav,
    riff_chunks,
    sine,
    telnyx_credentials,
    telnyx_media,
    telnyx_start,
    vonage_credentials,
    vonage_jwt,
)


async def _token(gateway, tenant, integration_id: str) -> dict:
    status, body, _ = await gateway.request(
        "POST", f"/v1/integrations/{integration_id}/ingest-tokens", headers=tenant.auth)
    assert status == 201, body
    return body


async def test_telnyx_reorders_chunks_fills_gaps_and_counts_them(gateway):
    tenant = await gateway.new_tenant("acme")
    integration = await gateway.integration(tenant, "telnyx", telnyx_credentials())
    token = await _token(gateway, tenant, integration["id"])
    assert token["media_url"] == f"{WS_BASE}/v1/media/telnyx/{integration['id']}"
    ccid = "v3:" + secrets.token_urlsafe(40)
    sid = str(uuid.uuid4())
    audio = mulaw_frames(440, 100)
    order = list(range(1, 101))
    order[10], order[12] = order[12], order[10]        # 11 and 13 swapped
    order[40:43] = [43, 41, 42]                          # 43 early
    order.remove(70)                                     # lost
    order.append(5)                                      # far too late: dropped
    frames = [json.dumps({"event": "connected", "version": "1.0.0"}), telnyx_start(ccid, sid)]
    frames += [telnyx_media(sid, i + 2, "inbound", chunk, audio[chunk - 1])
               for i, chunk in enumerate(order)]
    frames.append(json.dumps({"event": "stop", "sequence_number": "999", "stream_id": sid,
                              "stop": {"call_control_id": ccid}}))
    url = await _gw.ws_url(gateway, "telnyx", integration["id"], f"token={token['token']}")
    code, _ = await _gw.send_frames(gateway, url, frames)
    assert code == 1000
    call = await _gw.call_by_platform_id(gateway, ccid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    w, pcm = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 8000, 100 * 160)
    # Chunk 70's place is silence; chunk 71 is where it belongs.
    assert pcm[69 * 320:70 * 320] == bytes(320)
    from gateway.media._audioop import audioop
    assert pcm[70 * 320:71 * 320] == audioop.ulaw2lin(audio[70], 2)
    stats = await _gw.stats_of(gateway, rec["id"])
    assert (stats["frames_lost"], stats["frames_late"], stats["frames_received"]) == (1, 1, 100)
    assert stats["frames_reordered"] == 4     # 12, 11 after 13; 41, 42 after 43
    assert stats["silence_filled_seconds"] == 0.02


async def test_telnyx_learns_both_tracks_and_bearer_tokens_work(gateway):
    tenant = await gateway.new_tenant("acme")
    integration = await gateway.integration(tenant, "telnyx", telnyx_credentials())
    token = await _token(gateway, tenant, integration["id"])
    ccid, sid = "v3:" + secrets.token_urlsafe(20), str(uuid.uuid4())
    inbound, outbound = mulaw_frames(440, 50), mulaw_frames(660, 50)
    frames = [telnyx_start(ccid, sid)]
    for i in range(50):
        frames.append(telnyx_media(sid, 2 * i + 2, "inbound", i + 1, inbound[i]))
        frames.append(telnyx_media(sid, 2 * i + 3, "outbound", i + 1, outbound[i]))
    frames.append(json.dumps({"event": "stop", "stream_id": sid, "stop": {}}))
    url = await _gw.ws_url(gateway, "telnyx", integration["id"])
    code, _ = await _gw.send_frames(gateway, url, frames,
                                    {"Authorization": f"Bearer {token['token']}"})
    assert code == 1000
    call = await _gw.call_by_platform_id(gateway, ccid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert (w.getnchannels(), w.getnframes()) == (2, 50 * 160)


async def test_telnyx_without_a_valid_token_is_refused(gateway):
    tenant = await gateway.new_tenant("acme")
    integration = await gateway.integration(tenant, "telnyx", telnyx_credentials())
    token = await _token(gateway, tenant, integration["id"])
    other = await gateway.integration(tenant, "telnyx", telnyx_credentials())
    sid = str(uuid.uuid4())
    frames = [telnyx_start("v3:x", sid)]
    for query in ("", "token=vgwi_0011223344556677_" + "A" * 43, "token=junk",
                  f"token={token['token']}x"):
        code, _ = await _gw.send_frames(
            gateway, await _gw.ws_url(gateway, "telnyx", integration["id"], query), frames)
        assert code == 1008
    # A token is good for its own integration only.
    code, _ = await _gw.send_frames(
        gateway, await _gw.ws_url(gateway, "telnyx", other["id"], f"token={token['token']}"),
        frames)
    assert code == 1008
    # Revoked: refused from then on.
    status, _, _ = await gateway.request(
        "DELETE", f"/v1/integrations/{integration['id']}/ingest-tokens/{token['id']}",
        headers=tenant.auth)
    assert status == 204
    code, _ = await _gw.send_frames(
        gateway, await _gw.ws_url(gateway, "telnyx", integration["id"], f"token={token['token']}"),
        frames)
    assert code == 1008
    status, listing, _ = await gateway.request(
        "GET", f"/v1/integrations/{integration['id']}/ingest-tokens", headers=tenant.auth)
    assert status == 200 and listing["items"][0]["revoked_at"] is not None
    assert "token" not in listing["items"][0]
    assert await gateway.services.db.fetchone("SELECT 1 FROM recordings") is None


async def test_vonage_jwt_upgrade_and_binary_l16(gateway):
    tenant = await gateway.new_tenant("acme")
    creds = vonage_credentials()
    integration = await gateway.integration(tenant, "vonage", creds)
    call_uuid = str(uuid.uuid4())
    first = json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
                        "uuid": call_uuid, "customer": "header never stored"})
    pcm = sine(500, 16000 * 2, 16000)
    frames: list = [first] + [pcm[i:i + 640] for i in range(0, len(pcm), 640)]
    frames.insert(30, json.dumps({"event": "websocket:dtmf", "digit": "5"}))
    url = await _gw.ws_url(gateway, "vonage", integration["id"])
    token = vonage_jwt(creds["signature_secret"], creds["application_id"],
                       gateway.clock.now().timestamp())
    code, _ = await _gw.send_frames(gateway, url, frames, {"Authorization": f"Bearer {token}"},
                                    close=True)
    assert code == 1000
    call = await _gw.call_by_platform_id(gateway, call_uuid)
    recs = await _gw.wait_for(lambda: _gw.recordings_of(gateway, tenant, call["id"]))
    [rec] = recs
    assert rec["state"] == "available"
    w, data = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 16000, 32000)
    assert data == pcm
    stats = await _gw.stats_of(gateway, rec["id"])
    assert stats["frames_lost"] is None and stats["frames_received"] == 100


async def test_vonage_bad_jwt_and_odd_audio(gateway):
    tenant = await gateway.new_tenant("acme")
    creds = vonage_credentials()
    integration = await gateway.integration(tenant, "vonage", creds)
    url = await _gw.ws_url(gateway, "vonage", integration["id"])
    first = json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000",
                        "uuid": str(uuid.uuid4())})
    bad = vonage_jwt("x" * 32, creds["application_id"], gateway.clock.now().timestamp())
    stale = vonage_jwt(creds["signature_secret"], creds["application_id"],
                       gateway.clock.now().timestamp() - 3600)
    for headers in ({}, {"Authorization": f"Bearer {bad}"}, {"Authorization": f"Bearer {stale}"}):
        code, _ = await _gw.send_frames(gateway, url, [first], headers)
        assert code == 1008
    good = {"Authorization": "Bearer " + vonage_jwt(creds["signature_secret"],
                                                    creds["application_id"],
                                                    gateway.clock.now().timestamp())}
    code, _ = await _gw.send_frames(gateway, url, [b"\x00" * 320], good)
    assert code == 1008                                       # audio before connected
    code, _ = await _gw.send_frames(gateway, url, [first, b"\x00" * 321], good)
    assert code == 1007                                       # not 16-bit samples
    no_uuid = json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000"})
    code, _ = await _gw.send_frames(gateway, url, [no_uuid], good)
    assert code == 1008
    # The uuid may come as a query parameter of the NCCO's uri instead.
    call_uuid = str(uuid.uuid4())
    code, _ = await _gw.send_frames(gateway, url + f"?uuid={call_uuid}",
                                    [no_uuid, b"\x01\x00" * 160], good, close=True)
    await _gw.wait_for(lambda: gateway.services.db.fetchone(
        "SELECT 1 FROM calls WHERE platform_call_id = ?", (call_uuid,)))


async def test_g711_as_received_is_a_mulaw_wav(gateway, media_config: MediaConfig):
    media_config.g711_storage = "as_received"
    tenant = await gateway.new_tenant("acme")
    integration = await gateway.integration(tenant, "telnyx", telnyx_credentials())
    token = await _token(gateway, tenant, integration["id"])
    ccid, sid = "v3:" + secrets.token_urlsafe(20), str(uuid.uuid4())
    audio = mulaw_frames(440, 20)
    frames = [telnyx_start(ccid, sid)] + [telnyx_media(sid, i + 2, "inbound", i + 1, audio[i])
                                          for i in range(20)]
    frames.append(json.dumps({"event": "stop", "stream_id": sid, "stop": {}}))
    url = await _gw.ws_url(gateway, "telnyx", integration["id"], f"token={token['token']}")
    assert (await _gw.send_frames(gateway, url, frames))[0] == 1000
    call = await _gw.call_by_platform_id(gateway, ccid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    data = await _gw.download(gateway, tenant, rec["id"])
    chunks = riff_chunks(data)
    fmt_at, fmt_size = chunks["fmt "]
    tag, channels, rate, byte_rate, align, bits = struct.unpack(
        "<HHIIHH", data[fmt_at:fmt_at + 16])
    assert (tag, channels, rate, byte_rate, align, bits) == (7, 1, 8000, 8000, 1, 8)
    assert fmt_size == 18 and "fact" in chunks
    data_at, data_size = chunks["data"]
    assert data_size == 20 * 160 and data[data_at:] == b"".join(audio)


async def test_telnyx_stream_joins_the_call_its_webhooks_created(gateway):
    """Webhooks and the media stream name the call by the same call_control_id, so the live
    recording lands on the call the signed webhooks created, not on a second one."""
    from datetime import timedelta

    from tests.ingest.senders import TelnyxSender, iso

    tenant = await gateway.new_tenant("acme")
    telnyx = await TelnyxSender.create(gateway, tenant)
    ccid = "v3:" + secrets.token_urlsafe(40)
    t0 = gateway.clock.now() - timedelta(seconds=30)
    payload = {"call_control_id": ccid, "call_leg_id": str(uuid.uuid4()),
               "call_session_id": str(uuid.uuid4()), "from": "+14155550100",
               "to": "+4930901820", "direction": "incoming", "start_time": iso(t0),
               "state": "parked"}
    status, body, _ = await telnyx.post(telnyx.event("call.initiated", payload, t0))
    assert status == 200, body
    token = await _token(gateway, tenant, telnyx.integration["id"])
    sid = str(uuid.uuid4())
    audio = mulaw_frames(440, 50)
    frames = [telnyx_start(ccid, sid)]
    frames += [telnyx_media(sid, i + 2, "inbound", i + 1, audio[i]) for i in range(50)]
    frames.append(json.dumps({"event": "stop", "sequence_number": "99", "stream_id": sid,
                              "stop": {"call_control_id": ccid}}))
    url = await _gw.ws_url(gateway, "telnyx", telnyx.integration["id"],
                           f"token={token['token']}")
    code, _ = await _gw.send_frames(gateway, url, frames)
    assert code == 1000
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    [call] = page["items"]
    assert call["from"] == "+14155550100"
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert w.getnframes() == 50 * 160
