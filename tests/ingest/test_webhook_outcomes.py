"""`gateway_webhooks_total{platform, outcome}` tells every kind of delivery apart, per
platform, and every refusal is a 4xx problem+json that stores nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from .helpers import call_count, webhooks
from .senders import TelnyxSender, TwilioSender, VonageSender, WhatsAppSender, iso


async def twilio_cases(gateway, tenant, _key):
    s = await TwilioSender.create(gateway, tenant)
    now = gateway.clock.now()
    ok = s.status("CA" + "c" * 32, "ringing", 1, now)
    return {
        "accepted": lambda: s.post(ok),
        "duplicate": lambda: s.post(ok),
        "bad_signature": lambda: s.post(ok, token="f" * 32),
        "stale": lambda: s.post(s.status("CA" + "d" * 32, "ringing", 1,
                                         now - timedelta(hours=25))),
        "rejected": lambda: s.post(s.status("CA" + "e" * 32, "exploded", 1, now)),
    }


async def telnyx_cases(gateway, tenant, _key):
    s = await TelnyxSender.create(gateway, tenant)
    now = gateway.clock.now()
    ok = s.event("call.initiated", {"call_leg_id": str(uuid.uuid4()), "direction": "incoming",
                                    "from": "+14155550100", "to": "+14155550199",
                                    "start_time": iso(now)}, now)
    return {
        "accepted": lambda: s.post(ok),
        "duplicate": lambda: s.post(ok),
        "bad_signature": lambda: s.post(ok, key=ed25519.Ed25519PrivateKey.generate()),
        "stale": lambda: s.post(ok, when=now - timedelta(minutes=10)),
        "rejected": lambda: s.post(b"not json"),
    }


async def vonage_cases(gateway, tenant, key):
    s = await VonageSender.create(gateway, tenant, key)
    now = gateway.clock.now()
    ok = {"uuid": str(uuid.uuid4()), "conversation_uuid": "CON-1", "status": "ringing",
          "direction": "inbound", "from": "447700900000", "to": "447700900001",
          "timestamp": iso(now)}
    return {
        "accepted": lambda: s.post(ok),
        "duplicate": lambda: s.post(ok),
        "bad_signature": lambda: s.post(ok, secret="z" * 32),
        "stale": lambda: s.post(ok, when=now - timedelta(minutes=10)),
        "rejected": lambda: s.post({**ok, "status": "exploded"}),
    }


async def whatsapp_cases(gateway, tenant, _key):
    s = await WhatsAppSender.create(gateway, tenant)
    now = gateway.clock.now()
    ok = s.notification(s.connect("wacid.abc", now))
    return {
        "accepted": lambda: s.post(ok),
        "duplicate": lambda: s.post(ok),
        "bad_signature": lambda: s.post(ok, secret="wrong"),
        "stale": lambda: s.post(s.notification(s.connect("wacid.old",
                                                         now - timedelta(days=8)))),
        "rejected": lambda: s.post(b'{"object": "whatsapp_business_account", "entry": 5}'),
    }


CASES = {"twilio": twilio_cases, "telnyx": telnyx_cases, "vonage": vonage_cases,
         "whatsapp": whatsapp_cases}
# A signed body the adapter cannot use is acknowledged and counted as rejected: a retry
# could never succeed (docs/platforms.md, "Unusable fields").
EXPECTED = {"accepted": 200, "duplicate": 200, "bad_signature": 401, "stale": 401,
            "rejected": 200}


@pytest.mark.parametrize("platform", sorted(CASES))
async def test_each_outcome_is_counted_per_platform(gateway, vonage_key, platform):
    tenant = await gateway.new_tenant("acme")
    cases = await CASES[platform](gateway, tenant, vonage_key)
    for outcome, send in cases.items():
        status, body, headers = await send()
        assert status == EXPECTED[outcome], (outcome, body)
        if status >= 400:
            assert headers["Content-Type"].startswith("application/problem+json")
            assert body["status"] == status and body["type"].startswith("urn:vgw:problem:")
    for outcome in EXPECTED:
        assert webhooks(gateway, platform, outcome) == 1, outcome
    for other in set(CASES) - {platform}:
        assert webhooks(gateway, other, "accepted") == 0
    assert await call_count(gateway) == 1
    text = (await gateway.request("GET", "/v1/calls", headers=tenant.auth))[1]
    assert len(text["items"]) == 1
