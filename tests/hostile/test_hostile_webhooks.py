"""Validly signed webhooks carrying hostile fields, for every platform, through real HTTP.

What must hold (issue 13, item 1): never a 5xx, and never an answer that makes the
platform retry a delivery that can never succeed (a poison message). A delivery with an
unusable field is answered 2xx and counted as `rejected`, or refused with a 4xx the
platform treats as final (docs/platforms.md, "Unusable fields"). Nothing unusable is stored.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.strategies import HOSTILE_TEXT, dumps, hostile_variants
from tests.ingest.helpers import webhooks
from tests.ingest.senders import TelnyxSender, TwilioSender, VonageSender, WhatsAppSender
from tests.support.server import RunningGateway
from tests.support.signers import call_updated, new_whsec, standard_delivery

EXAMPLES = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def assert_final(status: int, body) -> None:
    """A 2xx, or a 4xx (never 5xx, never 429): the platform stops retrying either way."""
    assert status < 500 and status != 429, (status, body)


async def test_signed_standard_webhook_with_a_lone_surrogate_is_rejected_not_retried(
        gateway: RunningGateway):
    """The report's poison message: `data.from` = "+1415\\ud800", validly signed."""
    tenant = await gateway.new_tenant("Poison Ltd")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    doc = call_updated("call-1", "completed", from_number="+1415\ud800")
    raw, headers = standard_delivery(secret, dumps(doc), gateway.clock.now())
    status, body, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert status == 200, body
    assert body["accepted"] == 0 and body["rejected"] == 1
    assert webhooks(gateway, "standard", "rejected") == 1
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert page["items"] == []
    # The platform's redelivery gets the same final answer.
    status, body, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert status == 200 and body["rejected"] == 1


@EXAMPLES
@given(data=st.data())
async def test_standard(gateway: RunningGateway, data):
    if not hasattr(gateway, "_hostile_standard"):
        tenant = await gateway.new_tenant("Standard Ltd")
        secret = new_whsec()
        integration = await gateway.integration(tenant, "standard", {"secret": secret})
        gateway._hostile_standard = (secret, integration)
    secret, integration = gateway._hostile_standard
    doc = call_updated(f"call-{uuid.uuid4()}", "completed",
                       started_at="2026-01-01T10:00:00Z", ended_at="2026-01-01T10:01:00Z",
                       duration=60)
    raw, headers = standard_delivery(secret, dumps(data.draw(hostile_variants(doc))),
                                     gateway.clock.now())
    status, body, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert_final(status, body)


@EXAMPLES
@given(data=st.data())
async def test_telnyx(gateway: RunningGateway, data):
    if not hasattr(gateway, "_hostile_telnyx"):
        gateway._hostile_telnyx = await TelnyxSender.create(
            gateway, await gateway.new_tenant("Telnyx Ltd"))
    sender = gateway._hostile_telnyx
    when = gateway.clock.now()
    doc = sender.event("call.hangup", {
        "call_control_id": f"v3:{uuid.uuid4()}", "call_leg_id": str(uuid.uuid4()),
        "call_session_id": str(uuid.uuid4()), "from": "+14155550100", "to": "+14155550199",
        "direction": "incoming", "state": "hangup", "hangup_cause": "normal_clearing",
        "start_time": (when - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        "end_time": when.isoformat().replace("+00:00", "Z")}, when)
    status, body, _ = await sender.post(dumps(data.draw(hostile_variants(doc))))
    assert_final(status, body)


@EXAMPLES
@given(data=st.data())
async def test_vonage(gateway: RunningGateway, data):
    if not hasattr(gateway, "_hostile_vonage"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        gateway._hostile_vonage = await VonageSender.create(
            gateway, await gateway.new_tenant("Vonage Ltd"), key)
    sender = gateway._hostile_vonage
    when = gateway.clock.now()
    doc = {"uuid": str(uuid.uuid4()), "conversation_uuid": f"CON-{uuid.uuid4()}",
           "status": "completed", "direction": "inbound", "from": "14155550100",
           "to": "14155550199", "duration": "60", "rate": "0.01", "price": "0.01",
           "start_time": (when - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
           "end_time": when.isoformat().replace("+00:00", "Z"),
           "timestamp": when.isoformat().replace("+00:00", "Z")}
    status, body, _ = await sender.post(dumps(data.draw(hostile_variants(doc))))
    assert_final(status, body)


@EXAMPLES
@given(data=st.data())
async def test_whatsapp(gateway: RunningGateway, data):
    if not hasattr(gateway, "_hostile_whatsapp"):
        gateway._hostile_whatsapp = await WhatsAppSender.create(
            gateway, await gateway.new_tenant("WhatsApp Ltd"))
    sender = gateway._hostile_whatsapp
    when = gateway.clock.now()
    doc = sender.notification(sender.terminate(
        f"wacid.{uuid.uuid4().hex}", when, start=when - timedelta(minutes=1), end=when))
    status, body, _ = await sender.post(dumps(data.draw(hostile_variants(doc))))
    assert_final(status, body)


@EXAMPLES
@given(field=st.sampled_from(["From", "To", "CallSid", "CallStatus", "Direction",
                              "SequenceNumber", "Timestamp", "CallDuration", "StartTime"]),
       value=st.sampled_from([t for t in HOSTILE_TEXT if t.encode("utf-8", "ignore")
                              .decode() == t] + ["99999999999999999999999", "-5",
                                                 "Fri, 31 Dec 9999 23:59:59 -2359"]))
async def test_twilio(gateway: RunningGateway, field, value):
    if not hasattr(gateway, "_hostile_twilio"):
        gateway._hostile_twilio = await TwilioSender.create(
            gateway, await gateway.new_tenant("Twilio Ltd"))
    sender = gateway._hostile_twilio
    params = sender.status("CA" + uuid.uuid4().hex, "completed", 3, gateway.clock.now(),
                           CallDuration="60")
    params[field] = value
    status, body, _ = await sender.post(params)
    assert_final(status, body)


async def test_twilio_form_with_invalid_utf8(gateway: RunningGateway):
    """Form fields percent-encoding bytes that are not UTF-8 (a surrogate's encoding)."""
    sender = await TwilioSender.create(gateway, await gateway.new_tenant("Twilio Bytes"))
    params = sender.status("CA" + uuid.uuid4().hex, "completed", 1, gateway.clock.now())
    body = urlencode(params).replace("From=%2B14155550100", "From=%2B1415%ED%A0%80")
    signature = sender.validator.compute_signature(sender.url, params)
    status, reply, _ = await sender.raw(body.encode(), {
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    assert_final(status, reply)
