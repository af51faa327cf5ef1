"""Vonage end to end: signed-callback event webhooks (HS256 JWT with payload_hash, signed
with PyJWT) through real HTTP, then the record webhook, linked to the call through the
conversation, fetched with the application's RS256 JWT."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import jwt

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
from .senders import VonageSender, iso

CONVERSATION = "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"


def event(leg: str, status: str, when, **extra):
    return {"uuid": leg, "conversation_uuid": CONVERSATION, "from": "447700900000",
            "to": "447700900001", "status": status, "direction": "inbound",
            "timestamp": iso(when), **extra}


def record(when, file_id: str, **extra):
    return {"start_time": iso(when - timedelta(seconds=30)),
            "recording_url": f"https://api.nexmo.com/v1/files/{file_id}",
            "size": 12222, "recording_uuid": str(uuid.uuid4()), "end_time": iso(when),
            "conversation_uuid": CONVERSATION, "timestamp": iso(when), **extra}


def jwt_check(vonage: VonageSender, seen_claims: list):
    """What Vonage's media API does: the application JWT must verify with the
    application's public key and name the application."""
    def check(request):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return 401
        try:
            claims = jwt.decode(token, vonage.public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return 401
        if claims.get("application_id") != vonage.application_id:
            return 401
        seen_claims.append(claims)
        return None
    return check


async def test_event_webhooks_and_recording_linked_by_conversation(gateway, fake_platform,
                                                                   vonage_key):
    tenant = await gateway.new_tenant("acme")
    vonage = await VonageSender.create(gateway, tenant, vonage_key)
    audio = audio_bytes(120_000)
    file_id = str(uuid.uuid4())
    claims: list = []
    fake_platform.route("api.nexmo.com", f"/v1/files/{file_id}",
                        FakePlatform.audio(audio, "audio/mpeg", check=jwt_check(vonage, claims)))
    leg = str(uuid.uuid4())
    t0 = gateway.clock.now() - timedelta(minutes=4)
    started = event(leg, "started", t0)
    ringing = event(leg, "ringing", t0 + timedelta(seconds=1))
    answered = event(leg, "answered", t0 + timedelta(seconds=4))
    completed = event(leg, "completed", t0 + timedelta(seconds=46),
                      start_time=iso(t0 + timedelta(seconds=4)),
                      end_time=iso(t0 + timedelta(seconds=46)), duration="42",
                      rate="0.00450000", price="0.00315000", network="23410",
                      disconnected_by="user")
    for doc in (ringing, completed, started, completed, answered, ringing):
        status, body, _ = await vonage.post(doc)
        assert status == 200, body
    assert webhooks(gateway, "vonage", "accepted") == 4
    assert webhooks(gateway, "vonage", "duplicate") == 2
    # The record webhook names only the conversation; it lands on the call, twice sent.
    rec = record(t0 + timedelta(seconds=47), file_id)
    for _ in range(2):
        assert (await vonage.post(rec))[0] == 200
    await settle(gateway)

    call = await only_call(gateway, tenant)
    assert call["platform_call_id"] == leg
    assert (call["status"], call["direction"]) == ("completed", "inbound")
    assert (call["from"], call["to"]) == ("+447700900000", "+447700900001")
    assert at(call["started_at"]) == t0 + timedelta(seconds=4)
    assert at(call["ended_at"]) == t0 + timedelta(seconds=46)
    assert call["duration_seconds"] == 42
    [job] = call["recording_fetches"]
    assert job["state"] == "done"
    [recording] = call["recordings"]
    assert await download(gateway, tenant, recording["id"]) == audio
    # The media API received an RS256 JWT that verifies with the application's key.
    [seen] = fake_platform.requests
    assert seen.host == "api.nexmo.com"
    [claim] = claims
    assert claim["exp"] - claim["iat"] <= 300 and claim["jti"]
    await assert_invisible_to_other_tenant(gateway, call)


async def test_recording_before_any_event_is_adopted_by_the_call(gateway, fake_platform,
                                                                 vonage_key):
    tenant = await gateway.new_tenant("acme")
    vonage = await VonageSender.create(gateway, tenant, vonage_key)
    file_id = str(uuid.uuid4())
    audio = audio_bytes(30_000)
    fake_platform.route("api.nexmo.com", f"/v1/files/{file_id}", FakePlatform.audio(audio))
    t0 = gateway.clock.now() - timedelta(minutes=1)
    assert (await vonage.post(record(t0, file_id)))[0] == 200
    leg, other_leg = str(uuid.uuid4()), str(uuid.uuid4())
    for doc in (event(leg, "completed", t0, duration="20",
                      start_time=iso(t0 - timedelta(seconds=20)), end_time=iso(t0)),
                # The conversation's second leg (e.g. a connect to an agent): its own call.
                event(other_leg, "answered", t0 - timedelta(seconds=18),
                      direction="outbound", **{"from": "447700900001", "to": "447700900002"})):
        assert (await vonage.post(doc))[0] == 200
    await settle(gateway)
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert sorted(c["platform_call_id"] for c in page["items"]) == sorted([leg, other_leg])
    call = await only_call(gateway, tenant, leg)
    assert call["status"] == "completed" and call["duration_seconds"] == 20
    assert (call["from"], call["to"]) == ("+447700900000", "+447700900001")
    [recording] = call["recordings"]
    assert await download(gateway, tenant, recording["id"]) == audio
    assert (await only_call(gateway, tenant, other_leg))["recordings"] == []


async def test_unsigned_forged_and_stale_callbacks_are_refused(gateway, vonage_key):
    tenant = await gateway.new_tenant("acme")
    vonage = await VonageSender.create(gateway, tenant, vonage_key)
    doc = event(str(uuid.uuid4()), "ringing", gateway.clock.now())
    body = json.dumps(doc).encode()
    status, problem, _ = await vonage.raw(body, {"Content-Type": "application/json"})
    assert status == 401
    assert (await vonage.post(doc, secret="x" * 32))[0] == 401
    assert (await vonage.post(doc, when=gateway.clock.now() - timedelta(minutes=6)))[0] == 401
    # A valid token over another body: payload_hash binds the body.
    claims = {"iat": int(gateway.clock.now().timestamp()), "jti": "j",
              "payload_hash": "0" * 64}
    token = jwt.encode(claims, vonage.secret, algorithm="HS256")
    assert (await vonage.raw(body, {"Authorization": f"Bearer {token}"}))[0] == 401
    assert webhooks(gateway, "vonage", "missing_signature") == 1
    assert webhooks(gateway, "vonage", "bad_signature") == 2
    assert webhooks(gateway, "vonage", "stale") == 1
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert page["items"] == []
