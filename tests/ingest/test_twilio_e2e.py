"""Twilio end to end: signed status and recording callbacks through real HTTP, in the
order and as often as Twilio may deliver them, then the call as the tenant sees it."""

from __future__ import annotations

import json
from datetime import timedelta

from .fakes import FakePlatform
from .helpers import (
    assert_invisible_to_other_tenant,
    at,
    audio_bytes,
    download,
    only_call,
    settle,
    webhooks,
)
from .senders import TwilioSender

SID = "CA" + "a1" * 16


async def test_status_callbacks_out_of_order_with_duplicates(gateway):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    t0 = gateway.clock.now() - timedelta(minutes=10)
    initiated = twilio.status(SID, "initiated", 0, t0)
    ringing = twilio.status(SID, "ringing", 1, t0 + timedelta(seconds=2))
    answered = twilio.status(SID, "in-progress", 2, t0 + timedelta(seconds=6))
    completed = twilio.status(SID, "completed", 3, t0 + timedelta(seconds=48),
                              CallDuration="42")
    # completed first, then in-progress; every callback twice; ringing last.
    for params in (completed, answered, completed, initiated, answered, ringing, ringing):
        status, body, headers = await twilio.post(params)
        assert status == 200, body
    call = await only_call(gateway, tenant)
    assert call["platform"] == "twilio" and call["platform_call_id"] == SID
    assert call["status"] == "completed"
    assert call["direction"] == "inbound"
    assert (call["from"], call["to"]) == ("+14155550100", "+14155550199")
    assert at(call["started_at"]) == t0                       # the earliest callback
    assert at(call["ended_at"]) == t0 + timedelta(seconds=48)
    assert call["duration_seconds"] == 42
    assert sorted(e["status"] for e in call["events"]) == \
        ["completed", "in-progress", "queued", "ringing"]
    assert webhooks(gateway, "twilio", "accepted") == 4
    assert webhooks(gateway, "twilio", "duplicate") == 3
    await assert_invisible_to_other_tenant(gateway, call)


async def test_late_completed_fills_duration_and_end_time(gateway):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    t0 = gateway.clock.now() - timedelta(minutes=5)
    for params in (twilio.status(SID, "ringing", 1, t0),
                   twilio.status(SID, "in-progress", 2, t0 + timedelta(seconds=4))):
        assert (await twilio.post(params))[0] == 200
    call = await only_call(gateway, tenant)
    assert (call["status"], call["ended_at"], call["duration_seconds"]) == \
        ("in-progress", None, None)
    gateway.clock.advance(minutes=2)
    completed = twilio.status(SID, "completed", 3, t0 + timedelta(seconds=64),
                              CallDuration="60")
    assert (await twilio.post(completed))[0] == 200
    call = await only_call(gateway, tenant)
    assert call["status"] == "completed" and call["duration_seconds"] == 60
    assert at(call["ended_at"]) == t0 + timedelta(seconds=64)
    assert at(call["started_at"]) == t0


async def test_outbound_call_json_body_variant_and_port_variant(gateway):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    now = gateway.clock.now()
    doc = twilio.status(SID, "busy", 1, now, Direction="outbound-api",
                        From="+442071838750", To="+4915112345678")
    status, body, _ = await twilio.post_json(doc)
    assert status == 200 and body == {"accepted": 1, "duplicates": 0}
    # The same body redelivered is a duplicate; a tampered one is not authentic.
    assert (await twilio.post_json(doc))[1] == {"accepted": 0, "duplicates": 1}
    body = json.dumps(doc)
    query = "?bodySHA256=" + twilio.validator.compute_hash(body)
    signature = twilio.validator.compute_signature(twilio.url + query, {})
    tampered = body.replace("busy", "completed").encode()
    assert (await twilio.raw(tampered, {"X-Twilio-Signature": signature,
                                        "Content-Type": "application/json"},
                             query=query))[0] == 401
    # Signed over the URL written with the default port: Twilio's validator accepts it.
    params = twilio.status(SID, "ringing", 0, now - timedelta(seconds=20),
                           Direction="outbound-api", From="+442071838750",
                           To="+4915112345678")
    port_url = twilio.url.replace("gateway.example.com", "gateway.example.com:443")
    assert (await twilio.post(params, sign_url=port_url))[0] == 200
    call = await only_call(gateway, tenant)
    assert (call["status"], call["direction"]) == ("busy", "outbound")
    assert (call["from"], call["to"]) == ("+442071838750", "+4915112345678")
    assert at(call["ended_at"]) == now


async def test_signatures_cover_the_public_url_and_the_token(gateway):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    params = twilio.status(SID, "ringing", 1, gateway.clock.now())
    # Signed over the URL the gateway itself listens on (what a proxy forwards to): refused,
    # because the gateway rebuilds the URL from public_base_url, as Twilio signed it.
    local_url = gateway.url + twilio.path
    status, problem, headers = await twilio.post(params, sign_url=local_url)
    assert status == 401 and headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"] == "urn:vgw:problem:invalid-signature"
    assert (await twilio.post(params, token="0" * 32))[0] == 401
    status, _, _ = await twilio.raw(b"CallSid=CA1&CallStatus=ringing",
                                    {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401
    assert webhooks(gateway, "twilio", "bad_signature") == 2
    assert webhooks(gateway, "twilio", "missing_signature") == 1
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert page["items"] == []


async def test_replay_beyond_the_window_is_refused(gateway):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    old = twilio.status(SID, "completed", 3, gateway.clock.now() - timedelta(hours=25),
                        CallDuration="5")
    status, problem, _ = await twilio.post(old)
    assert status == 401 and problem["type"] == "urn:vgw:problem:invalid-signature"
    assert webhooks(gateway, "twilio", "stale") == 1
    fresh = twilio.status(SID, "completed", 3, gateway.clock.now() - timedelta(hours=23),
                          CallDuration="5")
    assert (await twilio.post(fresh))[0] == 200
    # The same authentic callback replayed later is stopped by its dedupe key, and once
    # older than the window, by the window.
    gateway.clock.advance(minutes=30)
    assert (await twilio.post(fresh))[1] == {"accepted": 0, "duplicates": 1}
    gateway.clock.advance(hours=1)
    assert (await twilio.post(fresh))[0] == 401
    assert webhooks(gateway, "twilio", "stale") == 2


async def test_recording_callback_fetches_the_recording_under_the_call(gateway,
                                                                       fake_platform):
    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    audio = audio_bytes(200_000)
    rsid = "RE" + "b2" * 16

    def check(request):
        return None if request.headers.get("Authorization") == twilio.basic_auth() else 401
    fake_platform.route("api.twilio.com", twilio.media_path(rsid),
                        FakePlatform.audio(audio, "audio/x-wav", check=check))
    t0 = gateway.clock.now() - timedelta(minutes=2)
    # Recording status first (in-progress: nothing to fetch yet), then the call, then the
    # completed recording callback twice.
    assert (await twilio.post(twilio.recording(SID, rsid, RecordingStatus="in-progress"))
            )[1] == {"accepted": 0, "duplicates": 0}
    assert (await twilio.post(twilio.status(SID, "completed", 3, t0, CallDuration="30"))
            )[0] == 200
    for _ in range(2):
        assert (await twilio.post(twilio.recording(SID, rsid)))[0] == 200
    await settle(gateway)
    call = await only_call(gateway, tenant)
    [job] = call["recording_fetches"]
    assert job["state"] == "done"
    [recording] = call["recordings"]
    assert recording["source"] == "fetch"
    assert await download(gateway, tenant, recording["id"]) == audio
    [seen] = fake_platform.requests
    assert seen.path_qs == twilio.media_path(rsid)      # RecordingUrl + ".wav"
    await assert_invisible_to_other_tenant(gateway, call)
