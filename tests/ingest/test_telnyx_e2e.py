"""Telnyx end to end: Ed25519-signed Call Control webhooks through real HTTP, duplicated
and out of order, then the call; call.recording.saved fetched from a pre-signed S3 URL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.ingest.pipeline import EVENT_RECORD
from gateway.ingest.stored_event import event_body
from gateway.store.columns import id_text

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
from .senders import TelnyxSender, iso

LEG = "428c31b6-7af4-4bcb-b7f5-5013ef9657c1"
SESSION = "428c31b6-abf3-4bcb-b7f5-5013ef9657c1"
CONTROL = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"


def payload(state: str, t0, **extra):
    return {"call_control_id": CONTROL, "call_leg_id": LEG, "call_session_id": SESSION,
            "connection_id": "1684641123236054244", "client_state": "aGF2ZSBhIG5pY2UgZGF5",
            "from": "+14155550100", "to": "+4930901820", "direction": "incoming",
            "start_time": iso(t0), "state": state, **extra}


async def test_call_lifecycle_out_of_order_with_duplicates(gateway):
    tenant = await gateway.new_tenant("acme")
    telnyx = await TelnyxSender.create(gateway, tenant)
    t0 = gateway.clock.now() - timedelta(minutes=3)
    initiated = telnyx.event("call.initiated", payload("parked", t0), t0)
    answered = telnyx.event("call.answered", payload("answered", t0),
                            t0 + timedelta(seconds=5))
    hangup_id = str(uuid.uuid4())
    quality = {"inbound": {"jitter_max_variance": "0.98", "jitter_packet_count": "0",
                           "mos": "4.50", "packet_count": "3051", "skip_packet_count": "0"},
               "outbound": {"packet_count": "3058", "skip_packet_count": "2"}}
    hangup = telnyx.event("call.hangup", payload(
        "hangup", t0, hangup_cause="normal_clearing", hangup_source="caller",
        sip_hangup_cause="200", call_quality_stats=quality), t0 + timedelta(seconds=65),
        event_id=hangup_id)
    # Telnyx redelivers the same event (same data.id) with meta.attempt incremented.
    hangup_again = {**hangup, "meta": {**hangup["meta"], "attempt": 2}}
    for doc in (hangup, initiated, hangup_again, answered, initiated):
        status, body, _ = await telnyx.post(doc)
        assert status == 200, body
    call = await only_call(gateway, tenant)
    assert call["platform_call_id"] == CONTROL
    assert (call["status"], call["direction"]) == ("completed", "inbound")
    assert (call["from"], call["to"]) == ("+14155550100", "+4930901820")
    assert at(call["started_at"]) == t0
    assert at(call["ended_at"]) == t0 + timedelta(seconds=65)
    # Telnyx reports no duration: answered -> hangup, whichever arrived first.
    assert call["duration_seconds"] == 60
    assert len(call["events"]) == 3
    assert webhooks(gateway, "telnyx", "accepted") == 3
    assert webhooks(gateway, "telnyx", "duplicate") == 2

    # Technical diagnostics are kept (sealed with the event); nothing personal is.
    ring = await gateway.services.keyring.for_tenant(tenant.id)
    rows = await gateway.services.db.fetchall(
        "SELECT id, body FROM call_events WHERE call_id = ? AND status = 'completed'",
        (call["id"],))
    [row] = rows
    stored = event_body("call", "completed", ring.open_record(EVENT_RECORD, id_text(row["id"]),
                                                              bytes(row["body"])))
    assert stored["diagnostics"] == {
        "hangup_cause": "normal_clearing", "hangup_source": "caller",
        "sip_hangup_cause": "200",
        "call_quality_stats": {
            "inbound": {"jitter_max_variance": 0.98, "jitter_packet_count": 0, "mos": 4.5,
                        "packet_count": 3051, "skip_packet_count": 0},
            "outbound": {"packet_count": 3058, "skip_packet_count": 2}}}
    assert "4155550100" not in json.dumps(stored) and "aGF2ZSBh" not in json.dumps(stored)
    await assert_invisible_to_other_tenant(gateway, call)


async def test_unanswered_outgoing_call(gateway):
    tenant = await gateway.new_tenant("acme")
    telnyx = await TelnyxSender.create(gateway, tenant)
    t0 = gateway.clock.now() - timedelta(seconds=40)
    out = {"direction": "outgoing", "from": "+4930901820", "to": "+14155550100"}
    for doc in (telnyx.event("call.hangup", payload("hangup", t0, hangup_cause="timeout",
                                                    **out), t0 + timedelta(seconds=30)),
                telnyx.event("call.initiated", payload("bridging", t0, **out), t0)):
        assert (await telnyx.post(doc))[0] == 200
    call = await only_call(gateway, tenant)
    assert (call["status"], call["direction"]) == ("no-answer", "outbound")
    assert call["duration_seconds"] is None
    assert (call["from"], call["to"]) == ("+4930901820", "+14155550100")


async def test_signature_and_timestamp_are_enforced(gateway):
    tenant = await gateway.new_tenant("acme")
    telnyx = await TelnyxSender.create(gateway, tenant)
    doc = telnyx.event("call.initiated", payload("parked", gateway.clock.now()),
                       gateway.clock.now())
    status, problem, _ = await telnyx.post(doc, key=ed25519.Ed25519PrivateKey.generate())
    assert status == 401 and problem["type"] == "urn:vgw:problem:invalid-signature"
    for skew in (timedelta(seconds=301), -timedelta(seconds=301)):
        status, stale, _ = await telnyx.post(doc, when=gateway.clock.now() - skew)
        assert status == 401 and stale == problem
    assert webhooks(gateway, "telnyx", "bad_signature") == 1
    assert webhooks(gateway, "telnyx", "stale") == 2
    assert (await telnyx.post(doc, when=gateway.clock.now() - timedelta(seconds=299)))[0] \
        == 200


async def test_recording_saved_is_fetched_from_the_presigned_url(gateway, fake_platform):
    tenant = await gateway.new_tenant("acme")
    telnyx = await TelnyxSender.create(gateway, tenant)
    audio = audio_bytes(150_000)

    def s3(request):
        # S3 refuses a second auth mechanism; the URL's own signature must be intact.
        if "Authorization" in request.headers:
            return 400
        return None if request.query.get("X-Amz-Signature") == "deadbeef" else 403
    fake_platform.route("s3.amazonaws.com", "/telephony-recorder-prod/rec-1.wav",
                        FakePlatform.audio(audio, "binary/octet-stream", check=s3))
    t0 = gateway.clock.now() - timedelta(minutes=1)
    url = ("https://s3.amazonaws.com/telephony-recorder-prod/rec-1.wav?X-Amz-Algorithm="
           "AWS4-HMAC-SHA256&X-Amz-Expires=600&X-Amz-SignedHeaders=host"
           "&X-Amz-Signature=deadbeef")
    saved = telnyx.event("call.recording.saved", {
        "call_control_id": CONTROL, "call_leg_id": LEG, "call_session_id": SESSION,
        "connection_id": "1684641123236054244", "channels": "single",
        "recording_id": "1f0c2a5e-6d8c-4a34-9b0e-1b2c3d4e5f60",
        "recording_started_at": iso(t0), "recording_ended_at": iso(t0 + timedelta(seconds=20)),
        "recording_urls": {"mp3": None, "wav": url},
        "public_recording_urls": {"mp3": None, "wav": None}}, t0 + timedelta(seconds=21))
    # The recording is announced before the hangup arrives; both are redelivered.
    hangup = telnyx.event("call.hangup", payload("hangup", t0, hangup_cause="normal_clearing"),
                          t0 + timedelta(seconds=22))
    for doc in (saved, hangup, saved, hangup):
        assert (await telnyx.post(doc))[0] == 200
    await settle(gateway)
    call = await only_call(gateway, tenant)
    assert call["status"] == "completed"
    assert call["recording_fetches"][0]["state"] == "done"
    [recording] = call["recordings"]
    assert await download(gateway, tenant, recording["id"]) == audio
    status, meta, _ = await gateway.request("GET", f"/v1/recordings/{recording['id']}",
                                            headers=tenant.auth)
    assert meta["content_type"] == "audio/wav"        # as announced, not S3's guess
    [seen] = fake_platform.requests
    assert seen.host == "s3.amazonaws.com" and "Authorization" not in seen.headers
