"""Vonage adapter: the HS256 vector, PyJWT cross-checks, payload_hash, mappings and the
RS256 application JWT for downloads (verified by PyJWT)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import jwt
import pytest

from adapters import (
    CallEvent,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    get_adapter,
    vonage,
)

from .helpers import assert_contained, assert_declared_diagnostics, at, request, rsa_key_pem

SECRET = "qwertyuiopasdfghjklzxcvbnm123456"
VECTOR = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJPbmxpbmUgSldUIEJ1aWxkZXIiLCJpYXQiOj"
          "E2OTc2MzQ2ODAsImV4cCI6MzMyNTQ1NDA4MjgsImF1ZCI6IiIsInN1YiI6IiJ9.88vJc3I2HhuqEDixHXVhc9R"
          "30tA6U_HQHZTC29y6CGM")
IAT = 1697634680
APP_ID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
adapter = get_adapter("vonage")


def creds(**extra):
    private, _ = rsa_key_pem()
    return {"signature_secret": SECRET, "application_id": APP_ID, "private_key": private, **extra}


def sign(body: bytes, *, iat: int = IAT, payload_hash: str | None = "raw", secret: str = SECRET,
         algorithm: str = "HS256", **claims) -> str:
    if payload_hash == "raw":
        payload_hash = hashlib.sha256(body).hexdigest()
    if payload_hash is not None:
        claims["payload_hash"] = payload_hash
    return jwt.encode({"iat": iat, "jti": str(uuid.uuid4()), **claims}, secret, algorithm=algorithm)


def req(body: bytes, token: str | None):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return request(headers=headers, body=body)


def deliver(doc: dict, now: int = IAT, credentials=None):
    body = json.dumps(doc).encode()
    return adapter.verify_and_parse(req(body, sign(body)), credentials or creds(), at(now))


# --- the vector ---------------------------------------------------------------------------


def test_vector_verifies():
    claims = vonage.verify_jwt(VECTOR, SECRET, at(IAT))
    assert claims["iss"] == "Online JWT Builder"
    assert jwt.decode(VECTOR, SECRET, algorithms=["HS256"], options={"verify_aud": False})


def test_vector_wrong_secret_fails():
    with pytest.raises(SignatureError) as err:
        vonage.verify_jwt(VECTOR, "asdf", at(IAT))
    assert err.value.outcome == "bad_signature"


def test_vector_without_payload_hash_cannot_carry_a_body():
    with pytest.raises(SignatureError):
        vonage.verify(req(b'{"status":"answered"}', VECTOR), creds(), at(IAT))
    vonage.verify(req(b"", VECTOR), creds(), at(IAT))  # empty body: nothing to bind


@pytest.mark.parametrize("offset", [-301, 301])
def test_vector_iat_freshness(offset):
    with pytest.raises(SignatureError) as err:
        vonage.verify_jwt(VECTOR, SECRET, at(IAT + offset))
    assert err.value.outcome == "stale"


# --- algorithm confusion ------------------------------------------------------------------


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _forge(header: dict, claims: dict, key: bytes = SECRET.encode(), digest=hashlib.sha256) -> str:
    signing_input = _b64(header) + "." + _b64(claims)
    sig = base64.urlsafe_b64encode(hmac.new(key, signing_input.encode(), digest).digest())
    return signing_input + "." + sig.rstrip(b"=").decode()


@pytest.mark.parametrize("token", [
    _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"iat": IAT}) + ".",
    _b64({"alg": "none"}) + "." + _b64({"iat": IAT}),
    _forge({"alg": "HS512"}, {"iat": IAT}, digest=hashlib.sha512),
    _forge({"alg": "HS384"}, {"iat": IAT}, digest=hashlib.sha384),
    _forge({"alg": "hs256"}, {"iat": IAT}),
    _forge({"typ": "JWT"}, {"iat": IAT}),
    _forge({"alg": "HS256", "crit": ["b64"], "b64": False}, {"iat": IAT}),
    _forge({"alg": "HS256"}, {"iat": IAT}, key=b"wrong"),
    _forge({"alg": "HS256"}, {}),  # no iat
    _forge({"alg": "HS256"}, {"iat": "1697634680"}),
    _forge({"alg": "HS256"}, {"iat": True}),
    _forge({"alg": "HS256"}, ["not", "an", "object"]),
])
def test_only_hs256_with_iat_is_accepted(token):
    with pytest.raises(SignatureError):
        vonage.verify_jwt(token, SECRET, at(IAT))


def test_rs256_token_rejected():
    private, _ = rsa_key_pem()
    token = jwt.encode({"iat": IAT}, private, algorithm="RS256")
    with pytest.raises(SignatureError):
        vonage.verify_jwt(token, SECRET, at(IAT))


def test_forged_hs256_accepted_only_with_right_key():
    assert vonage.verify_jwt(_forge({"alg": "HS256"}, {"iat": IAT}), SECRET, at(IAT)) == {"iat": IAT}


def test_exp_and_nbf_honoured():
    with pytest.raises(SignatureError) as err:
        vonage.verify_jwt(_forge({"alg": "HS256"}, {"iat": IAT, "exp": IAT}), SECRET, at(IAT))
    assert err.value.outcome == "stale"
    with pytest.raises(SignatureError):
        vonage.verify_jwt(_forge({"alg": "HS256"}, {"iat": IAT, "nbf": IAT + 3600}), SECRET, at(IAT))


# --- PyJWT cross-check with payload_hash --------------------------------------------------

EVENT = {"from": "447700900000", "to": "447700900001", "uuid": "63f61863-4a51-4f6b-86e1-46edebio0391",
         "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22", "status": "answered",
         "direction": "inbound", "timestamp": "2023-10-18T13:11:20.000Z"}


def test_pyjwt_signed_event_with_raw_body_hash():
    [event] = deliver(EVENT)
    assert event.status == "in-progress"


def test_payload_hash_of_compact_reserialisation():
    body = json.dumps(EVENT, indent=2).encode()  # what arrived: pretty-printed
    compact = json.dumps(EVENT, separators=(",", ":")).encode()
    token = sign(body, payload_hash=hashlib.sha256(compact).hexdigest())
    [event] = adapter.verify_and_parse(req(body, token), creds(), at(IAT))
    assert event.platform_call_id == EVENT["uuid"]


def test_payload_hash_mismatch_fails():
    body = json.dumps(EVENT).encode()
    token = sign(body)
    tampered = body.replace(b"answered", b"completed")
    with pytest.raises(SignatureError) as err:
        adapter.verify_and_parse(req(tampered, token), creds(), at(IAT))
    assert err.value.outcome == "bad_signature"


@pytest.mark.parametrize("payload_hash", [None, "abc", 42, "z" * 64])
def test_missing_or_invalid_payload_hash_fails(payload_hash):
    body = json.dumps(EVENT).encode()
    token = sign(body, payload_hash=payload_hash)
    with pytest.raises(SignatureError):
        adapter.verify_and_parse(req(body, token), creds(), at(IAT))


def test_wrong_application_id_fails():
    body = json.dumps(EVENT).encode()
    token = sign(body, application_id="11111111-2222-4333-8444-555555555555")
    with pytest.raises(SignatureError):
        adapter.verify_and_parse(req(body, token), creds(), at(IAT))
    token = sign(body, application_id=APP_ID.upper())
    assert adapter.verify_and_parse(req(body, token), creds(), at(IAT))


@pytest.mark.parametrize("offset", [-301, 301])
def test_iat_freshness(offset):
    body = json.dumps(EVENT).encode()
    with pytest.raises(SignatureError) as err:
        adapter.verify_and_parse(req(body, sign(body, iat=IAT + offset)), creds(), at(IAT))
    assert err.value.outcome == "stale"


@pytest.mark.parametrize("authorization", [None, "Basic abc", "Bearer ", "Bearer"])
def test_unsigned_refused_by_default(authorization):
    headers = {"authorization": authorization} if authorization is not None else {}
    with pytest.raises(SignatureError) as err:
        adapter.verify_and_parse(request(headers=headers, body=json.dumps(EVENT).encode()),
                                 creds(), at(IAT))
    assert err.value.outcome == "missing_signature"


def test_opt_out_accepts_unsigned():
    c = creds(verify_signatures=False)
    del c["signature_secret"]
    [event] = adapter.verify_and_parse(request(body=json.dumps(EVENT).encode()), c, at(IAT))
    assert event.status == "in-progress"


def test_opt_out_must_be_boolean():
    with pytest.raises(MalformedError) as err:
        adapter.verify_and_parse(request(body=json.dumps(EVENT).encode()),
                                 creds(verify_signatures="false"), at(IAT))
    assert err.value.field == "verify_signatures"


# --- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "canonical"), [
    ("started", "queued"), ("ringing", "ringing"), ("answered", "in-progress"),
    ("completed", "completed"), ("busy", "busy"), ("cancelled", "canceled"),
    ("unanswered", "no-answer"), ("timeout", "no-answer"), ("rejected", "failed"),
    ("failed", "failed"), ("disconnected", None), ("human", None), ("machine", None),
])
def test_status_mapping(raw, canonical):
    [event] = deliver({**EVENT, "status": raw})
    assert event.status == canonical
    assert event.dedupe_key == f"{EVENT['uuid']}:{raw}:{EVENT['timestamp']}"


def test_completed_with_duration_string():
    doc = {**EVENT, "status": "completed", "start_time": "2023-10-18T13:11:20.000Z",
           "end_time": "2023-10-18T13:12:02.000Z", "duration": "42", "rate": "0.01",
           "price": "0.007", "network": "23410", "disconnected_by": "user",
           "timestamp": "2023-10-18T13:12:02.100Z"}
    [event] = deliver(doc)
    assert event == CallEvent(
        platform="vonage",
        dedupe_key=f"{EVENT['uuid']}:completed:2023-10-18T13:12:02.100Z",
        platform_call_id=EVENT["uuid"], platform_session_id=EVENT["conversation_uuid"],
        status="completed", direction="inbound", from_number="447700900000",
        to_number="447700900001",
        occurred_at=datetime(2023, 10, 18, 13, 12, 2, 100000, tzinfo=UTC),
        started_at=datetime(2023, 10, 18, 13, 11, 20, tzinfo=UTC),
        ended_at=datetime(2023, 10, 18, 13, 12, 2, tzinfo=UTC),
        duration_seconds=42, diagnostics={"disconnected_by": "user"},
    )
    assert_declared_diagnostics(event)


def test_unknown_status_is_malformed():
    with pytest.raises(MalformedError) as err:
        deliver({**EVENT, "status": "teleported"})
    assert err.value.field == "status"


def test_dtmf_input_dropped():
    assert deliver({"uuid": EVENT["uuid"], "dtmf": {"digits": "1234"}}) == []


def test_record_webhook_and_download():
    doc = {"start_time": "2020-01-01T12:00:00Z", "end_time": "2020-01-01T12:01:01Z",
           "recording_url": "https://api-us.nexmo.com/v1/files/aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
           "size": 12222, "recording_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
           "conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
           "timestamp": "2020-01-01T12:01:02.000Z"}
    [rec] = deliver(doc)
    assert rec == RecordingAvailable(
        platform="vonage", dedupe_key="aaaaaaaa-bbbb-cccc-dddd-0123456789ab:recording",
        platform_call_id=doc["conversation_uuid"],
        platform_recording_id=doc["recording_uuid"], url=doc["recording_url"],
        duration_seconds=61, occurred_at=datetime(2020, 1, 1, 12, 1, 2, tzinfo=UTC),
        platform_session_id=doc["conversation_uuid"],
    )
    now = at(1_700_000_000)
    url, headers = adapter.recording_download(rec, creds(), now)
    assert url == doc["recording_url"]
    token = headers["Authorization"].removeprefix("Bearer ")
    _, public = rsa_key_pem()
    claims = jwt.decode(token, public, algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["application_id"] == APP_ID
    assert claims["iat"] == 1_700_000_000
    assert claims["exp"] - claims["iat"] == 300
    assert uuid.UUID(claims["jti"])
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    other = adapter.recording_download(rec, creds(), now)[1]["Authorization"]
    assert other != headers["Authorization"]  # fresh jti every time


@pytest.mark.parametrize("url", ["https://evil.example.com/v1/files/x",
                                 "https://api.nexmo.com.evil.example/v1/files/x"])
def test_download_refuses_foreign_hosts(url):
    rec = RecordingAvailable(platform="vonage", dedupe_key="k", platform_call_id="c",
                             platform_recording_id="r", url=url)
    with pytest.raises(MalformedError):
        adapter.recording_download(rec, creds(), at(IAT))


# --- credentials --------------------------------------------------------------------------


def test_validate_credentials():
    out = adapter.validate_credentials({**creds(), "extra": 1})
    assert out["verify_signatures"] is True and "extra" not in out
    opted_out = creds(verify_signatures=False)
    del opted_out["signature_secret"]
    assert adapter.validate_credentials(opted_out)["verify_signatures"] is False


@pytest.mark.parametrize(("change", "field"), [
    ({"signature_secret": None}, "signature_secret"),
    ({"signature_secret": "short"}, "signature_secret"),
    ({"application_id": "not-a-uuid"}, "application_id"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "private_key"),
    ({"private_key": None}, "private_key"),
    ({"verify_signatures": "no"}, "verify_signatures"),
])
def test_validate_credentials_rejects(change, field):
    c = {k: v for k, v in {**creds(), **change}.items() if v is not None}
    with pytest.raises(MalformedError) as err:
        adapter.validate_credentials(c)
    assert err.value.field == field
    assert_contained(err.value)
    assert SECRET not in str(err.value)


def test_small_rsa_key_rejected():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    with pytest.raises(MalformedError) as err:
        adapter.validate_credentials(creds(private_key=small))
    assert err.value.field == "private_key"
