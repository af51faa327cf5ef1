"""Standard Webhooks adapter: the spec vector, the SDK, and the generic body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from adapters import (
    CallEvent,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    get_adapter,
    standard,
)

from .helpers import assert_contained, at, request

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
GOOD = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
BAD = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
CREDS = {"secret": SECRET}
adapter = get_adapter("standard")


def headers(signature: str, ts: int = TS, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def sdk_sign(body: bytes, ts: int = TS, msg_id: str = MSG_ID) -> str:
    try:
        text = body.decode()
    except UnicodeDecodeError:  # the SDK signs text only: sign raw bytes by the spec
        key = base64.b64decode(SECRET[6:])
        mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode()
    return Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), text)


def deliver(body: bytes, *, ts: int = TS, now: int = TS, msg_id: str = MSG_ID):
    req = request(headers=headers(sdk_sign(body, ts, msg_id), ts, msg_id), body=body)
    return adapter.verify_and_parse(req, CREDS, at(now))


# --- vectors ------------------------------------------------------------------------------


def test_spec_vector_verifies():
    standard.verify(request(headers=headers(GOOD), body=BODY), CREDS, at(TS))


def test_spec_vector_last_char_changed_fails():
    with pytest.raises(SignatureError) as err:
        standard.verify(request(headers=headers(BAD), body=BODY), CREDS, at(TS))
    assert err.value.outcome == "bad_signature"


def test_spec_vector_reaches_parser():
    # The vector's body is not a gateway event: authentic, then malformed (not a 401).
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(request(headers=headers(GOOD), body=BODY), CREDS, at(TS))
    assert err.value.field == "type"


def test_sdk_signature_matches_vector():
    assert sdk_sign(BODY) == GOOD


def test_secret_without_padding_or_prefix():
    unpadded = {"secret": SECRET.removeprefix("whsec_").rstrip("=")}
    standard.verify(request(headers=headers(GOOD), body=BODY), unpadded, at(TS))


@pytest.mark.parametrize(
    "signature",
    [
        f"v1,{'A' * 44} {GOOD}",  # several signatures: any match
        f"v2,{GOOD[3:]} {GOOD}",  # unknown versions skipped
        f"v1a,xyz {GOOD} v1,garbage!!",
        f"{GOOD} v1,{GOOD[3:].rstrip('=')}",
    ],
)
def test_multiple_signatures(signature):
    standard.verify(request(headers=headers(signature), body=BODY), CREDS, at(TS))


@pytest.mark.parametrize("signature", [f"v2,{GOOD[3:]}", GOOD[3:], "v1,", "v1", ""])
def test_no_acceptable_signature(signature):
    with pytest.raises(SignatureError):
        standard.verify(request(headers=headers(signature), body=BODY), CREDS, at(TS))


def test_missing_headers_is_missing_signature():
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        h = headers(GOOD)
        del h[name]
        with pytest.raises(SignatureError) as err:
            standard.verify(request(headers=h, body=BODY), CREDS, at(TS))
        assert err.value.outcome == "missing_signature"


def test_header_lookup_is_case_insensitive():
    h = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(TS), "Webhook-Signature": GOOD}
    standard.verify(request(headers=h, body=BODY), CREDS, at(TS))


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
def test_timestamp_window_both_directions(offset):
    with pytest.raises(SignatureError) as err:
        standard.verify(request(headers=headers(GOOD), body=BODY), CREDS, at(TS + offset))
    assert err.value.outcome == "stale"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamp_window_edges_accepted(offset):
    standard.verify(request(headers=headers(GOOD), body=BODY), CREDS, at(TS + offset))


def test_forged_and_stale_reports_bad_signature():
    with pytest.raises(SignatureError) as err:
        standard.verify(request(headers=headers(BAD), body=BODY), CREDS, at(TS + 10_000))
    assert err.value.outcome == "bad_signature"


def test_signature_over_other_id_fails():
    h = headers(GOOD, msg_id="msg_other")
    with pytest.raises(SignatureError):
        standard.verify(request(headers=h, body=BODY), CREDS, at(TS))


def test_error_message_says_nothing():
    with pytest.raises(SignatureError) as err:
        standard.verify(request(headers=headers(BAD), body=BODY), CREDS, at(TS))
    assert str(err.value) == "signature verification failed"


# --- credentials --------------------------------------------------------------------------


def test_validate_credentials_normalises():
    out = adapter.validate_credentials({"secret": SECRET.removeprefix("whsec_")})
    assert out == {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    assert base64.b64decode(out["secret"][6:])


@pytest.mark.parametrize(
    "creds",
    [{}, {"secret": ""}, {"secret": 5}, {"secret": "whsec_!!!"},
     {"secret": "whsec_" + base64.b64encode(b"x" * 23).decode()},
     {"secret": "whsec_" + base64.b64encode(b"x" * 65).decode()}],
)
def test_validate_credentials_rejects(creds):
    with pytest.raises(MalformedError) as err:
        adapter.validate_credentials(creds)
    assert err.value.field == "secret"
    value = creds.get("secret")
    if isinstance(value, str) and value:
        assert value not in str(err.value) and value[6:] not in str(err.value)


# --- the gateway's generic body -----------------------------------------------------------


def test_call_updated_maps_every_field():
    body = json.dumps({
        "type": "call.updated",
        "data": {"call_id": "c-1", "status": "completed", "direction": "outbound",
                 "from": "+14155550100", "to": "+14155550199",
                 "started_at": "2021-02-25T15:00:00Z", "ended_at": "2021-02-25T15:00:42+00:00",
                 "duration_seconds": 42, "extra": "dropped"},
    }).encode()
    [event] = deliver(body)
    assert event == CallEvent(
        platform="standard", dedupe_key=MSG_ID, platform_call_id="c-1", status="completed",
        direction="outbound", from_number="+14155550100", to_number="+14155550199",
        occurred_at=at(TS), started_at=datetime(2021, 2, 25, 15, 0, tzinfo=UTC),
        ended_at=datetime(2021, 2, 25, 15, 0, 42, tzinfo=UTC), duration_seconds=42,
    )


def test_call_updated_null_end():
    body = b'{"type":"call.updated","data":{"call_id":"c-1","status":"ringing","ended_at":null}}'
    [event] = deliver(body)
    assert event.status == "ringing" and event.ended_at is None


def test_recording_available():
    body = (b'{"type":"recording.available","data":{"call_id":"c-1",'
            b'"url":"https://media.example.com/r/1.wav","content_type":"audio/wav"}}')
    [rec] = deliver(body)
    assert isinstance(rec, RecordingAvailable)
    assert (rec.platform_call_id, rec.url, rec.content_type) == (
        "c-1", "https://media.example.com/r/1.wav", "audio/wav")
    assert adapter.recording_download(rec, CREDS, at(TS)) == (rec.url, {})


def test_unknown_type_is_dropped():
    assert deliver(b'{"type":"call.dtmf","data":{"digits":"1234"}}') == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"status": "ringing"}, "data.call_id"),
        ({"call_id": "c", "status": "ended"}, "data.status"),
        ({"call_id": "c", "direction": "sideways"}, "data.direction"),
        ({"call_id": "c", "duration_seconds": "forty"}, "data.duration_seconds"),
        ({"call_id": "c", "duration_seconds": -1}, "data.duration_seconds"),
        ({"call_id": "c", "duration_seconds": True}, "data.duration_seconds"),
        ({"call_id": "c", "started_at": "yesterday"}, "data.started_at"),
        ({"call_id": "c" * 300}, "data.call_id"),
        ({"call_id": "c", "from": "+1\n555"}, "data.from"),
        ({"call_id": ["c"]}, "data.call_id"),
    ],
)
def test_call_updated_malformed(data, field):
    body = json.dumps({"type": "call.updated", "data": data}).encode()
    with pytest.raises(MalformedError) as err:
        deliver(body)
    assert err.value.field == field
    assert_contained(err.value)


@pytest.mark.parametrize("url", ["http://media.example.com/r", "file:///etc/passwd",
                                 "https://user:pw@media.example.com/r", "https:///nohost",
                                 "https://media.example.com/ r"])
def test_recording_url_must_be_plain_https(url):
    body = json.dumps({"type": "recording.available", "data": {"call_id": "c", "url": url}})
    with pytest.raises(MalformedError) as err:
        deliver(body.encode())
    assert err.value.field == "data.url"


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[]", b'{"type": 1}',
                                  b'{"type":"call.updated","type":"x"}', b"NaN",
                                  b'{"type":"call.updated","data":{"call_id":"c","duration_seconds":NaN}}'])
def test_bad_bodies_are_malformed(body):
    with pytest.raises(MalformedError) as err:
        deliver(body)
    assert_contained(err.value)


def test_get_is_refused():
    with pytest.raises(MalformedError):
        adapter.verify_and_parse(request(method="GET", headers=headers(GOOD), body=BODY),
                                 CREDS, at(TS))


def test_own_hmac_matches_sdk():
    # Independent recomputation of the spec's construction.
    key = base64.b64decode(SECRET[6:])
    mac = hmac.new(key, f"{MSG_ID}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(mac).decode() == GOOD


def test_replay_window_covers_tolerance():
    assert adapter.replay_window >= timedelta(minutes=10)
