"""Data-subject requests by phone number, end to end over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import timedelta

import pytest

import keys
from tests.lifecycle.helpers import make_env

SUBJECT = "+14155550123"
# The same number as people write it.
FORMS = ["+1 (415) 555-0123", "1-415-555-0123", "tel:+14155550123", "+1.415.555.0123"]
AUDIO = bytes(range(256)) * 700   # 179 200 bytes: several blob segments, not a multiple of 3


async def _setup(gateway):
    env = await make_env(gateway)
    a = await env.call("a", from_number=SUBJECT, to_number="+14155550199")
    b = await env.call("b", from_number="+14155550199", to_number="+1 415 555 0123")
    other = await env.call("o", from_number="+14155550198", to_number="+14155550199")
    rec = await env.recording(a, AUDIO)
    return env, a, b, other, rec


async def test_search_by_any_formatting_matches_exactly(gateway):
    env, a, b, other, _ = await _setup(gateway)
    for form in FORMS:
        code, result, _ = await env.request("POST", "/v1/subjects/search",
                                            json={"phone_number": form})
        assert code == 200, result
        found = {c["id"]: c["matched_as"] for c in result["calls"]}
        assert found == {a: ["from"], b: ["to"]}
        request = result["request"]
        assert request["kind"] == "search" and request["status"] == "completed"
        assert request["phone_number"] == SUBJECT and request["receipt"] == {"calls": 2}
    # A number sharing nothing: no calls, still a request with a receipt.
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": "+4930123456789"})
    assert result["calls"] == []
    code, problem, _ = await env.request("POST", "/v1/subjects/search",
                                         json={"phone_number": "call me maybe"})
    assert code == 422 and "call me" not in json.dumps(problem)
    # Another tenant's subject search sees nothing of this tenant.
    stranger = await make_env(gateway, "stranger")
    code, result, _ = await stranger.request("POST", "/v1/subjects/search",
                                             json={"phone_number": SUBJECT})
    assert result["calls"] == []


async def test_every_request_has_id_due_date_receipt_and_audit_entry(gateway):
    env, *_ = await _setup(gateway)
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": SUBJECT})
    request = result["request"]
    received = gateway.clock.now()
    assert request["due_at"].startswith((received + timedelta(days=30)).strftime("%Y-%m-%d"))
    code, again, _ = await env.request("GET", f"/v1/subjects/requests/{request['id']}")
    assert code == 200 and again == request
    code, listing, _ = await env.request("GET", "/v1/subjects/requests")
    assert [r["id"] for r in listing["items"]] == [request["id"]]
    entries = [e for e in await env.audit_entries() if e["kind"] == "dsr"]
    assert len(entries) == 1 and entries[0]["seq"] == request["audit_seq"]
    assert entries[0]["details"]["request_id"] == request["id"]
    assert entries[0]["details"]["type"] == "search"
    assert "4155550123" not in json.dumps(entries)
    # The number is sealed at rest.
    row = await gateway.services.db.fetchone("SELECT subject FROM subject_requests")
    assert b"4155550123" not in bytes(row["subject"])
    stranger = await make_env(gateway, "stranger")
    code, _, _ = await stranger.request("GET", f"/v1/subjects/requests/{request['id']}")
    assert code == 404


async def test_export_bundle_has_calls_events_and_recordings(gateway):
    env, a, b, other, rec = await _setup(gateway)
    await env.event("a", "in-progress")
    async with gateway.http.post(gateway.url + "/v1/subjects/export", headers=env.auth,
                                 json={"phone_number": FORMS[0]}) as response:
        assert response.status == 200
        headers = response.headers
        raw = await response.read()
    assert "attachment" in headers["Content-Disposition"]
    assert headers["Content-Type"].startswith("application/json")
    bundle = json.loads(raw)
    assert bundle["format"] == "vgw-subject-export/1" and bundle["subject"] == SUBJECT
    calls = {c["id"]: c for c in bundle["calls"]}
    assert set(calls) == {a, b}
    assert calls[a]["from"] == SUBJECT and calls[b]["to"] == SUBJECT
    assert sorted(e["body"]["status"] for e in calls[a]["events"]) == ["completed",
                                                                        "in-progress"]
    [recording] = calls[a]["recordings"]
    assert recording["id"] == rec and recording["length"] == len(AUDIO)
    assert base64.b64decode(recording["audio_base64"]) == AUDIO
    assert bundle["summary"] == {"calls": 2, "events": 3, "recordings": 1,
                                 "audio_bytes": len(AUDIO)}
    request_id = headers["Location"].rsplit("/", 1)[1]
    code, request, _ = await env.request("GET", f"/v1/subjects/requests/{request_id}")
    assert request["status"] == "completed"
    assert request["receipt"]["bundle_sha256"] == hashlib.sha256(raw).hexdigest()


async def test_erase_deletes_calls_events_recordings_and_reports_held(gateway):
    env, a, b, other, rec = await _setup(gateway)
    held = await env.call("h", from_number=SUBJECT)
    await env.request("POST", "/v1/legal-holds",
                      json={"scope": "call", "call_id": held, "reason": "litigation"})
    assert await env.blob_exists(rec)
    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": FORMS[1]})
    assert code == 200, result
    assert result["status"] == "completed_with_exceptions"
    assert result["receipt"]["deleted"] == {"call_metadata": 2, "call_events": 2,
                                            "recordings": 1}
    assert result["receipt"]["held"] == 1 and result["receipt"]["held_call_ids"] == [held]
    assert await env.count("calls", "id IN (?, ?)", (a, b)) == 0
    assert await env.count("calls", "id IN (?, ?)", (held, other)) == 2
    assert await env.count("blob_keys", "object_id = ?", (rec,)) == 0
    assert not await env.blob_exists(rec) and await env.count("blob_tombstones") == 0
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": SUBJECT})
    assert [c["id"] for c in result["calls"]] == [held] and result["calls"][0]["legal_hold"]
    entries = await env.audit_entries()
    dsr = [e for e in entries if e["kind"] == "dsr" and e["details"]["type"] == "erase"]
    assert dsr[0]["outcome"] == "completed_with_exceptions"
    assert set(dsr[0]["details"]["call_ids_sha256"]) == {
        hashlib.sha256(i.encode()).hexdigest() for i in (a, b)}
    receipts = [e for e in entries if e["kind"] == "deletion_receipt"]
    assert receipts and receipts[0]["details"]["trigger"] == "subject_erasure"
    # A later delivery for an erased call starts a new call (parties sealed again).
    new_id = await env.call("a", from_number=SUBJECT)
    assert new_id != a
    code, call, _ = await env.request("GET", f"/v1/calls/{new_id}")
    assert call["from"] == SUBJECT


async def test_restrict_sets_restricted_at_and_lift_clears_it(gateway):
    env, a, b, other, _ = await _setup(gateway)
    code, result, _ = await env.request("POST", "/v1/subjects/restrict",
                                        json={"phone_number": SUBJECT})
    assert code == 200 and result["receipt"] == {"restricted": 2, "already_restricted": 0}
    rows = await gateway.services.db.fetchall(
        "SELECT id, restricted_at FROM calls WHERE tenant_id = ?", (env.tenant.id,))
    state = {r["id"]: r["restricted_at"] for r in rows}
    assert state[a] and state[b] and state[other] is None
    code, result, _ = await env.request("POST", "/v1/subjects/restrict",
                                        json={"phone_number": SUBJECT})
    assert result["receipt"] == {"restricted": 0, "already_restricted": 2}
    code, result, _ = await env.request("POST", "/v1/subjects/restrict",
                                        json={"phone_number": SUBJECT, "lift": True})
    assert result["receipt"] == {"lifted": 2, "not_restricted": 0}
    assert await env.count("calls", "restricted_at IS NOT NULL") == 0


async def test_rectify_reseals_parties_and_moves_the_blind_index(gateway):
    env, a, b, other, _ = await _setup(gateway)
    corrected = "+14155550124"
    code, result, _ = await env.request("POST", "/v1/subjects/rectify", json={
        "phone_number": SUBJECT, "corrected_number": "+1 415 555 0124"})
    assert code == 200, result
    assert result["receipt"]["rectified"] == 2 and result["status"] == "completed"
    assert result["corrected_number"] == corrected
    code, call, _ = await env.request("GET", f"/v1/calls/{a}")
    assert call["from"] == corrected and call["to"] == "+14155550199"
    code, call, _ = await env.request("GET", f"/v1/calls/{b}")
    assert call["to"] == corrected and call["from"] == "+14155550199"
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    row = await gateway.services.db.fetchone("SELECT from_index, to_index FROM calls"
                                             " WHERE id = ?", (a,))
    assert row["from_index"] == ring.blind_index(corrected)
    code, found, _ = await env.request("POST", "/v1/subjects/search",
                                       json={"phone_number": corrected})
    assert {c["id"] for c in found["calls"]} == {a, b}
    code, found, _ = await env.request("POST", "/v1/subjects/search",
                                       json={"phone_number": SUBJECT})
    assert found["calls"] == []
    code, problem, _ = await env.request("POST", "/v1/subjects/rectify", json={
        "phone_number": corrected, "corrected_number": corrected})
    assert code == 422


async def test_rectify_leaves_held_calls_alone(gateway):
    env, a, b, other, _ = await _setup(gateway)
    await env.request("POST", "/v1/legal-holds",
                      json={"scope": "phone_number", "phone_number": SUBJECT, "reason": "x"})
    code, result, _ = await env.request("POST", "/v1/subjects/rectify", json={
        "phone_number": SUBJECT, "corrected_number": "+14155550124"})
    assert result["status"] == "completed_with_exceptions"
    assert result["receipt"]["rectified"] == 0 and result["receipt"]["held"] == 2
    code, call, _ = await env.request("GET", f"/v1/calls/{a}")
    assert call["from"] == SUBJECT


@pytest.fixture
def small_segments(monkeypatch):
    """Unit keys written two at a time (a call's parties and event land in a segment of
    their own) and a segment cache of two: a subject's calls span more segments than the
    cache holds, as a frequent caller's do in a large store."""
    from gateway.lifecycle import unit_keys
    from gateway.store.keystore import FileKeyStore, S3KeyStore
    monkeypatch.setattr(unit_keys, "SEGMENT_CACHE", 2)
    monkeypatch.setattr(FileKeyStore, "unit_keys_ahead", 2)
    monkeypatch.setattr(S3KeyStore, "unit_keys_ahead", 2)


async def test_erase_reaches_every_call_when_they_span_more_segments_than_the_cache(
        small_segments, gateway):
    env = await make_env(gateway)
    subject_calls, others = [], []
    for i in range(6):
        subject_calls.append(await env.call(f"s{i}", from_number=SUBJECT))
        others.append(await env.call(f"o{i}", from_number="+14155550198"))
    units = gateway.services.keyring.units
    segments = {keys.unit_ref(bytes(r["parties"]))[0] for r in await gateway.services.db.fetchall(
        "SELECT parties FROM calls WHERE tenant_id = ?", (env.tenant.id,))}
    assert len(segments) > 2 * 2, "the calls must span more segments than the cache holds"
    units._cache.clear()
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": SUBJECT})
    assert sorted(c["id"] for c in result["calls"]) == sorted(subject_calls)
    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": SUBJECT})
    assert code == 200 and result["status"] == "completed", result
    assert result["receipt"]["deleted"]["call_metadata"] == len(subject_calls)
    assert result["receipt"]["deleted"]["call_events"] == len(subject_calls)
    assert await env.count("calls", f"id IN ({','.join('?' * 6)})", tuple(subject_calls)) == 0
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": SUBJECT})
    assert result["calls"] == []
    # The other calls and their keys are intact, read through the API.
    for call_id in others:
        code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
        assert code == 200 and call["from"] == "+14155550198"
    # The erased calls' keys are gone from the key store itself, not just the cache.
    receipts = [e for e in await units.ledger(env.tenant.id) if e.get("calls")]
    assert sorted(c for e in receipts for c in e["calls"]) == sorted(subject_calls)
    tenant = uuid.UUID(env.tenant.id)
    for text in (t for e in receipts for t in e["units"]):
        segment, _, entry = text.partition(".")
        data = await units.key_store.get(f"{tenant}/units/{segment}")
        assert data is None or uuid.UUID(entry) not in keys.decode_segment(
            await units.wrapping_key(env.tenant.id), tenant, uuid.UUID(segment), data)
