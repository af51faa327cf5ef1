"""`gateway dev send-webhook` delivers a correctly signed sample for every platform the
gateway knows (adapters.PLATFORMS), to a gateway served as `make run` serves it, and prints
the id of the call it created; refusals exit 1 with the gateway's own words."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import adapters
from gateway.dev.samples import SIGNERS
from tests.docs.conftest import GATEWAY


def _http(port: int, method: str, path: str, key: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATEWAY_CONFIG": str(workdir / "config.example.toml")}
    return subprocess.run([GATEWAY, *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=60)


def _credentials() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Per platform: the credentials a tenant connects with, and extra CLI arguments."""
    telnyx_key = ed25519.Ed25519PrivateKey.generate()
    telnyx_private = base64.b64encode(telnyx_key.private_bytes_raw()).decode()
    telnyx_public = base64.b64encode(telnyx_key.public_key().public_bytes_raw()).decode()
    vonage_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return {
        "standard": ({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, []),
        "twilio": ({"account_sid": "AC" + os.urandom(16).hex(),
                    "auth_token": os.urandom(16).hex()}, []),
        "telnyx": ({"public_key": telnyx_public}, ["--signing-key", telnyx_private]),
        "vonage": ({"signature_secret": base64.b64encode(os.urandom(24)).decode(),
                    "application_id": str(uuid.uuid4()), "private_key": vonage_pem}, []),
        "whatsapp": ({"app_secret": os.urandom(16).hex(), "verify_token": "vt-readme",
                      "access_token": "EAAG" + os.urandom(16).hex(),
                      "phone_number_id": "106540352242922"}, []),
    }


def test_every_platform_has_a_sample_signer():
    assert set(SIGNERS) == set(adapters.PLATFORMS)


def test_send_webhook_for_every_platform(served_gateway):
    workdir, port, _metrics, _server = served_gateway
    tenant = json.loads(_cli(workdir, "tenant", "create", "--name", "dev-co", "--json").stdout)
    key = tenant["api_key"]
    credentials = _credentials()
    assert set(credentials) == set(adapters.PLATFORMS)
    for platform, (creds, extra) in credentials.items():
        integration = _http(port, "POST", "/v1/integrations", key,
                            {"platform": platform, "credentials": creds})
        sent = _cli(workdir, "dev", "send-webhook", "--integration", integration["id"],
                    "--status", "completed", "--duration", "17", *extra)
        assert sent.returncode == 0, (platform, sent.stderr)
        call_id = sent.stdout.strip()
        call = _http(port, "GET", f"/v1/calls/{call_id}", key)
        assert (call["platform"], call["status"]) == (platform, "completed"), call
        assert call["from"] == "+14155550100" and call["to"] == "+14155550199", platform
        # Telnyx reports no duration: the gateway computes it from answer to hangup, and a
        # lone hangup sample has no answer.
        assert call["duration_seconds"] == (None if platform == "telnyx" else 17), platform
        # A later status of the same call, by its platform id, lands on the same call.
        again = _cli(workdir, "dev", "send-webhook", "--integration", integration["id"],
                     "--call-id", call["platform_call_id"], "--status", "ringing", *extra)
        assert again.returncode == 0 and again.stdout.strip() == call_id, (platform, again)


def test_send_webhook_says_what_is_missing(served_gateway):
    workdir, port, _metrics, _server = served_gateway
    key = json.loads(_cli(workdir, "tenant", "create", "--name", "x", "--json").stdout)["api_key"]
    public = base64.b64encode(
        ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    telnyx = _http(port, "POST", "/v1/integrations", key,
                   {"platform": "telnyx", "credentials": {"public_key": public}})
    no_key = _cli(workdir, "dev", "send-webhook", "--integration", telnyx["id"])
    assert no_key.returncode == 2 and "--signing-key" in no_key.stderr
    other = base64.b64encode(ed25519.Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    wrong = _cli(workdir, "dev", "send-webhook", "--integration", telnyx["id"],
                 "--signing-key", other)
    assert wrong.returncode == 2 and "does not belong" in wrong.stderr
    assert other not in wrong.stderr
    unknown = _cli(workdir, "dev", "send-webhook", "--integration", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "not found" in unknown.stderr.lower()
