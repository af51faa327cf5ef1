"""Twilio Media Streams end to end: a real aiohttp WebSocket client, a signed upgrade, both
tracks streamed, the recording downloaded and read back with the standard library."""

from __future__ import annotations

import secrets

from tests.support.signers import call_updated  # noqa: F401  (shared helpers stay importable)

from . import _gw
from .helpers import (
    mulaw_frames,
    read_wav,
    twilio_credentials,
    twilio_stream,
    twilio_upgrade_headers,
)


async def test_both_tracks_become_a_two_channel_wav(gateway):
    tenant = await gateway.new_tenant("acme")
    creds = twilio_credentials()
    integration = await gateway.integration(tenant, "twilio", creds)
    call_sid = "CA" + secrets.token_hex(16)
    frames = twilio_stream(creds["account_sid"], call_sid,
                           {"inbound": mulaw_frames(440, 150),
                            "outbound": mulaw_frames(880, 150, amp=2000)})
    url = await _gw.ws_url(gateway, "twilio", integration["id"])
    code, _ = await _gw.send_frames(gateway, url, frames,
                                    twilio_upgrade_headers(creds["auth_token"], integration["id"]))
    assert code == 1000
    call = await _gw.call_by_platform_id(gateway, call_sid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    assert rec["state"] == "available" and rec["source"] == "stream"
    data = await _gw.download(gateway, tenant, rec["id"])
    w, pcm = read_wav(data)
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
    assert w.getnframes() == 150 * 160
    stats = await _gw.stats_of(gateway, rec["id"])
    assert stats["channels"] == 2 and stats["frames_received"] == 300
    assert stats["frames_lost"] == 0
    print(stats)


async def _twilio(gateway, name="acme", **extra):
    tenant = await gateway.new_tenant(name)
    creds = twilio_credentials()
    integration = await gateway.integration(tenant, "twilio", creds, **extra)
    url = await _gw.ws_url(gateway, "twilio", integration["id"])
    return tenant, creds, integration, url


async def test_the_stream_joins_the_call_its_webhooks_created(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    call_sid = "CA" + secrets.token_hex(16)
    form = {"CallSid": call_sid, "AccountSid": creds["account_sid"], "From": "+14155550100",
            "To": "+14155550199", "CallStatus": "ringing", "Direction": "inbound"}
    hook = f"https://gateway.example.com/v1/hooks/twilio/{integration['id']}"
    from twilio.request_validator import RequestValidator
    signature = RequestValidator(creds["auth_token"]).compute_signature(hook, form)
    status, body, _ = await gateway.request(
        "POST", f"/v1/hooks/twilio/{integration['id']}", data=form,
        headers={"X-Twilio-Signature": signature})
    assert status == 200, body
    before = await _gw.call_by_platform_id(gateway, call_sid)
    frames = twilio_stream(creds["account_sid"], call_sid, {"inbound": mulaw_frames(300, 60)})
    code, _ = await _gw.send_frames(gateway, url, frames,
                                    twilio_upgrade_headers(creds["auth_token"], integration["id"]))
    assert code == 1000
    after = await _gw.call_by_platform_id(gateway, call_sid)
    assert after["id"] == before["id"] and after["status"] == "in-progress"
    [rec] = await _gw.recordings_of(gateway, tenant, before["id"])
    w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
    assert (w.getnchannels(), w.getnframes()) == (1, 60 * 160)
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert len(page["items"]) == 1


async def test_a_bad_signature_closes_with_1008_and_records_nothing(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    frames = twilio_stream(creds["account_sid"], "CA" + secrets.token_hex(16),
                           {"inbound": mulaw_frames(300, 5)})
    for headers in ({}, twilio_upgrade_headers("0" * 32, integration["id"]),
                    twilio_upgrade_headers(creds["auth_token"], "other-path")):
        code, _ = await _gw.send_frames(gateway, url, frames, headers)
        assert code == 1008
    assert await gateway.services.db.fetchone("SELECT 1 FROM recordings") is None
    metrics = gateway.services.metrics.registry.get_sample_value(
        "gateway_media_rejected_total", {"platform": "twilio", "reason": "unauthenticated"})
    assert metrics == 3


async def test_another_accounts_stream_is_refused(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    frames = twilio_stream("AC" + secrets.token_hex(16), "CA" + secrets.token_hex(16),
                           {"inbound": mulaw_frames(300, 5)})
    code, _ = await _gw.send_frames(gateway, url, frames,
                                    twilio_upgrade_headers(creds["auth_token"], integration["id"]))
    assert code == 1008


async def test_not_an_upgrade_and_unknown_integration(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    status, body, _ = await gateway.request("GET", f"/v1/media/twilio/{integration['id']}")
    assert status == 426 and body["type"] == "urn:vgw:problem:upgrade-required"
    status, _, _ = await gateway.request("GET", "/v1/media/twilio/00000000-0000-0000-0000-"
                                                "000000000000")
    assert status == 404
    status, _, _ = await gateway.request("GET", f"/v1/media/sip/{integration['id']}")
    assert status == 404
    # The integration is Twilio's: the Telnyx path does not know it.
    status, _, _ = await gateway.request("GET", f"/v1/media/telnyx/{integration['id']}")
    assert status == 404


BAD_FRAMES = [
    ("not json", 1007, "invalid_json"),
    ('{"event": "media", "media": {"payload": "AAAA", "track": "inbound"}}', 1008, "bad_order"),
    ("[1, 2]", 1007, "invalid_json"),
    ('{"event": 7}', 1007, "bad_field"),
]


async def test_bad_frames_close_with_1007_or_1008_and_keep_what_came_before(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    headers = twilio_upgrade_headers(creds["auth_token"], integration["id"])
    registry = gateway.services.metrics.registry
    for frame, code_expected, outcome in BAD_FRAMES:
        labels = {"platform": "twilio", "outcome": outcome}
        before = registry.get_sample_value("gateway_media_frame_errors_total", labels) or 0
        code, _ = await _gw.send_frames(gateway, url, [frame], headers)
        assert code == code_expected, frame
        assert registry.get_sample_value("gateway_media_frame_errors_total", labels) == \
            before + 1
    # Mid-stream: bad base64, then oversized, then a second start, then binary.
    import json
    for bad, expected in ((json.dumps({"event": "media", "media": {
            "track": "inbound", "chunk": "9", "timestamp": "160", "payload": "!!!"}}), 1007),
            ("x" * (70 * 1024), 1008), (None, 1008), (b"\x00\x01", 1007)):
        call_sid = "CA" + secrets.token_hex(16)
        frames = twilio_stream(creds["account_sid"], call_sid,
                               {"inbound": mulaw_frames(300, 8)}, stop=False)
        frames.append(bad if bad is not None else frames[1])
        frames.extend(frames[2:4])
        code, _ = await _gw.send_frames(gateway, url, frames, headers)
        assert code == expected
        call = await _gw.call_by_platform_id(gateway, call_sid)
        [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
        assert rec["state"] == "incomplete"
        w, _ = read_wav(await _gw.download(gateway, tenant, rec["id"]))
        assert w.getnframes() == 8 * 160
        stats = await _gw.stats_of(gateway, rec["id"])
        assert stats["end_reason"] == "protocol_error"
    assert registry.get_sample_value("gateway_media_frame_errors_total",
                                     {"platform": "twilio", "outcome": "bad_base64"}) == 1
    assert registry.get_sample_value("gateway_media_frame_errors_total",
                                     {"platform": "twilio", "outcome": "oversized"}) == 1
    # The gateway still serves.
    assert (await gateway.request("GET", "/healthz"))[0] == 200


async def test_a_dropped_stream_is_finalised_after_the_idle_timeout(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    call_sid = "CA" + secrets.token_hex(16)
    frames = twilio_stream(creds["account_sid"], call_sid, {"inbound": mulaw_frames(300, 25)},
                           stop=False)
    headers = twilio_upgrade_headers(creds["auth_token"], integration["id"])
    async with gateway.http.ws_connect(url, headers=headers) as ws:
        for frame in frames:
            await ws.send_str(frame)
        msg = await ws.receive(timeout=10)     # the server gives up on us
        assert msg.data == 1001, msg
    call = await _gw.call_by_platform_id(gateway, call_sid)
    [rec] = await _gw.wait_for(lambda: _gw.recordings_of(gateway, tenant, call["id"]))
    assert rec["state"] == "incomplete"
    stats = await _gw.stats_of(gateway, rec["id"])
    assert stats["end_reason"] == "idle_timeout" and stats["duration_seconds"] == 0.5


async def test_ranges_span_the_header_and_the_audio(gateway):
    tenant, creds, integration, url = await _twilio(gateway)
    call_sid = "CA" + secrets.token_hex(16)
    frames = twilio_stream(creds["account_sid"], call_sid, {"inbound": mulaw_frames(300, 500)})
    await _gw.send_frames(gateway, url, frames,
                          twilio_upgrade_headers(creds["auth_token"], integration["id"]))
    call = await _gw.call_by_platform_id(gateway, call_sid)
    [rec] = await _gw.recordings_of(gateway, tenant, call["id"])
    whole = await _gw.download(gateway, tenant, rec["id"])
    assert len(whole) == 44 + 500 * 320
    for first, last in ((0, 10), (40, 100), (30, 70000), (65000, 140000), (len(whole) - 5,
                                                                            len(whole) - 1)):
        part = await _gw.download(gateway, tenant, rec["id"],
                                  headers={**tenant.auth, "Range": f"bytes={first}-{last}"})
        assert part == whole[first:last + 1]
    status, meta, _ = await gateway.request("GET", f"/v1/recordings/{rec['id']}",
                                            headers=tenant.auth)
    assert meta["length"] == len(whole) and meta["content_type"] == "audio/wav"


async def test_store_audio_off_keeps_stats_but_no_audio(gateway):
    tenant, creds, integration, url = await _twilio(gateway, options={"store_audio": False})
    call_sid = "CA" + secrets.token_hex(16)
    frames = twilio_stream(creds["account_sid"], call_sid, {"inbound": mulaw_frames(300, 50)})
    code, _ = await _gw.send_frames(gateway, url, frames,
                                    twilio_upgrade_headers(creds["auth_token"], integration["id"]))
    assert code == 1000
    call = await _gw.call_by_platform_id(gateway, call_sid)
    assert await _gw.recordings_of(gateway, tenant, call["id"]) == []
    events = await gateway.services.db.fetchall(
        "SELECT body FROM call_events WHERE call_id = ?", (call["id"],))
    assert len(events) == 2     # media start, media stats (sealed)
