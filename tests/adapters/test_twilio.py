"""Twilio adapter: PROTOCOLS.md vectors, the official RequestValidator, mappings."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from adapters import (
    CallEvent,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    get_adapter,
    twilio,
)

from .helpers import assert_contained, assert_declared_diagnostics, request

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
NOW = datetime(2025, 1, 7, 19, 1, 39, tzinfo=UTC)
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 32
CREDS = {"account_sid": ACCOUNT_SID, "auth_token": TOKEN}
adapter = get_adapter("twilio")
validator = RequestValidator(TOKEN)


def form(params) -> bytes:
    return urlencode(params, doseq=True).encode()


def signed(params, url: str = URL, sign_url: str | None = None) -> object:
    """A form POST signed with the official SDK."""
    signature = validator.compute_signature(sign_url or url, params)
    return request(url=url, headers={"x-twilio-signature": signature}, body=form(params))


def signed_pairs(pairs, url: str = URL):
    """Form POST with repeated names, signed by the SDK from a MultiDict-like object."""

    class Multi(dict):
        def getall(self, name):
            return [v for k, v in pairs if k == name]

    multi = Multi({k: v for k, v in pairs})
    signature = validator.compute_signature(url, multi)
    return request(url=url, headers={"x-twilio-signature": signature}, body=form(pairs))


# --- PROTOCOLS.md vectors -----------------------------------------------------------------


def _req(signature: str, url: str = URL, body: bytes | None = None):
    return request(url=url, headers={"x-twilio-signature": signature},
                   body=form(PARAMS) if body is None else body)


def test_vector_signature():
    twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8="), CREDS)


def test_vector_with_unrelated_port_validates_via_stripped_form():
    twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                       "https://mycompany.com:1234/myapp.php?foo=1&bar=2"), CREDS)


def test_vector_https_default_port_signed():
    # Signed with :443, requested without it: the validator adds the default port.
    twilio.verify(_req("kvajT1Ptam85bY51eRf/AJRuM3w="), CREDS)
    twilio.verify(_req("kvajT1Ptam85bY51eRf/AJRuM3w=",
                       "https://mycompany.com:443/myapp.php?foo=1&bar=2"), CREDS)


def test_vector_port_stripped_when_requested_with_default_port():
    twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                       "https://mycompany.com:443/myapp.php?foo=1&bar=2"), CREDS)


def test_vector_http_default_port():
    twilio.verify(_req("0ZXoZLH/DfblKGATFgpif+LLRf4=",
                       "http://mycompany.com/myapp.php?foo=1&bar=2"), CREDS)
    twilio.verify(_req("0ZXoZLH/DfblKGATFgpif+LLRf4=",
                       "http://mycompany.com:80/myapp.php?foo=1&bar=2"), CREDS)


def test_vector_multi_value_params():
    pairs = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"),
             ("Digits", "1234"), ("Digits", "1234")]
    twilio.verify(_req("IK+Dwps556ElfBT0I3Rgjkr1wJU=", body=form(pairs)), CREDS)


def test_vector_multi_value_order_and_duplicates_do_not_matter():
    pairs = [("Digits", "1234"), ("SidAccount", "AC123"), ("Digits", "5678"),
             ("Sid", "CA123")]
    twilio.verify(_req("IK+Dwps556ElfBT0I3Rgjkr1wJU=", body=form(pairs)), CREDS)


def test_vector_json_body():
    body = b'{"property": "value", "boolean": true}'
    digest = hashlib.sha256(body).hexdigest()
    assert digest == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    twilio.verify(_req("a9nBmqA0ju/hNViExpshrM61xv4=", f"{URL}&bodySHA256={digest}", body),
                  CREDS)


def test_vector_json_body_tampered():
    body = b'{"property": "value", "boolean": false}'
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    with pytest.raises(SignatureError):
        twilio.verify(_req("a9nBmqA0ju/hNViExpshrM61xv4=", f"{URL}&bodySHA256={digest}", body),
                      CREDS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: {**p, "To": "+18005551213"},  # value changed
        lambda p: {**p, "Extra": "1"},  # param added
        lambda p: {k: v for k, v in p.items() if k != "Digits"},  # param removed
    ],
)
def test_vector_tampered_params_fail(mutate):
    with pytest.raises(SignatureError) as err:
        twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8=", body=form(mutate(PARAMS))), CREDS)
    assert err.value.outcome == "bad_signature"


@pytest.mark.parametrize("url", [
    "https://mycompany.com/myapp.php?foo=1&bar=3",
    "https://mycompany.com/myapp.php?bar=2&foo=1",
    "https://evil.com/myapp.php?foo=1&bar=2",
    "http://mycompany.com/myapp.php?foo=1&bar=2",
])
def test_vector_other_url_fails(url):
    with pytest.raises(SignatureError):
        twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8=", url), CREDS)


def test_wrong_token_fails():
    with pytest.raises(SignatureError):
        twilio.verify(_req("RSOYDt4T1cUTdK1PDd93/VVr8B8="), {"auth_token": "54321"})


def test_missing_signature():
    with pytest.raises(SignatureError) as err:
        twilio.verify(request(url=URL, body=form(PARAMS)), CREDS)
    assert err.value.outcome == "missing_signature"


# --- cross-check with the official SDK ----------------------------------------------------


@pytest.mark.parametrize("url", [
    URL,
    "https://gw.example.com/v1/hooks/twilio/123",
    "https://gw.example.com:8443/v1/hooks/twilio/123?x=%2F&y=",
    "http://gw.example.com/v1/hooks/twilio/123",
])
def test_sdk_validator_agrees(url):
    params = {"CallSid": "CA1", "CallStatus": "ringing", "Caller": "+1 555 ü"}
    req = signed(params, url)
    assert validator.validate(url, params, req.headers["x-twilio-signature"])
    twilio.verify(req, CREDS)


def test_sdk_signature_over_url_without_port_accepted_when_requested_with_port():
    req = signed(PARAMS, "https://gw.example.com:443/hook", sign_url="https://gw.example.com/hook")
    twilio.verify(req, CREDS)


def test_sdk_json_body():
    body = '{"CallSid": "CA1", "CallStatus": "completed", "CallDuration": 7}'
    url = f"https://gw.example.com/hook?bodySHA256={validator.compute_hash(body)}"
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body, signature)
    req = request(url=url, headers={"x-twilio-signature": signature}, body=body.encode())
    [event] = adapter.verify_and_parse(req, CREDS, NOW)
    assert (event.platform_call_id, event.status, event.duration_seconds) == ("CA1", "completed", 7)


def test_media_stream_upgrade_signature():
    url = "wss://gw.example.com/v1/media/twilio/123"
    signature = validator.compute_signature(url, {})
    twilio.verify(request(method="GET", url=url, headers={"x-twilio-signature": signature}), CREDS)
    with pytest.raises(SignatureError):
        twilio.verify(request(method="GET", url=url + "x",
                              headers={"x-twilio-signature": signature}), CREDS)


def test_get_status_callback():
    params = {"CallSid": "CA9", "CallStatus": "busy", "Direction": "outbound-api"}
    url = "https://gw.example.com/hook?" + urlencode(params)
    req = request(method="GET", url=url,
                  headers={"x-twilio-signature": validator.compute_signature(url, {})})
    [event] = adapter.verify_and_parse(req, CREDS, NOW)
    assert (event.status, event.direction) == ("busy", "outbound")


# --- mapping ------------------------------------------------------------------------------


def status_params(status: str, seq: int, ts: datetime = NOW, **extra) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": "CAabc",
        "CallStatus": status, "Direction": "outbound-api", "From": "+14155550100",
        "To": "+14155550199", "CallbackSource": "call-progress-events",
        "SequenceNumber": str(seq), "Timestamp": format_datetime(ts), **extra,
    }


def test_status_callback_sequence():
    statuses = ["initiated", "ringing", "in-progress", "completed"]
    events = []
    for seq, status in enumerate(statuses):
        extra = {"CallDuration": "42"} if status == "completed" else {}
        [event] = adapter.verify_and_parse(signed(status_params(status, seq, **extra)), CREDS, NOW)
        events.append(event)
    assert [e.status for e in events] == ["queued", "ringing", "in-progress", "completed"]
    assert [e.sequence for e in events] == [0, 1, 2, 3]
    assert len({e.dedupe_key for e in events}) == 4
    last = events[-1]
    assert last == CallEvent(
        platform="twilio", dedupe_key="CAabc:completed:3", platform_call_id="CAabc",
        status="completed", direction="outbound", from_number="+14155550100",
        to_number="+14155550199", occurred_at=NOW, duration_seconds=42, sequence=3,
        diagnostics={"CallbackSource": "call-progress-events"},
        started_at=NOW - timedelta(seconds=42), ended_at=NOW,
    )
    # Non-terminal callbacks carry their Timestamp as a start; the gateway keeps the earliest.
    assert [e.started_at for e in events[:3]] == [NOW] * 3
    assert [e.ended_at for e in events[:3]] == [None] * 3


def test_redelivery_has_same_dedupe_key():
    req = signed(status_params("ringing", 1))
    assert adapter.verify_and_parse(req, CREDS, NOW) == adapter.verify_and_parse(req, CREDS, NOW)


def test_dedupe_without_sequence_number_hashes_params():
    p1 = status_params("ringing", 0)
    del p1["SequenceNumber"]
    p2 = {**p1, "Timestamp": format_datetime(NOW - timedelta(seconds=1))}
    [e1] = adapter.verify_and_parse(signed(p1), CREDS, NOW)
    [e2] = adapter.verify_and_parse(signed(p2), CREDS, NOW)
    [e1b] = adapter.verify_and_parse(signed(dict(reversed(list(p1.items())))), CREDS, NOW)
    assert e1.sequence is None
    assert e1.dedupe_key.startswith("CAabc:ringing:h")
    assert e1.dedupe_key != e2.dedupe_key
    assert e1.dedupe_key == e1b.dedupe_key


@pytest.mark.parametrize(("raw", "canonical"), [
    ("inbound", "inbound"), ("outbound-api", "outbound"), ("outbound-dial", "outbound"),
    ("trunking-terminating", "outbound"), ("something-new", None),
])
def test_directions(raw, canonical):
    [event] = adapter.verify_and_parse(signed(status_params("ringing", 0, Direction=raw)), CREDS, NOW)
    assert event.direction == canonical


def test_diagnostics_are_technical_only():
    params = status_params("failed", 2, ErrorCode="13224", SipResponseCode="404",
                           Digits="4242", ErrorMessage="Alice's number is wrong",
                           CallerName="Alice", AnsweredBy="human")
    [event] = adapter.verify_and_parse(signed(params), CREDS, NOW)
    assert event.status == "failed"
    assert event.diagnostics == {"ErrorCode": "13224", "SipResponseCode": "404",
                                 "CallbackSource": "call-progress-events"}
    assert "4242" not in repr(event) and "Alice" not in repr(event)
    assert_declared_diagnostics(event)


def test_unknown_status_is_malformed():
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(signed(status_params("exploded", 0)), CREDS, NOW)
    assert err.value.field == "CallStatus"


def test_repeated_read_param_is_malformed():
    pairs = list(status_params("ringing", 0).items()) + [("CallStatus", "completed")]
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(signed_pairs(pairs), CREDS, NOW)
    assert err.value.field == "CallStatus"


def test_missing_call_sid_is_malformed():
    params = status_params("ringing", 0)
    del params["CallSid"]
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(signed(params), CREDS, NOW)
    assert err.value.field == "CallSid"


# --- replay bound -------------------------------------------------------------------------


@pytest.mark.parametrize("age", [timedelta(hours=24, seconds=1), timedelta(days=30),
                                 -timedelta(minutes=5, seconds=1)])
def test_event_timestamp_outside_window_is_stale(age):
    req = signed(status_params("ringing", 0, ts=NOW - age))
    with pytest.raises(SignatureError) as err:
        adapter.verify_and_parse(req, CREDS, NOW)
    assert err.value.outcome == "stale"


@pytest.mark.parametrize("age", [timedelta(hours=23, minutes=59), -timedelta(minutes=4)])
def test_event_timestamp_inside_window(age):
    [event] = adapter.verify_and_parse(signed(status_params("ringing", 0, ts=NOW - age)), CREDS, NOW)
    assert event.occurred_at == (NOW - age).replace(microsecond=0)


def test_missing_timestamp_is_accepted():
    params = status_params("ringing", 0)
    del params["Timestamp"]
    [event] = adapter.verify_and_parse(signed(params), CREDS, NOW + timedelta(days=365))
    assert event.occurred_at is None


def test_unparseable_timestamp_is_malformed():
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(signed(status_params("ringing", 0) | {"Timestamp": "soon"}),
                                 CREDS, NOW)
    assert err.value.field == "Timestamp"


# --- recordings ---------------------------------------------------------------------------

REC_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE123"


def recording_params(status: str = "completed") -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID, "CallSid": "CAabc", "RecordingSid": "RE123",
        "RecordingUrl": REC_URL, "RecordingStatus": status, "RecordingDuration": "17",
        "RecordingChannels": "2", "RecordingStartTime": "Tue, 07 Jan 2025 19:00:00 +0000",
        "RecordingSource": "DialVerb", "RecordingTrack": "both", "ErrorCode": "0",
    }


def test_recording_completed():
    [rec] = adapter.verify_and_parse(signed(recording_params()), CREDS, NOW)
    assert rec == RecordingAvailable(
        platform="twilio", dedupe_key="RE123:completed", platform_call_id="CAabc",
        platform_recording_id="RE123", url=REC_URL, content_type="audio/wav",
        duration_seconds=17, channels=2,
    )
    url, headers = adapter.recording_download(rec, {"account_sid": ACCOUNT_SID,
                                                    "auth_token": AUTH_TOKEN}, NOW)
    assert url == REC_URL + ".wav"
    user, _, password = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode().partition(":")
    assert (user, password) == (ACCOUNT_SID, AUTH_TOKEN)


@pytest.mark.parametrize("status", ["in-progress", "absent", "failed"])
def test_recording_not_ready_yields_nothing(status):
    assert adapter.verify_and_parse(signed(recording_params(status)), CREDS, NOW) == []


@pytest.mark.parametrize("url", ["https://evil.example.com/Recordings/RE1",
                                 "https://api.twilio.com.evil.example/Recordings/RE1",
                                 "http://api.twilio.com/Recordings/RE1"])
def test_download_refuses_foreign_hosts(url):
    rec = RecordingAvailable(platform="twilio", dedupe_key="k", platform_call_id="CA",
                             platform_recording_id="RE", url=url)
    with pytest.raises(MalformedError):
        adapter.recording_download(rec, {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}, NOW)


def test_download_keeps_explicit_extension():
    rec = RecordingAvailable(platform="twilio", dedupe_key="k", platform_call_id="CA",
                             platform_recording_id="RE", url=REC_URL + ".mp3")
    url, _ = adapter.recording_download(rec, {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}, NOW)
    assert url == REC_URL + ".mp3"


# --- credentials --------------------------------------------------------------------------


def test_validate_credentials():
    creds = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "other": "dropped"}
    assert adapter.validate_credentials(creds) == {"account_sid": ACCOUNT_SID,
                                                   "auth_token": AUTH_TOKEN}


@pytest.mark.parametrize(("creds", "field"), [
    ({"auth_token": AUTH_TOKEN}, "account_sid"),
    ({"account_sid": "AC123", "auth_token": AUTH_TOKEN}, "account_sid"),
    ({"account_sid": ACCOUNT_SID}, "auth_token"),
    ({"account_sid": ACCOUNT_SID, "auth_token": "short"}, "auth_token"),
    ({"account_sid": ACCOUNT_SID, "auth_token": ["x"]}, "auth_token"),
])
def test_validate_credentials_rejects(creds, field):
    with pytest.raises(MalformedError) as err:
        adapter.validate_credentials(creds)
    assert err.value.field == field
    assert_contained(err.value)


@pytest.mark.parametrize("body", [b"\xff=\xfe", b"a=%ff", b"&".join([b"a=1"] * 500)])
def test_undecodable_forms_are_malformed(body):
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(request(url=URL, headers={"x-twilio-signature": "x"}, body=body),
                                 CREDS, NOW)
    assert err.value.field == "body"
