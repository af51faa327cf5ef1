"""WhatsApp adapter: the derived vector, the subscription handshake, call mappings."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from adapters import (
    CallEvent,
    HandshakeError,
    HandshakeReply,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    get_adapter,
    whatsapp,
)

from .helpers import assert_contained, assert_declared_diagnostics, at, request, whatsapp_sign

SECRET = "test_app_secret"
CREDS = {"app_secret": SECRET, "verify_token": "verify-me-please", "access_token": "EAAG...",
         "phone_number_id": "106540352242922"}
VECTOR_BODY = b'{"object":"whatsapp_business_account","entry":[]}'
VECTOR_SIG = "sha256=dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756"
TS = 1_750_000_000
adapter = get_adapter("whatsapp")


def post(body: bytes, signature: str | None = None):
    sig = whatsapp_sign(SECRET, body) if signature is None else signature
    return request(headers={"x-hub-signature-256": sig}, body=body)


def deliver(doc: dict, now: int = TS, credentials=CREDS):
    return adapter.verify_and_parse(post(json.dumps(doc).encode()), credentials, at(now))


def notification(*calls, phone_number_id: str = CREDS["phone_number_id"], statuses=None) -> dict:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
             "contacts": [{"profile": {"name": "Alice"}, "wa_id": "13175551399"}],
             "calls": copy.deepcopy(list(calls))}
    if statuses is not None:
        value["statuses"] = copy.deepcopy(statuses)
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "calls", "value": value}]}]}


SDP_OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
CONNECT = {"id": "wacid.HBgLMTMxNzU1NTEzOTkVAgARGCAyQjRBQ0Y", "to": "15550783881",
           "from": "13175551399", "event": "connect", "timestamp": str(TS - 5),
           "direction": "USER_INITIATED", "session": {"sdp_type": "offer", "sdp": SDP_OFFER}}
TERMINATE = {"id": CONNECT["id"], "to": "15550783881", "from": "13175551399",
             "event": "terminate", "direction": "USER_INITIATED",
             "biz_opaque_callback_data": "free text about Alice", "timestamp": str(TS),
             "status": "Completed", "start_time": str(TS - 65), "end_time": str(TS),
             "duration": 65}


# --- vector and signature -----------------------------------------------------------------


def test_vector_verifies():
    whatsapp.verify(post(VECTOR_BODY, VECTOR_SIG), CREDS)
    assert adapter.verify_and_parse(post(VECTOR_BODY, VECTOR_SIG), CREDS, at(TS)) == []


def test_helper_reproduces_vector():
    assert whatsapp_sign(SECRET, VECTOR_BODY) == VECTOR_SIG


def test_uppercase_hex_accepted():
    whatsapp.verify(post(VECTOR_BODY, "sha256=" + VECTOR_SIG[7:].upper()), CREDS)


@pytest.mark.parametrize("signature", [
    VECTOR_SIG[:-1] + "7", "sha1=" + VECTOR_SIG[7:], VECTOR_SIG[7:], "sha256=", "sha256=zz",
])
def test_bad_signatures(signature):
    with pytest.raises(SignatureError) as err:
        whatsapp.verify(post(VECTOR_BODY, signature), CREDS)
    assert err.value.outcome == "bad_signature"


def test_signature_is_over_raw_bytes():
    reformatted = json.dumps(json.loads(VECTOR_BODY)).encode()  # same JSON, other bytes
    with pytest.raises(SignatureError):
        whatsapp.verify(post(reformatted, VECTOR_SIG), CREDS)


def test_missing_signature():
    with pytest.raises(SignatureError) as err:
        adapter.verify_and_parse(request(body=VECTOR_BODY), CREDS, at(TS))
    assert err.value.outcome == "missing_signature"


# --- handshake ----------------------------------------------------------------------------


def hub(query: str):
    return adapter.verify_and_parse(
        request(method="GET", url=f"https://gw.example.com/v1/hooks/whatsapp/1?{query}"),
        CREDS, at(TS))


def test_handshake_ok():
    reply = hub("hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=1158201444")
    assert reply == HandshakeReply(status=200, body="1158201444")


@pytest.mark.parametrize("query", [
    "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
    "hub.mode=subscribe&hub.challenge=1",
    "hub.mode=subscribe&hub.verify_token=verify-me-pleasE&hub.challenge=1",
])
def test_handshake_wrong_token_is_403(query):
    with pytest.raises(HandshakeError) as err:
        hub(query)
    assert err.value.status == 403 and isinstance(err.value, SignatureError)
    assert "verify-me" not in str(err.value)


@pytest.mark.parametrize(("query", "field"), [
    ("hub.verify_token=verify-me-please&hub.challenge=1", "hub.mode"),
    ("hub.mode=unsubscribe&hub.verify_token=verify-me-please&hub.challenge=1", "hub.mode"),
    ("hub.mode=subscribe&hub.verify_token=verify-me-please", "hub.challenge"),
    ("hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=%3Cscript%3E", "hub.challenge"),
    ("hub.mode=subscribe&hub.verify_token=verify-me-please&hub.verify_token=x&hub.challenge=1",
     "hub.verify_token"),
])
def test_handshake_malformed(query, field):
    with pytest.raises(MalformedError) as err:
        hub(query)
    assert err.value.field == field


# --- mapping ------------------------------------------------------------------------------


def test_connect_then_terminate():
    [connect] = deliver(notification(CONNECT))
    assert connect == CallEvent(
        platform="whatsapp", dedupe_key=f"{CONNECT['id']}:connect", platform_call_id=CONNECT["id"],
        status="ringing", direction="inbound", from_number="13175551399",
        to_number="15550783881", occurred_at=at(TS - 5), sdp_offer=SDP_OFFER,
    )
    [terminate] = deliver(notification(TERMINATE))
    assert terminate == CallEvent(
        platform="whatsapp", dedupe_key=f"{CONNECT['id']}:terminate",
        platform_call_id=CONNECT["id"], status="completed", direction="inbound",
        from_number="13175551399", to_number="15550783881", occurred_at=at(TS),
        started_at=at(TS - 65), ended_at=at(TS), duration_seconds=65,
    )
    assert "Alice" not in repr(terminate)


def test_sdp_offer_not_in_repr():
    [connect] = deliver(notification(CONNECT))
    assert "UDP/TLS" not in repr(connect)


def test_business_initiated_connect_is_answered():
    call = {**CONNECT, "direction": "BUSINESS_INITIATED",
            "session": {"sdp_type": "answer", "sdp": SDP_OFFER}}
    [event] = deliver(notification(call))
    assert (event.status, event.direction, event.sdp_offer) == ("in-progress", "outbound", None)


@pytest.mark.parametrize(("status", "duration", "canonical"), [
    ("FAILED", 0, "failed"), ("completed", 10, "completed"), ("Rejected", 0, "failed"),
    (None, 12, "completed"), ("whatever", 0, "failed"),
])
def test_terminate_statuses(status, duration, canonical):
    call = {**TERMINATE, "status": status, "duration": duration}
    [event] = deliver(notification(call))
    assert event.status == canonical


def test_terminate_error_codes_kept_text_dropped():
    call = {**TERMINATE, "status": "Failed",
            "errors": [{"code": 138006, "title": "Alice did not pick up"}]}
    [event] = deliver(notification(call))
    assert event.diagnostics == {"error_codes": ["138006"]}
    assert_declared_diagnostics(event)


def test_millisecond_times_accepted():
    call = {**TERMINATE, "start_time": (TS - 65) * 1000, "end_time": TS * 1000}
    [event] = deliver(notification(call))
    assert (event.started_at, event.ended_at) == (at(TS - 65), at(TS))


def test_batch_and_other_fields():
    doc = notification(CONNECT, TERMINATE)
    doc["entry"][0]["changes"].append({"field": "messages", "value": {"messages": [{"text": "hi"}]}})
    events = deliver(doc)
    assert [e.dedupe_key.rsplit(":", 1)[1] for e in events] == ["connect", "terminate"]


def test_other_phone_number_dropped():
    assert deliver(notification(CONNECT, phone_number_id="999")) == []


def test_business_call_status_updates():
    statuses = [{"id": CONNECT["id"], "type": "call", "status": "RINGING", "timestamp": str(TS),
                 "recipient_id": "13175551399"},
                {"id": "wamid.x", "status": "delivered", "timestamp": str(TS)}]
    [event] = deliver(notification(statuses=statuses))
    assert (event.status, event.direction, event.dedupe_key) == (
        "ringing", "outbound", f"{CONNECT['id']}:status:ringing")


def test_unknown_call_event_dropped():
    assert deliver(notification({**CONNECT, "event": "hold"})) == []


# --- replay bound -------------------------------------------------------------------------


@pytest.mark.parametrize("age", [whatsapp.MAX_EVENT_AGE + timedelta(seconds=1),
                                 -timedelta(minutes=5, seconds=1)])
def test_stale_call_timestamp(age):
    call = {**CONNECT, "timestamp": str(TS - int(age.total_seconds()))}
    with pytest.raises(SignatureError) as err:
        deliver(notification(call))
    assert err.value.outcome == "stale"


def test_old_but_within_meta_retry_window():
    call = {**CONNECT, "timestamp": str(TS - 6 * 24 * 3600)}
    assert deliver(notification(call))[0].status == "ringing"


def test_missing_timestamp_accepted():
    call = {k: v for k, v in CONNECT.items() if k != "timestamp"}
    assert deliver(notification(call))[0].occurred_at is None


# --- malformed ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["entry"][0].__setitem__("changes", "x"), "entry[0].changes"),
    (lambda d: d["entry"][0]["changes"][0]["value"]["calls"][0].pop("id"),
     "entry[0].changes[0].value.calls[0].id"),
    (lambda d: d["entry"][0]["changes"][0]["value"]["calls"][0].__setitem__("timestamp", "soon"),
     "entry[0].changes[0].value.calls[0].timestamp"),
    (lambda d: d["entry"][0]["changes"][0]["value"]["calls"][0]["session"].__setitem__("sdp", "\x00"),
     "entry[0].changes[0].value.calls[0].session.sdp"),
    (lambda d: d.__setitem__("entry", [1]), "entry[0]"),
])
def test_malformed(mutate, field):
    doc = notification(CONNECT)
    mutate(doc)
    with pytest.raises(MalformedError) as err:
        deliver(doc)
    assert err.value.field == field
    assert_contained(err.value)


def test_no_recordings():
    rec = RecordingAvailable(platform="whatsapp", dedupe_key="k", platform_call_id="c",
                             platform_recording_id="r", url="https://example.com/x")
    with pytest.raises(MalformedError):
        adapter.recording_download(rec, CREDS, at(TS))


def test_prepare_answer_sdp_keeps_only_sha256_fingerprints():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AB:CD\r\n"
           "a=fingerprint:sha-384 EF:01\r\na=fingerprint:sha-512 23:45\r\na=setup:active\r\n")
    assert whatsapp.prepare_answer_sdp(sdp) == (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AB:CD\r\n"
        "a=setup:active\r\n")


def test_validate_credentials():
    assert adapter.validate_credentials({**CREDS, "x": 1}) == CREDS
    for name in CREDS:
        with pytest.raises(MalformedError) as err:
            adapter.validate_credentials({k: v for k, v in CREDS.items() if k != name})
        assert err.value.field == name
    with pytest.raises(MalformedError) as err:
        adapter.validate_credentials({**CREDS, "phone_number_id": "+1 555"})
    assert err.value.field == "phone_number_id"
