"""Garbage in, only AdapterError out: for every adapter, random requests (headers, bodies,
encodings, huge fields) and properly signed garbage bodies that reach the parser."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from adapters import (
    PLATFORMS,
    AdapterError,
    CallEvent,
    HandshakeReply,
    RecordingAvailable,
    SignatureError,
    get_adapter,
)

from .helpers import (
    TELNYX_PUBLIC_KEY_B64,
    assert_contained,
    assert_declared_diagnostics,
    at,
    request,
    rsa_key_pem,
    telnyx_sign,
    whatsapp_sign,
)

NOW_TS = 1_700_000_000
NOW = at(NOW_TS)
# 100 examples per test keeps the suite fast on two shared cores; set ADAPTER_FUZZ_EXAMPLES
# for a deeper ad-hoc run (e.g. 5000) before changing a parser.
SETTINGS = settings(max_examples=int(os.environ.get("ADAPTER_FUZZ_EXAMPLES", "100")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
VONAGE_SECRET = "qwertyuiopasdfghjklzxcvbnm123456"
WA_SECRET = "test_app_secret"
VONAGE_APP = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def credentials(platform: str) -> dict:
    return {
        "standard": {"secret": STANDARD_SECRET},
        "twilio": {"account_sid": "AC" + TWILIO_TOKEN, "auth_token": TWILIO_TOKEN},
        "telnyx": {"public_key": TELNYX_PUBLIC_KEY_B64, "api_key": "KEYabc"},
        "vonage": {"signature_secret": VONAGE_SECRET, "application_id": VONAGE_APP,
                   "private_key": rsa_key_pem()[0]},
        "whatsapp": {"app_secret": WA_SECRET, "verify_token": "tok", "access_token": "t",
                     "phone_number_id": "123"},
    }[platform]


# --- strategies ---------------------------------------------------------------------------

HUGE = st.sampled_from(["x" * 70_000, "9" * 5_000, "+" * 300, "\u202e" * 1000, "\x00" * 10])
texts = st.text(max_size=40) | HUGE
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
TIMES = st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.123456+02:00", "1700000000",
                         "not a time", "", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])


HEADER_NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature", "x-twilio-signature",
                "telnyx-signature-ed25519", "telnyx-timestamp", "authorization",
                "x-hub-signature-256", "content-type"]
headers_st = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=20), texts, max_size=6)
methods = st.sampled_from(["POST", "GET", "PUT", "post", "", "DELETE"]) | st.text(max_size=8)
urls = st.sampled_from([
    "https://gw.example.com/hook", "https://gw.example.com:99999/x", "http://[::1/x",
    "https://gw.example.com/h?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1",
    "https://gw.example.com/h?bodySHA256=zz", "https://gw.example.com/h?a=%ff", "wss://h/x",
    "https://api.twilio.com/R", "https://api.nexmo.com/v1/files/1", "https://api.telnyx.com/x",
]) | st.text(max_size=60)
bodies = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())


def check(call) -> object:
    """Run an adapter call: it returns events/a handshake or raises an AdapterError that
    the adapter raised itself (never one the last-resort guard converted)."""
    try:
        result = call()
    except AdapterError as exc:
        assert_contained(exc)
        return exc
    assert isinstance(result, list | HandshakeReply)
    for event in result if isinstance(result, list) else []:
        assert isinstance(event, CallEvent | RecordingAvailable)
        if isinstance(event, CallEvent):
            assert_declared_diagnostics(event)
    return result


# --- 1. unsigned garbage ------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@SETTINGS
@given(method=methods, url=urls, headers=headers_st, body=bodies)
def test_random_requests(platform, method, url, headers, body):
    adapter = get_adapter(platform)
    check(lambda: adapter.verify_and_parse(request(method, url, headers, body),
                                           credentials(platform), NOW))


CRED_NAMES = ["secret", "account_sid", "auth_token", "public_key", "api_key",
              "signature_secret", "application_id", "private_key", "verify_signatures",
              "app_secret", "verify_token", "access_token", "phone_number_id"]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@SETTINGS
@given(creds=st.dictionaries(st.sampled_from(CRED_NAMES) | st.text(max_size=5), json_values,
                             max_size=8) | json_values)
def test_random_credentials(platform, creds):
    try:
        out = get_adapter(platform).validate_credentials(creds)
    except AdapterError as exc:
        assert_contained(exc)
        return
    assert isinstance(out, dict)


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@SETTINGS
@given(url=urls)
def test_random_recording_urls(platform, url):
    rec = RecordingAvailable(platform=platform, dedupe_key="k", platform_call_id="c",
                             platform_recording_id="r", url=url)
    try:
        out_url, headers = get_adapter(platform).recording_download(rec, credentials(platform), NOW)
    except AdapterError as exc:
        assert_contained(exc)
        return
    assert out_url.startswith("https://") and isinstance(headers, dict)


# --- 2. signed garbage: reach the parser --------------------------------------------------


def _standard_request(body: bytes, ts: int = NOW_TS):
    key = base64.b64decode(STANDARD_SECRET[6:])
    import hmac

    mac = hmac.new(key, f"msg_1.{ts}.".encode() + body, hashlib.sha256).digest()
    return request(headers={"webhook-id": "msg_1", "webhook-timestamp": str(ts),
                            "webhook-signature": "v1," + base64.b64encode(mac).decode()}, body=body)


def _telnyx_request(body: bytes):
    return request(headers={"telnyx-timestamp": str(NOW_TS),
                            "telnyx-signature-ed25519": telnyx_sign(str(NOW_TS), body)}, body=body)


def _vonage_request(body: bytes):
    token = jwt.encode({"iat": NOW_TS, "payload_hash": hashlib.sha256(body).hexdigest()},
                       VONAGE_SECRET, algorithm="HS256")
    return request(headers={"authorization": f"Bearer {token}"}, body=body)


def _whatsapp_request(body: bytes):
    return request(headers={"x-hub-signature-256": whatsapp_sign(WA_SECRET, body)}, body=body)


SIGNERS = {"standard": _standard_request, "telnyx": _telnyx_request,
           "vonage": _vonage_request, "whatsapp": _whatsapp_request}


def _assert_reached_parser(result) -> None:
    if isinstance(result, SignatureError):
        assert result.outcome == "stale", "a correctly signed delivery was refused as forged"



# Realistic documents per platform; the mutator below damages them a little so that most
# examples travel deep into the parser and some come out as events.
T0 = "2023-11-14T22:13:20Z"
BASE_DOCS = {
    "standard": [
        {"type": "call.updated", "data": {"call_id": "c1", "status": "completed",
         "direction": "inbound", "from": "+14155550100", "to": "+14155550199",
         "started_at": T0, "ended_at": None, "duration_seconds": 42}},
        {"type": "recording.available", "data": {"call_id": "c1", "url": "https://m.example/r",
         "content_type": "audio/wav"}},
    ],
    "telnyx": [
        {"data": {"event_type": "call.hangup", "id": "e1", "occurred_at": T0, "payload": {
            "call_leg_id": "leg", "call_control_id": "v3:x", "call_session_id": "s",
            "from": "+1", "to": "+2", "direction": "incoming", "start_time": T0,
            "hangup_cause": "user_busy", "hangup_source": "callee", "sip_hangup_cause": "486",
            "call_quality_stats": {"inbound": {"mos": "4.5", "packet_count": "10"},
                                   "outbound": {"jitter_max_variance": 1.5}}}},
         "meta": {"attempt": 1}},
        {"data": {"event_type": "call.initiated", "id": "e0", "occurred_at": T0, "payload": {
            "call_leg_id": "leg", "direction": "outgoing", "from": "+1", "to": "+2"}}},
        {"data": {"event_type": "call.recording.saved", "id": "e2", "occurred_at": T0, "payload": {
            "call_leg_id": "leg", "channels": "single", "recording_id": "r",
            "recording_started_at": T0, "recording_ended_at": "2023-11-14T22:14:20Z",
            "recording_urls": {"wav": "https://s3.amazonaws.com/x.wav"}}}},
    ],
    "vonage": [
        {"uuid": "u1", "conversation_uuid": "CON-1", "status": "completed", "direction": "outbound",
         "from": "447700900000", "to": "447700900001", "timestamp": "2023-11-14T22:13:20.000Z",
         "start_time": T0, "end_time": "2023-11-14T22:14:02Z", "duration": "42",
         "disconnected_by": "user"},
        {"recording_url": "https://api.nexmo.com/v1/files/1", "recording_uuid": "r1",
         "conversation_uuid": "CON-1", "start_time": T0, "end_time": T0, "size": 10,
         "timestamp": T0},
    ],
    "whatsapp": [
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "calls", "value": {
                "metadata": {"phone_number_id": "123"},
                "calls": [
                    {"id": "wacid.1", "event": "connect", "timestamp": str(NOW_TS),
                     "direction": "USER_INITIATED", "from": "1", "to": "2",
                     "session": {"sdp_type": "offer", "sdp": "v=0\r\n"}},
                    {"id": "wacid.1", "event": "terminate", "timestamp": str(NOW_TS),
                     "status": "Completed", "start_time": str(NOW_TS - 5),
                     "end_time": NOW_TS * 1000, "duration": 5, "errors": [{"code": 1}]}],
                "statuses": [{"type": "call", "id": "wacid.2", "status": "ACCEPTED",
                              "timestamp": str(NOW_TS)}]}}]}]},
    ],
}


def _slots(node, out):
    """Every (container, key) in a JSON document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in list(items):
        out.append((node, key))
        _slots(child, out)
    return out


@st.composite
def mutated(draw, platform):
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCS[platform])))
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if draw(st.booleans()) and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(json_values | TIMES)
    return doc


@pytest.mark.parametrize("platform", sorted(SIGNERS))
@SETTINGS
@given(data=st.data())
def test_signed_garbage_reaches_parser(platform, data):
    doc = data.draw(mutated(platform) | json_values, label="doc")
    encoding = data.draw(st.sampled_from(["compact", "pretty", "ascii", "latin1", "raw"]))
    if encoding == "raw":
        body = data.draw(st.binary(max_size=200))
    elif encoding == "latin1":
        body = json.dumps(doc, ensure_ascii=False).encode("latin-1", "replace")
    else:
        body = json.dumps(doc, ensure_ascii=encoding == "ascii",
                          indent=2 if encoding == "pretty" else None).encode()
    result = check(lambda: get_adapter(platform).verify_and_parse(
        SIGNERS[platform](body), credentials(platform), NOW))
    _assert_reached_parser(result)


twilio_params = st.dictionaries(
    st.sampled_from(["CallSid", "CallStatus", "Direction", "From", "To", "CallDuration",
                     "Timestamp", "SequenceNumber", "RecordingSid", "RecordingStatus",
                     "RecordingUrl", "RecordingDuration", "RecordingChannels", "ErrorCode",
                     "CallbackSource", "Digits"]) | st.text(min_size=1, max_size=10),
    st.lists(
        st.sampled_from(["CA1", "completed", "initiated", "outbound-dial", "42", "-1", "",
                         format_datetime(datetime.fromtimestamp(NOW_TS, UTC)),
                         "Tue, 99 Jan 2025 19:01:39 +0000", "RE1", "https://api.twilio.com/R",
                         "2", "9" * 30]) | texts.filter(lambda t: len(t) < 1000),
        min_size=1, max_size=2),
    max_size=10,
)


@SETTINGS
@given(params=twilio_params, as_json=st.booleans())
def test_twilio_signed_garbage_reaches_parser(params, as_json):
    validator = RequestValidator(TWILIO_TOKEN)
    if as_json:
        body = json.dumps({k: v[0] for k, v in params.items()}).encode()
        url = f"https://gw.example.com/hook?bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = validator.compute_signature(url, {})
    else:
        pairs = [(k, v) for k, values in params.items() for v in values]
        body = urlencode(pairs).encode()
        url = "https://gw.example.com/hook"

        class Multi(dict):
            def getall(self, name):
                return [v for k, v in pairs if k == name]

        signature = validator.compute_signature(url, Multi(pairs))
    req = request(url=url, headers={"x-twilio-signature": signature}, body=body)
    result = check(lambda: get_adapter("twilio").verify_and_parse(req, credentials("twilio"), NOW))
    _assert_reached_parser(result)


# --- explicit size limits -----------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_oversized_body_is_malformed(platform):
    from adapters import MalformedError

    body = b"{" + b" " * (1 << 20) + b"}"
    with pytest.raises(AdapterError) as err:
        get_adapter(platform).verify_and_parse(
            request(headers={"x-twilio-signature": "x"}, body=body), credentials(platform), NOW)
    assert isinstance(err.value, MalformedError | SignatureError)
    assert_contained(err.value)


@pytest.mark.parametrize("platform", sorted(SIGNERS))
def test_deeply_nested_signed_json(platform):
    body = b"[" * 100_000 + b"]" * 100_000
    check(lambda: get_adapter(platform).verify_and_parse(SIGNERS[platform](body),
                                                         credentials(platform), NOW))
