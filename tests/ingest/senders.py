"""Test doubles of the four platforms' webhook senders. Each signs exactly as the platform
does (the official SDK where one exists), over the public URL the tenant configured
(PUBLIC_BASE_URL), and posts through real HTTP to the gateway's local port."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twilio.request_validator import RequestValidator

from tests.support.server import RunningGateway, Tenant

Reply = tuple[int, Any, Any]


def _path(integration: dict[str, Any]) -> str:
    return f"/v1/hooks/{integration['platform']}/{integration['id']}"


class Sender:
    platform = ""

    def __init__(self, gateway: RunningGateway, tenant: Tenant,
                 integration: dict[str, Any]) -> None:
        self.gw = gateway
        self.tenant = tenant
        self.integration = integration
        self.path = _path(integration)
        self.url = integration["webhook_url"]      # the public URL the platform calls

    async def raw(self, body: bytes, headers: dict[str, str], *, query: str = "",
                  method: str = "POST") -> Reply:
        return await self.gw.request(method, self.path + query, data=body, headers=headers)


# --- Twilio -------------------------------------------------------------------------------

class TwilioSender(Sender):
    platform = "twilio"

    def __init__(self, gateway, tenant, integration, account_sid: str, auth_token: str):
        super().__init__(gateway, tenant, integration)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)

    @classmethod
    async def create(cls, gateway: RunningGateway, tenant: Tenant, **extra: Any):
        sid, token = "AC" + os.urandom(16).hex(), os.urandom(16).hex()
        integration = await gateway.integration(
            tenant, "twilio", {"account_sid": sid, "auth_token": token}, **extra)
        return cls(gateway, tenant, integration, sid, token)

    def status(self, call_sid: str, status: str, seq: int, when: datetime,
               **extra: str) -> dict[str, str]:
        """A voice status callback as Twilio posts it (form fields)."""
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01",
                  "CallSid": call_sid, "CallStatus": status, "Direction": "inbound",
                  "From": "+14155550100", "To": "+14155550199", "Caller": "+14155550100",
                  "Called": "+14155550199", "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(seq), "Timestamp": format_datetime(when)}
        params.update(extra)
        return params

    def recording(self, call_sid: str, recording_sid: str, **extra: str) -> dict[str, str]:
        url = (f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}"
               f"/Recordings/{recording_sid}")
        params = {"AccountSid": self.account_sid, "CallSid": call_sid,
                  "RecordingSid": recording_sid, "RecordingUrl": url,
                  "RecordingStatus": "completed", "RecordingDuration": "42",
                  "RecordingChannels": "1", "RecordingSource": "RecordVerb",
                  "RecordingStartTime": format_datetime(self.gw.clock.now()), "ErrorCode": "0"}
        params.update(extra)
        return params

    def media_path(self, recording_sid: str) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Recordings/{recording_sid}.wav"

    def basic_auth(self) -> str:
        raw = f"{self.account_sid}:{self.auth_token}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def post(self, params: dict[str, str], *, sign_url: str | None = None,
                   token: str | None = None) -> Reply:
        validator = RequestValidator(token) if token else self.validator
        signature = validator.compute_signature(sign_url or self.url, params)
        return await self.raw(urlencode(params).encode(), {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"})

    async def post_json(self, doc: dict[str, Any]) -> Reply:
        """The JSON-body form: the URL carries bodySHA256, the signature covers the URL."""
        body = json.dumps(doc)
        query = "?bodySHA256=" + self.validator.compute_hash(body)
        signature = self.validator.compute_signature(self.url + query, {})
        assert self.validator.validate(self.url + query, body, signature)
        return await self.raw(body.encode(), {"X-Twilio-Signature": signature,
                                              "Content-Type": "application/json"}, query=query)


# --- Telnyx -------------------------------------------------------------------------------

class TelnyxSender(Sender):
    platform = "telnyx"

    def __init__(self, gateway, tenant, integration, key: ed25519.Ed25519PrivateKey):
        super().__init__(gateway, tenant, integration)
        self.key = key

    @classmethod
    async def create(cls, gateway: RunningGateway, tenant: Tenant, **extra: Any):
        key = ed25519.Ed25519PrivateKey.generate()
        public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
        integration = await gateway.integration(
            tenant, "telnyx", {"public_key": public, "api_key": "KEY0123456789abcdef"}, **extra)
        return cls(gateway, tenant, integration, key)

    @staticmethod
    def event(event_type: str, payload: dict[str, Any], occurred: datetime,
              event_id: str | None = None, attempt: int = 1) -> dict[str, Any]:
        return {"data": {"record_type": "event", "event_type": event_type,
                         "id": event_id or str(uuid.uuid4()),
                         "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
                         "payload": payload},
                "meta": {"attempt": attempt, "delivered_to": "https://gateway.example.com"}}

    async def post(self, doc: dict[str, Any] | bytes, *, when: datetime | None = None,
                   key: ed25519.Ed25519PrivateKey | None = None) -> Reply:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        timestamp = str(int((when or self.gw.clock.now()).timestamp()))
        signature = (key or self.key).sign(timestamp.encode() + b"|" + body)
        return await self.raw(body, {"telnyx-signature-ed25519": base64.b64encode(signature)
                                     .decode(), "telnyx-timestamp": timestamp,
                                     "Content-Type": "application/json"})


# --- Vonage -------------------------------------------------------------------------------

class VonageSender(Sender):
    platform = "vonage"

    def __init__(self, gateway, tenant, integration, secret: str, application_id: str,
                 private_key: rsa.RSAPrivateKey):
        super().__init__(gateway, tenant, integration)
        self.secret = secret
        self.application_id = application_id
        self.private_key = private_key
        self.public_key = private_key.public_key()

    @classmethod
    async def create(cls, gateway: RunningGateway, tenant: Tenant,
                     private_key: rsa.RSAPrivateKey, **extra: Any):
        secret = base64.b64encode(os.urandom(24)).decode()
        application_id = str(uuid.uuid4())
        pem = private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        integration = await gateway.integration(tenant, "vonage", {
            "signature_secret": secret, "application_id": application_id,
            "private_key": pem}, **extra)
        return cls(gateway, tenant, integration, secret, application_id, private_key)

    async def post(self, doc: dict[str, Any] | bytes, *, when: datetime | None = None,
                   secret: str | None = None) -> Reply:
        """Signed callback: HS256 JWT (PyJWT) with payload_hash of the body."""
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        claims = {"iat": int((when or self.gw.clock.now()).timestamp()),
                  "jti": str(uuid.uuid4()), "iss": "Vonage",
                  "payload_hash": hashlib.sha256(body).hexdigest(),
                  "application_id": self.application_id}
        token = jwt.encode(claims, secret or self.secret, algorithm="HS256")
        return await self.raw(body, {"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/json"})


# --- WhatsApp -----------------------------------------------------------------------------

class WhatsAppSender(Sender):
    platform = "whatsapp"
    PHONE_NUMBER_ID = "106540352242922"
    BUSINESS_NUMBER = "15550001111"

    def __init__(self, gateway, tenant, integration, app_secret: str, verify_token: str):
        super().__init__(gateway, tenant, integration)
        self.app_secret = app_secret
        self.verify_token = verify_token

    @classmethod
    async def create(cls, gateway: RunningGateway, tenant: Tenant, **extra: Any):
        app_secret, verify_token = os.urandom(16).hex(), "vt-" + os.urandom(8).hex()
        integration = await gateway.integration(tenant, "whatsapp", {
            "app_secret": app_secret, "verify_token": verify_token,
            "access_token": "EAAG" + os.urandom(16).hex(),
            "phone_number_id": cls.PHONE_NUMBER_ID}, **extra)
        return cls(gateway, tenant, integration, app_secret, verify_token)

    def notification(self, *calls: dict[str, Any]) -> dict[str, Any]:
        return {"object": "whatsapp_business_account", "entry": [{
            "id": "102290129340398", "changes": [{"field": "calls", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.BUSINESS_NUMBER,
                             "phone_number_id": self.PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": "Alice"}, "wa_id": "14155550100"}],
                "calls": list(calls)}}]}]}

    def connect(self, call_id: str, when: datetime) -> dict[str, Any]:
        # No SDP offer: answering with WebRTC is the live-audio feature's business; here
        # the call is metadata only.
        return {"id": call_id, "from": "14155550100", "to": self.BUSINESS_NUMBER,
                "event": "connect", "direction": "USER_INITIATED",
                "timestamp": str(int(when.timestamp()))}

    def terminate(self, call_id: str, when: datetime, *, start: datetime, end: datetime,
                  status: str = "COMPLETED") -> dict[str, Any]:
        return {"id": call_id, "from": "14155550100", "to": self.BUSINESS_NUMBER,
                "event": "terminate", "direction": "USER_INITIATED",
                "timestamp": str(int(when.timestamp())), "status": status,
                "start_time": str(int(start.timestamp())),
                "end_time": str(int(end.timestamp())),
                "duration": int((end - start).total_seconds())}

    def sign(self, body: bytes, secret: str | None = None) -> str:
        digest = hmac.new((secret or self.app_secret).encode(), body, hashlib.sha256)
        return "sha256=" + digest.hexdigest()

    async def post(self, doc: dict[str, Any] | bytes, *, secret: str | None = None) -> Reply:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return await self.raw(body, {"X-Hub-Signature-256": self.sign(body, secret),
                                     "Content-Type": "application/json"})

    async def handshake(self, token: str, challenge: str = "1158201444") -> Reply:
        query = "?" + urlencode({"hub.mode": "subscribe", "hub.verify_token": token,
                                 "hub.challenge": challenge})
        return await self.gw.request("GET", self.path + query)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def ago(gateway: RunningGateway, **delta: float) -> datetime:
    return gateway.clock.now() - timedelta(**delta)
