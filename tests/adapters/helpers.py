"""Signing helpers for adapter tests. They follow the platforms' own rules (or call the
platforms' SDKs) and never call the code under test to sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters import AdapterError, MalformedError, WebhookRequest

# A MalformedError names a field of the protocol (a constant, maybe with list indices),
# never a value taken from the request.
_FIELD_RE = re.compile(r"[A-Za-z0-9_.\[\]-]{1,80}\Z")

# RFC 8032 section 7.1, TEST 1: its public key is the Telnyx vector's key.
RFC8032_TEST1_SECRET = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
TELNYX_PUBLIC_KEY_B64 = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=UTC)


def request(method: str = "POST", url: str = "https://gw.example.com/v1/hooks/x/1",
            headers: dict[str, str] | None = None, body: bytes = b"") -> WebhookRequest:
    return WebhookRequest(method=method, url=url, headers=headers or {}, body=body)


def telnyx_sign(timestamp: str, body: bytes) -> str:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SECRET)
    return base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()


def whatsapp_sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@cache
def rsa_key_pem() -> tuple[str, str]:
    """(private PEM, public PEM) generated once per test session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def assert_contained(exc: AdapterError) -> None:
    """An adapter error must come from the adapter's own checks: the last-resort guard in
    adapters._common.contained chains the unexpected exception it converts."""
    assert exc.__cause__ is None, f"unexpected exception converted: {exc.__cause__!r}"
    if isinstance(exc, MalformedError):
        assert _FIELD_RE.match(exc.field), exc.field
        assert str(exc) == f"{exc.field}: {exc.reason}"
    else:
        assert str(exc) == "signature verification failed"


def assert_declared_diagnostics(event) -> None:
    """Every diagnostic an adapter emits is one its platform descriptor declares, of the
    declared kind: the staff view's allow-list is built from those declarations, so an
    undeclared key would silently vanish from it (and an undeclared kind could leak)."""
    from adapters import get_adapter

    def conforms(value, schema) -> bool:
        if schema == "token":
            return isinstance(value, str)
        if schema == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(schema, list):
            return isinstance(value, list) and all(conforms(v, schema[0]) for v in value)
        return isinstance(value, dict) and all(
            key in schema and conforms(v, schema[key]) for key, v in value.items())

    declared = get_adapter(event.platform).diagnostic_fields
    assert conforms(event.diagnostics, dict(declared)), (event.platform, event.diagnostics)
