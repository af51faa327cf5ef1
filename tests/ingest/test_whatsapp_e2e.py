"""WhatsApp Business Calling end to end: the subscription handshake, X-Hub-Signature-256
signed calls webhooks through real HTTP, duplicates and out of order. Metadata only: the
platform has no recordings to fetch."""

from __future__ import annotations

from datetime import timedelta

from .helpers import (
    assert_invisible_to_other_tenant,
    at,
    call_count,
    only_call,
    settle,
    webhooks,
)
from .senders import WhatsAppSender

WACID = "wacid.HBgLMTQxNTU1NTAxMDAVAgARGCBBQ0I1NDc2RDQ3NkU1NTk3QTg3MDg4RjA4QkMxRTI4NQA="


async def test_subscription_handshake(gateway):
    tenant = await gateway.new_tenant("acme")
    whatsapp = await WhatsAppSender.create(gateway, tenant)
    status, body, headers = await whatsapp.handshake(whatsapp.verify_token, "1158201444")
    assert status == 200 and body == b"1158201444"
    assert headers["Content-Type"].startswith("text/plain")
    status, problem, headers = await whatsapp.handshake("wrong-token")
    assert status == 403 and headers["Content-Type"].startswith("application/problem+json")
    assert webhooks(gateway, "whatsapp", "handshake") == 1
    assert webhooks(gateway, "whatsapp", "bad_handshake") == 1


async def test_calls_webhook_connect_terminate_out_of_order_with_duplicates(gateway,
                                                                            fake_platform):
    tenant = await gateway.new_tenant("acme")
    whatsapp = await WhatsAppSender.create(gateway, tenant)
    t0 = gateway.clock.now() - timedelta(minutes=2)
    connect = whatsapp.notification(whatsapp.connect(WACID, t0))
    terminate = whatsapp.notification(whatsapp.terminate(
        WACID, t0 + timedelta(seconds=70), start=t0 + timedelta(seconds=10),
        end=t0 + timedelta(seconds=70)))
    for doc in (terminate, connect, terminate, connect):
        status, body, _ = await whatsapp.post(doc)
        assert status == 200, body
    assert webhooks(gateway, "whatsapp", "accepted") == 2
    assert webhooks(gateway, "whatsapp", "duplicate") == 2
    call = await only_call(gateway, tenant)
    assert call["platform"] == "whatsapp" and call["platform_call_id"] == WACID
    assert (call["status"], call["direction"]) == ("completed", "inbound")
    # WhatsApp writes numbers without '+': stored and served as E.164.
    assert (call["from"], call["to"]) == ("+14155550100", "+15550001111")
    assert at(call["started_at"]) == t0 + timedelta(seconds=10)
    assert at(call["ended_at"]) == t0 + timedelta(seconds=70)
    assert call["duration_seconds"] == 60
    await settle(gateway)
    call = await only_call(gateway, tenant)
    assert call["recordings"] == [] and call["recording_fetches"] == []
    assert fake_platform.requests == []
    await assert_invisible_to_other_tenant(gateway, call)


async def test_other_fields_and_other_numbers_are_dropped(gateway):
    tenant = await gateway.new_tenant("acme")
    whatsapp = await WhatsAppSender.create(gateway, tenant)
    now = gateway.clock.now()
    messages = whatsapp.notification()
    messages["entry"][0]["changes"][0]["field"] = "messages"
    other_number = whatsapp.notification(whatsapp.connect(WACID, now))
    other_number["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    for doc in (messages, other_number):
        status, body, _ = await whatsapp.post(doc)
        assert status == 200 and body == {"accepted": 0, "duplicates": 0}
    assert await call_count(gateway) == 0


async def test_forged_and_replayed_deliveries_are_refused(gateway):
    tenant = await gateway.new_tenant("acme")
    whatsapp = await WhatsAppSender.create(gateway, tenant)
    now = gateway.clock.now()
    doc = whatsapp.notification(whatsapp.connect(WACID, now))
    status, problem, _ = await whatsapp.post(doc, secret="not-the-app-secret")
    assert status == 401 and problem["type"] == "urn:vgw:problem:invalid-signature"
    # Meta signs no timestamp: the call's own timestamp bounds replays (7 days + 1 hour).
    old = whatsapp.notification(whatsapp.connect(WACID, now - timedelta(days=7, hours=2)))
    assert (await whatsapp.post(old))[0] == 401
    late = whatsapp.notification(whatsapp.connect(WACID, now - timedelta(days=7)))
    assert (await whatsapp.post(late))[0] == 200        # a retry after a long outage
    gateway.clock.advance(hours=2)
    assert (await whatsapp.post(late))[0] == 401        # replayed beyond the window
    assert webhooks(gateway, "whatsapp", "bad_signature") == 1
    assert webhooks(gateway, "whatsapp", "stale") == 2
    assert webhooks(gateway, "whatsapp", "accepted") == 1
