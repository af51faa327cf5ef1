"""The foundation, end to end over real HTTP: a tenant connects a Standard Webhooks
platform, deliveries become encrypted calls, recordings go in and come back out."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta

from tests.support.forensics import scan_tree_for
from tests.support.signers import call_updated, new_whsec, standard_delivery

NUMBERS = {"from": "+14155550100", "to": "+442071838750"}
# The same numbers as people and platforms write them: none may appear at rest.
NUMBER_FORMS = [b"+14155550100", b"14155550100", b"4155550100", b"415-555-0100",
                b"(415) 555-0100", b"+442071838750", b"442071838750", b"2071838750",
                b"020 7183 8750"]


async def setup_standard(gateway, name="acme"):
    tenant = await gateway.new_tenant(name)
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    return tenant, secret, integration


async def deliver(gateway, integration, secret, body, when=None, msg_id=None, headers=None):
    raw, signed = standard_delivery(secret, body, when or gateway.clock.now(), msg_id)
    if headers:
        signed.update(headers)
    path = f"/v1/hooks/standard/{integration['id']}"
    return await gateway.request("POST", path, data=raw, headers=signed)


async def test_integration_is_created_with_webhook_url_and_hides_credentials(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    assert integration["webhook_url"] == \
        f"{gateway.config.server.public_base_url}/v1/hooks/standard/{integration['id']}"
    for path in ("/v1/integrations", f"/v1/integrations/{integration['id']}"):
        status, body, _ = await gateway.request("GET", path, headers=tenant.auth)
        assert status == 200
        assert secret not in json.dumps(body)
        assert "credentials" not in json.dumps(body)


async def test_signed_call_event_becomes_a_call_with_decrypted_parties(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    started = "2026-03-01T10:00:00Z"
    event = call_updated("pc-1", "completed", from_number="+1 (415) 555-0100",
                         to_number="+44 20 7183 8750", started_at=started,
                         ended_at="2026-03-01T10:00:42Z", duration=42)
    status, body, _ = await deliver(gateway, integration, secret, event)
    assert status == 200, body
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert status == 200
    [call] = page["items"]
    assert call["status"] == "completed"
    assert call["direction"] == "inbound"
    assert call["from"] == NUMBERS["from"] and call["to"] == NUMBERS["to"]
    assert call["duration_seconds"] == 42
    assert call["started_at"].startswith("2026-03-01T10:00:00")
    assert call["ended_at"].startswith("2026-03-01T10:00:42")
    status, one, _ = await gateway.request("GET", f"/v1/calls/{call['id']}", headers=tenant.auth)
    assert status == 200 and one["from"] == NUMBERS["from"]
    assert [e["status"] for e in one["events"]] == ["completed"]

    other = await gateway.new_tenant("other")
    status, problem, headers = await gateway.request("GET", f"/v1/calls/{call['id']}",
                                                     headers=other.auth)
    assert status == 404
    assert headers["Content-Type"].startswith("application/problem+json")
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=other.auth)
    assert page["items"] == []


async def test_bad_signature_stale_timestamp_and_replay(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    event = call_updated("pc-2", "ringing")
    # Signed with another secret.
    status, problem, headers = await deliver(gateway, integration, new_whsec(), event)
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"].endswith("invalid-signature")
    # Outside the 5-minute window, either way.
    for skew in (timedelta(minutes=6), -timedelta(minutes=6)):
        status, stale, _ = await deliver(gateway, integration, secret, event,
                                         when=gateway.clock.now() - skew)
        assert status == 401
        # A stale delivery is told exactly what a forged one is told.
        assert stale == problem
    # A redelivered webhook-id has no second effect.
    for _ in range(3):
        status, body, _ = await deliver(gateway, integration, secret, event, msg_id="msg_same")
        assert status == 200
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    [call] = page["items"]
    _, one, _ = await gateway.request("GET", f"/v1/calls/{call['id']}", headers=tenant.auth)
    assert len(one["events"]) == 1


async def test_out_of_order_events_never_regress_status(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    for status_name in ("ringing", "completed", "in-progress", "ringing"):
        extra = {"duration": 30, "ended_at": "2026-03-01T10:00:30Z"} \
            if status_name == "completed" else {}
        status, _, _ = await deliver(gateway, integration, secret,
                                     call_updated("pc-3", status_name, **extra))
        assert status == 200
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    [call] = page["items"]
    assert call["status"] == "completed" and call["duration_seconds"] == 30


async def test_bad_input_gets_problem_json_and_changes_nothing(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    # Signed but not JSON / wrong schema: authentic, so acknowledged as rejected (a retry
    # could never succeed) and never stored; unsigned, the parser's error names the field.
    for raw in (b"not json", b'{"type": "call.updated", "data": {"status": "weird"}}',
                b"[]", b'{"type": 5}'):
        status, body, headers = await deliver(gateway, integration, secret, raw)
        assert (status, body) == (200, {"accepted": 0, "duplicates": 0, "rejected": 1}), raw
        status, body, headers = await gateway.request(
            "POST", f"/v1/hooks/standard/{integration['id']}", data=raw,
            headers={"content-type": "application/json"})
        assert 400 <= status < 500, (raw, status, body)
        assert headers["Content-Type"].startswith("application/problem+json")
    # Too large.
    big = b'{"type": "call.updated", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, body, _ = await deliver(gateway, integration, secret, big)
    assert status == 413 and body["type"].endswith("payload-too-large")
    # Unknown integration and platform.
    status, _, _ = await gateway.request("POST", "/v1/hooks/standard/nope", data=b"{}")
    assert status == 404
    status, _, _ = await gateway.request("POST", f"/v1/hooks/bogus/{integration['id']}",
                                         data=b"{}")
    assert status == 404
    # Tenant API: bad JSON, bad fields, no auth.
    status, body, _ = await gateway.request(
        "POST", "/v1/integrations", data=b"{",
        headers={**tenant.auth, "Content-Type": "application/json"})
    assert status == 400 and body["type"].endswith("malformed-json")
    status, body, _ = await gateway.request(
        "POST", "/v1/integrations", data=b"{}",
        headers={**tenant.auth, "Content-Type": "text/plain"})
    assert status == 415
    status, body, _ = await gateway.request(
        "POST", "/v1/integrations", headers=tenant.auth,
        json={"platform": "standard", "credentials": {"secret": "nope"}})
    assert status == 422 and "secret" in body["detail"]
    assert "nope" not in json.dumps(body)
    status, body, headers = await gateway.request("GET", "/v1/calls")
    assert status == 401 and headers["Content-Type"].startswith("application/problem+json")
    status, body, _ = await gateway.request("GET", "/v1/calls?status=weird", headers=tenant.auth)
    assert status == 422 and body["field"] == "status"
    status, body, _ = await gateway.request("GET", "/v1/calls?cursor=%%%", headers=tenant.auth)
    assert status == 422
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert page["items"] == []


async def test_pagination_and_filters(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    for i in range(7):
        started = f"2026-03-01T10:{i:02d}:00Z"
        status_name = "completed" if i % 2 else "failed"
        status, _, _ = await deliver(gateway, integration, secret,
                                     call_updated(f"pc-p{i}", status_name, started_at=started))
        assert status == 200
    seen, cursor = [], None
    while True:
        path = "/v1/calls?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page, _ = await gateway.request("GET", path, headers=tenant.auth)
        assert status == 200
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [c["platform_call_id"] for c in seen] == [f"pc-p{i}" for i in reversed(range(7))]
    _, page, _ = await gateway.request("GET", "/v1/calls?status=completed", headers=tenant.auth)
    assert {c["platform_call_id"] for c in page["items"]} == {"pc-p1", "pc-p3", "pc-p5"}
    _, page, _ = await gateway.request(
        "GET", "/v1/calls?since=2026-03-01T10:02:00Z&until=2026-03-01T10:04:00Z",
        headers=tenant.auth)
    assert {c["platform_call_id"] for c in page["items"]} == {"pc-p2", "pc-p3"}


async def _new_call(gateway, tenant, integration, secret, call_ref="pc-rec"):
    await deliver(gateway, integration, secret, call_updated(call_ref, "completed"))
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    return next(c for c in page["items"] if c["platform_call_id"] == call_ref)


async def test_recording_upload_download_and_ranges(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    call = await _new_call(gateway, tenant, integration, secret)
    audio = os.urandom(300_000)  # several 64 KiB segments, not a multiple of one
    status, rec, headers = await gateway.request(
        "POST", f"/v1/calls/{call['id']}/recordings", data=audio,
        headers={**tenant.auth, "Content-Type": "audio/wav"})
    assert status == 201, rec
    assert rec["length"] == len(audio)
    url = f"/v1/recordings/{rec['id']}/audio"
    status, body, headers = await gateway.request("GET", url, headers=tenant.auth)
    assert status == 200 and body == audio
    assert headers["Content-Type"] == "audio/wav"
    for a, b in ((0, 0), (10, 99), (65530, 65545), (131072, 196607), (299_990, 299_999)):
        status, body, headers = await gateway.request(
            "GET", url, headers={**tenant.auth, "Range": f"bytes={a}-{b}"})
        assert status == 206 and body == audio[a:b + 1]
        assert headers["Content-Range"] == f"bytes {a}-{b}/{len(audio)}"
    status, body, _ = await gateway.request("GET", url,
                                            headers={**tenant.auth, "Range": "bytes=-100"})
    assert status == 206 and body == audio[-100:]
    status, body, _ = await gateway.request("GET", url,
                                            headers={**tenant.auth, "Range": "bytes=299000-"})
    assert status == 206 and body == audio[299000:]
    status, body, headers = await gateway.request(
        "GET", url, headers={**tenant.auth, "Range": "bytes=400000-500000"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(audio)}"
    _, detail, _ = await gateway.request("GET", f"/v1/calls/{call['id']}", headers=tenant.auth)
    assert [r["id"] for r in detail["recordings"]] == [rec["id"]]
    other = await gateway.new_tenant("other")
    status, _, _ = await gateway.request("GET", url, headers=other.auth)
    assert status == 404


async def test_empty_and_exact_segment_multiple_uploads_round_trip(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    call = await _new_call(gateway, tenant, integration, secret)
    for audio in (b"", os.urandom(65536), os.urandom(131072)):
        status, rec, _ = await gateway.request(
            "POST", f"/v1/calls/{call['id']}/recordings", data=audio, headers=tenant.auth)
        assert status == 201
        status, body, headers = await gateway.request(
            "GET", f"/v1/recordings/{rec['id']}/audio", headers=tenant.auth)
        assert status == 200 and body == audio
        assert headers["Content-Type"] == "application/octet-stream"


async def test_nothing_readable_at_rest(gateway):
    tenant, secret, integration = await setup_standard(gateway)
    await deliver(gateway, integration, secret, call_updated(
        "pc-rest", "completed", from_number=NUMBERS["from"], to_number=NUMBERS["to"]))
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    call = page["items"][0]
    audio = os.urandom(200_000)
    status, _, _ = await gateway.request("POST", f"/v1/calls/{call['id']}/recordings",
                                         data=audio, headers=tenant.auth)
    assert status == 201
    # Let SQLite write everything it will write, then look at every byte on disk.
    await asyncio.sleep(0)
    needles = list(NUMBER_FORMS) + [secret.encode(), secret.removeprefix("whsec_").encode(),
                                    tenant.api_key.encode()]
    needles += [audio[i:i + 64] for i in range(0, len(audio) - 64, 4096)]
    assert scan_tree_for(gateway.config.data_dir, needles) == []
    # The API key is stored only as a hash (its secret is everything after prefix_keyid_;
    # token_urlsafe may contain "_", so never split on the last one).
    secret_part = tenant.api_key.split("_", 2)[2].encode()
    assert scan_tree_for(gateway.config.data_dir, [secret_part]) == []


async def test_health_and_readiness(gateway):
    status, body, _ = await gateway.request("GET", "/healthz")
    assert status == 200 and body["status"] == "ok"
    status, body, _ = await gateway.request("GET", "/readyz")
    assert status == 200 and body["checks"] == {"database": True, "blob_store": True}
