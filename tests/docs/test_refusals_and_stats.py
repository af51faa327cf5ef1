"""What the README promises a tenant sees, through real HTTP: Twilio refusals that say what
to fix, phone-number refusals that name the +country form and [privacy] default_region,
and recordings that carry the technical stats measured at ingest."""

from __future__ import annotations

import os
from datetime import timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from gateway.media.stats import StreamStats
from tests.support.server import PUBLIC_BASE_URL


async def _twilio(gateway, tenant):
    sid, token = "AC" + os.urandom(16).hex(), os.urandom(16).hex()
    integration = await gateway.integration(tenant, "twilio",
                                            {"account_sid": sid, "auth_token": token})
    return integration, sid, token


def _status(sid: str, when) -> dict[str, str]:
    return {"AccountSid": sid, "CallSid": "CA" + os.urandom(16).hex(), "CallStatus": "ringing",
            "Direction": "inbound", "From": "+14155550100", "To": "+14155550199",
            "SequenceNumber": "0", "Timestamp": format_datetime(when)}


async def _post_signed(gateway, integration, token, params, signed_url):
    signature = RequestValidator(token).compute_signature(signed_url, params)
    path = f"/v1/hooks/twilio/{integration['id']}"
    return await gateway.request("POST", path, data=urlencode(params).encode(), headers={
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded"})


async def test_twilio_refusals_say_what_to_fix(gateway):
    tenant = await gateway.new_tenant("acme")
    integration, sid, token = await _twilio(gateway, tenant)
    path = f"/v1/hooks/twilio/{integration['id']}"
    now = gateway.clock.now()

    # Signed over the URL the request really went to (the gateway's own host and port),
    # while public_base_url says https://gateway.example.com: the usual proxy mistake.
    status, body, _ = await _post_signed(gateway, integration, token, _status(sid, now),
                                         gateway.url + path)
    assert status == 401 and body["type"] == "urn:vgw:problem:invalid-signature"
    assert "matches the URL this request was sent to" in body["detail"]
    assert "[server] public_base_url" in body["detail"] and PUBLIC_BASE_URL in body["detail"]

    # Signed over some other URL (or with another token): the setting and the token named.
    status, body, _ = await _post_signed(gateway, integration, token, _status(sid, now),
                                         "https://elsewhere.example.net" + path)
    assert status == 401
    assert "does not match the URL rebuilt from [server] public_base_url" in body["detail"]
    assert "auth_token" in body["detail"]

    # Authentic, but the callback's Timestamp is 25 hours old.
    status, body, _ = await _post_signed(gateway, integration, token,
                                         _status(sid, now - timedelta(hours=25)),
                                         PUBLIC_BASE_URL + path)
    assert status == 401 and "Timestamp is more than 24 hours old" in body["detail"]

    for detail in (body["detail"],):
        assert token not in detail and sid not in detail and "+1415" not in detail

    # And the right URL is accepted.
    status, _, _ = await _post_signed(gateway, integration, token, _status(sid, now),
                                      PUBLIC_BASE_URL + path)
    assert status == 200


async def test_national_numbers_are_refused_with_what_to_fix(gateway):
    tenant = await gateway.new_tenant("acme")
    hold = {"scope": "phone_number", "phone_number": "020 7183 8750", "reason": "case 17"}
    status, body, _ = await gateway.request("POST", "/v1/legal-holds", headers=tenant.auth,
                                            json=hold)
    assert status == 422 and body["field"] == "phone_number"
    assert "+<country code>" in body["detail"] and "[privacy] default_region" in body["detail"]
    assert "7183" not in body["detail"]
    status, body, _ = await gateway.request("POST", "/v1/legal-holds", headers=tenant.auth,
                                            json={**hold, "phone_number": "+44 20 7183 8750"})
    assert status == 201, body


def _measured_stats() -> dict:
    """Stats as the live pipeline computes them: a tone on one channel, silence on the other."""
    stats = StreamStats(codec="pcmu", sample_rate=8000, channel_names=("inbound", "outbound"),
                        clip_level=32767, silence_threshold_dbfs=-50.0)
    tone = b"".join(int(8000 if (i // 10) % 2 else -8000).to_bytes(2, "little", signed=True)
                    for i in range(160))
    for _ in range(100):
        stats.channels[0].add_pcm(tone)
        stats.channels[1].add_silence(160)
        stats.frames_received += 1
    return stats.to_dict({"wav_format": 1, "channels": 2, "sample_rate": 8000,
                          "sample_width": 2}, end_reason="stop")


async def test_recordings_carry_their_technical_stats(gateway):
    tenant = await gateway.new_tenant("acme")
    integration, sid, token = await _twilio(gateway, tenant)
    params = _status(sid, gateway.clock.now())
    status, _, _ = await _post_signed(gateway, integration, token, params,
                                      f"{PUBLIC_BASE_URL}/v1/hooks/twilio/{integration['id']}")
    assert status == 200
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    call_id = page["items"][0]["id"]

    stats = _measured_stats()
    writer = await gateway.services.recordings.begin(tenant.id, call_id, "twilio_stream")
    await writer.write(b"\0" * 3200)
    recording = await writer.finish("audio/wav", stats=stats)
    status, upload, _ = await gateway.request(
        "POST", f"/v1/calls/{call_id}/recordings", headers=tenant.auth, data=b"RIFF....")
    assert status == 201

    status, body, _ = await gateway.request("GET", f"/v1/recordings/{recording['id']}",
                                            headers=tenant.auth)
    assert status == 200
    assert body["stats"] == stats
    assert body["stats"]["one_way_audio"] is True
    assert body["stats"]["per_channel"][0]["rms_dbfs"] > -20
    status, body, _ = await gateway.request("GET", f"/v1/recordings/{upload['id']}",
                                            headers=tenant.auth)
    assert body["stats"] is None          # uploads are stored as received, not measured

    _, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    by_id = {r["id"]: r for r in call["recordings"]}
    assert by_id[recording["id"]]["stats"] == stats and by_id[upload["id"]]["stats"] is None

    _, spec, _ = await gateway.request("GET", "/v1/openapi.json")
    get = spec["paths"]["/v1/recordings/{recording_id}"]["get"]
    ref = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    documented = spec["components"]["schemas"]["RecordingStats"]["properties"]
    assert "stats" in schema["properties"]
    assert set(stats) <= set(documented), set(stats) - set(documented)
