"""Telnyx adapter: the derived vector, the RFC 8032 primitive check, mappings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from adapters import (
    CallEvent,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    get_adapter,
    telnyx,
)

from .helpers import (
    TELNYX_PUBLIC_KEY_B64,
    assert_contained,
    assert_declared_diagnostics,
    at,
    request,
    telnyx_sign,
)

TS = 1700000000
VECTOR_BODY = b'{"data":{"event_type":"call.hangup","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"}}'
VECTOR_SIG = ("RmHAa1XgoWQoXUq+UulYKVrfjsxIasWWFupfTB8oXOb7Vx4+abrmL6sacp+LpWglWJ1gsZxl7zCufwt0"
              "ZRl1AQ==")
CREDS = {"public_key": TELNYX_PUBLIC_KEY_B64, "api_key": "KEY0123456789ABCDEF_secret"}
adapter = get_adapter("telnyx")


def req(body: bytes, signature: str | None = None, ts: int = TS):
    sig = telnyx_sign(str(ts), body) if signature is None else signature
    return request(headers={"telnyx-signature-ed25519": sig, "telnyx-timestamp": str(ts)},
                   body=body)


def deliver(doc: dict, ts: int = TS, now: int = TS):
    return adapter.verify_and_parse(req(json.dumps(doc).encode(), ts=ts), CREDS, at(now))


# --- vectors ------------------------------------------------------------------------------


def test_vector_verifies():
    telnyx.verify(req(VECTOR_BODY, VECTOR_SIG), CREDS, at(TS))


def test_helper_reproduces_vector():
    assert telnyx_sign(str(TS), VECTOR_BODY) == VECTOR_SIG


def test_vector_reaches_parser_then_is_malformed():
    # The vector body is authentic but has no payload.
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(req(VECTOR_BODY, VECTOR_SIG), CREDS, at(TS))
    assert err.value.field == "data.payload"


@pytest.mark.parametrize("mutation", ["body", "timestamp", "signature"])
def test_vector_tampered_fails(mutation):
    body, sig, ts = VECTOR_BODY, VECTOR_SIG, TS
    if mutation == "body":
        body = body.replace(b"hangup", b"answer")
    elif mutation == "timestamp":
        ts = TS + 1
    else:
        raw = bytearray(base64.b64decode(sig))
        raw[0] ^= 1
        sig = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError) as err:
        telnyx.verify(req(body, sig, ts), CREDS, at(TS))
    assert err.value.outcome == "bad_signature"


def test_rfc8032_test1_primitive():
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
    key.verify(bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"), b"")
    assert base64.b64encode(key.public_bytes_raw()).decode() == TELNYX_PUBLIC_KEY_B64


@pytest.mark.parametrize("offset", [-301, 301])
def test_tolerance_both_directions(offset):
    with pytest.raises(SignatureError) as err:
        telnyx.verify(req(VECTOR_BODY, VECTOR_SIG), CREDS, at(TS + offset))
    assert err.value.outcome == "stale"


@pytest.mark.parametrize("offset", [-300, 300])
def test_tolerance_edges(offset):
    telnyx.verify(req(VECTOR_BODY, VECTOR_SIG), CREDS, at(TS + offset))


@pytest.mark.parametrize("headers", [{}, {"telnyx-timestamp": str(TS)},
                                     {"telnyx-signature-ed25519": VECTOR_SIG}])
def test_missing_headers(headers):
    with pytest.raises(SignatureError) as err:
        telnyx.verify(request(headers=headers, body=VECTOR_BODY), CREDS, at(TS))
    assert err.value.outcome == "missing_signature"


@pytest.mark.parametrize("sig", ["not base64!", base64.b64encode(b"x" * 63).decode(),
                                 VECTOR_SIG.rstrip("=")])
def test_bad_signature_encodings(sig):
    if sig == VECTOR_SIG.rstrip("="):  # lenient padding: still valid
        telnyx.verify(req(VECTOR_BODY, sig), CREDS, at(TS))
        return
    with pytest.raises(SignatureError):
        telnyx.verify(req(VECTOR_BODY, sig), CREDS, at(TS))


@pytest.mark.parametrize("ts", ["1700000000.5", "-1700000000", " ", "1e9", "١٧٠٠٠٠٠٠٠٠"])
def test_bad_timestamp_header(ts):
    headers = {"telnyx-signature-ed25519": VECTOR_SIG, "telnyx-timestamp": ts}
    with pytest.raises(SignatureError):
        telnyx.verify(request(headers=headers, body=VECTOR_BODY), CREDS, at(TS))


# --- mapping ------------------------------------------------------------------------------

PAYLOAD = {
    "call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
    "connection_id": "7267xxxxxxxxxxxxxx",
    "call_leg_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
    "call_session_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c2",
    "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
    "from": "+35319605860",
    "to": "+35319605861",
    "direction": "incoming",
    "start_time": "2018-02-02T22:20:27.521992Z",
    "state": "parked",
}


def envelope(event_type: str, payload: dict, event_id: str = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
             occurred_at: str = "2018-02-02T22:25:27.521992Z") -> dict:
    return {"data": {"record_type": "event", "event_type": event_type, "id": event_id,
                     "occurred_at": occurred_at, "payload": payload},
            "meta": {"attempt": 1, "delivered_to": "https://gw.example.com/hook"}}


def test_call_lifecycle():
    [initiated] = deliver(envelope("call.initiated", PAYLOAD, event_id="e1"))
    [answered] = deliver(envelope("call.answered", {**PAYLOAD, "state": "answered"}, event_id="e2"))
    assert (initiated.status, answered.status) == ("ringing", "in-progress")
    assert initiated.direction == "inbound"
    assert initiated.platform_call_id == PAYLOAD["call_control_id"]
    assert initiated.platform_session_id == PAYLOAD["call_session_id"]
    assert initiated.dedupe_key == "e1"
    assert initiated.started_at == datetime(2018, 2, 2, 22, 20, 27, 521992, tzinfo=UTC)


def test_outgoing_initiated_is_queued():
    [event] = deliver(envelope("call.initiated", {**PAYLOAD, "direction": "outgoing"}))
    assert (event.status, event.direction) == ("queued", "outbound")


def test_hangup_with_quality_stats():
    payload = {
        **PAYLOAD, "state": "hangup", "hangup_cause": "normal_clearing",
        "hangup_source": "caller", "sip_hangup_cause": "200",
        "call_quality_stats": {
            "inbound": {"jitter_max_variance": "2.74", "jitter_packet_count": "0",
                        "mos": "4.50", "packet_count": "591", "skip_packet_count": "9",
                        "codec": "PCMU"},
            "outbound": {"packet_count": "0", "skip_packet_count": "0", "mos": "n/a"},
            "extra": {"mos": "1"},
        },
    }
    [event] = deliver(envelope("call.hangup", payload))
    assert event == CallEvent(
        platform="telnyx", dedupe_key="0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
        platform_call_id=PAYLOAD["call_control_id"], platform_session_id=PAYLOAD["call_session_id"],
        status="completed", direction="inbound", from_number="+35319605860",
        to_number="+35319605861",
        occurred_at=datetime(2018, 2, 2, 22, 25, 27, 521992, tzinfo=UTC),
        started_at=datetime(2018, 2, 2, 22, 20, 27, 521992, tzinfo=UTC),
        ended_at=datetime(2018, 2, 2, 22, 25, 27, 521992, tzinfo=UTC),
        diagnostics={
            "hangup_cause": "normal_clearing", "hangup_source": "caller",
            "sip_hangup_cause": "200",
            "call_quality_stats": {
                "inbound": {"jitter_max_variance": 2.74, "jitter_packet_count": 0, "mos": 4.5,
                            "packet_count": 591, "skip_packet_count": 9},
                "outbound": {"packet_count": 0, "skip_packet_count": 0},
            },
        },
    )
    assert "aGF2" not in repr(event)  # client_state dropped
    assert_declared_diagnostics(event)


@pytest.mark.parametrize(("cause", "status"), [
    ("user_busy", "busy"), ("timeout", "no-answer"), ("originator_cancel", "canceled"),
    ("call_rejected", "failed"), ("unspecified", "completed"), (None, "completed"),
    ("Robert'); DROP TABLE", "completed"),
])
def test_hangup_causes(cause, status):
    payload = {**PAYLOAD, "hangup_cause": cause} if cause else PAYLOAD
    [event] = deliver(envelope("call.hangup", payload))
    assert event.status == status
    assert event.diagnostics.get("hangup_cause") == (cause if cause in telnyx.HANGUP_STATUS or cause == "unspecified" else None)


def test_recording_saved_and_download():
    payload = {
        "call_control_id": PAYLOAD["call_control_id"], "call_leg_id": PAYLOAD["call_leg_id"],
        "call_session_id": PAYLOAD["call_session_id"], "channels": "dual",
        "recording_id": "10cd86ac-fef8-4765-b203-0f7511f9fc75",
        "recording_started_at": "2022-02-04T11:36:08.148619Z",
        "recording_ended_at": "2022-02-04T11:36:12.788447Z",
        "recording_urls": {
            "mp3": "https://s3.amazonaws.com/telephony-recorder-prod/a.mp3?X-Amz-Expires=600",
            "wav": "https://s3.amazonaws.com/telephony-recorder-prod/a.wav?X-Amz-Expires=600",
        },
        "public_recording_urls": {},
    }
    [rec] = deliver(envelope("call.recording.saved", payload, event_id="r1"))
    assert rec == RecordingAvailable(
        platform="telnyx", dedupe_key="r1", platform_call_id=PAYLOAD["call_control_id"],
        platform_recording_id="10cd86ac-fef8-4765-b203-0f7511f9fc75",
        url=payload["recording_urls"]["wav"], content_type="audio/wav", duration_seconds=4,
        channels=2, occurred_at=datetime(2018, 2, 2, 22, 25, 27, 521992, tzinfo=UTC),
        platform_session_id=PAYLOAD["call_session_id"],
    )
    # Pre-signed S3 URL: no Authorization header (S3 refuses two auth mechanisms, and the
    # API key must not leave Telnyx).
    assert adapter.recording_download(rec, CREDS, at(TS)) == (rec.url, {})
    api_hosted = RecordingAvailable(**{**rec.__dict__, "url": "https://api.telnyx.com/v2/recordings/1/download"})
    assert adapter.recording_download(api_hosted, CREDS, at(TS)) == (
        api_hosted.url, {"Authorization": f"Bearer {CREDS['api_key']}"})
    with pytest.raises(MalformedError) as err:
        adapter.recording_download(api_hosted, {"public_key": TELNYX_PUBLIC_KEY_B64}, at(TS))
    assert err.value.field == "api_key"


def test_recording_mp3_only():
    payload = {"call_leg_id": "leg", "recording_urls": {"mp3": "https://s3.amazonaws.com/x.mp3"}}
    [rec] = deliver(envelope("call.recording.saved", payload))
    assert rec.content_type == "audio/mpeg"


def test_recording_without_urls_yields_nothing():
    assert deliver(envelope("call.recording.saved", {"call_leg_id": "leg",
                                                     "recording_urls": {}})) == []


def test_other_events_dropped():
    assert deliver(envelope("call.dtmf.received", {**PAYLOAD, "digit": "5"})) == []


@pytest.mark.parametrize(("payload", "field"), [
    ({"from": "+1"}, "data.payload.call_leg_id"),
    ({"call_leg_id": 5}, "data.payload.call_leg_id"),
    ({"call_leg_id": "l", "start_time": "noon"}, "data.payload.start_time"),
    ({"call_leg_id": "l", "to": "x" * 1000}, "data.payload.to"),
])
def test_malformed_payloads(payload, field):
    with pytest.raises(MalformedError) as err:
        deliver(envelope("call.answered", payload))
    assert err.value.field == field
    assert_contained(err.value)


def test_validate_credentials():
    padded = adapter.validate_credentials({"public_key": TELNYX_PUBLIC_KEY_B64.rstrip("=")})
    assert padded == {"public_key": TELNYX_PUBLIC_KEY_B64}
    for bad in ({}, {"public_key": "AAAA"}, {"public_key": "%%%"},
                {"public_key": TELNYX_PUBLIC_KEY_B64, "api_key": "has space"}):
        with pytest.raises(MalformedError) as err:
            adapter.validate_credentials(bad)
        assert err.value.field in ("public_key", "api_key")
