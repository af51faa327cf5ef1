"""The gated diagnostic reads: the technical view is an allow-list, audio needs an audio
grant, restricted calls give no audio, and the read is logged durably before the first byte
of the answer, or refused if it cannot be logged (fail closed)."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta

from adapters.events import CallEvent
from tests.access.conftest import approve, log_entries, make_call, raw_sql, request_access

NUMBERS = ("+14155550100", "+442071838750")
NUMBER_FORMS = ("14155550100", "4155550100", "415-555-0100", "442071838750", "2071838750",
                "5550100", "7183 8750")

# Written here from the issue, not imported from the code under test: the only keys a
# technical view may ever contain, by path ("[]" is a list item).
ALLOWED_PATHS = {
    "call", "call.id", "call.integration_id", "call.platform", "call.platform_call_id",
    "call.status", "call.direction", "call.started_at", "call.ended_at",
    "call.duration_seconds", "call.created_at", "call.updated_at", "call.restricted",
    "call.key_version", "call.parties", "call.parties.from", "call.parties.to",
    "timings", "timings.first_received_at", "timings.last_received_at", "timings.events",
    "timings.setup_seconds", "timings.duration_seconds",
    "status_history", "status_history[]", "status_history[].kind", "status_history[].status",
    "status_history[].occurred_at", "status_history[].received_at",
    "status_history[].delivery_delay_ms", "status_history[].sequence",
    "status_history[].diagnostics", "status_history[].diagnostics.hangup_cause",
    "status_history[].diagnostics.sip_hangup_cause", "status_history[].diagnostics.ErrorCode",
    "status_history[].diagnostics.call_quality_stats",
    "status_history[].diagnostics.call_quality_stats.inbound",
    "status_history[].diagnostics.call_quality_stats.inbound.mos",
    "status_history[].diagnostics.call_quality_stats.inbound.packet_count",
    "deliveries", "recordings", "recordings[]", "recordings[].id", "recordings[].state",
    "recordings[].source", "recordings[].created_at", "recordings[].updated_at",
    "recordings[].key_version", "recordings[].stats", "recordings[].stats.codec",
    "recordings[].stats.rms_dbfs", "recordings[].stats.silence_ratio",
    "recordings[].stats.duration_ms",
    "retention", "retention[]", "retention[].data_class", "retention[].policy_days",
    "retention[].delete_after", "retention[].legal_hold", "retention[].state",
    "grant", "grant.id", "grant.level", "grant.expires_at", "grant.single_use",
}


def walk(value, path=""):
    """Every key path in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            yield child
            yield from walk(item, child)
    elif isinstance(value, list):
        for item in value:
            yield f"{path}[]"
            yield from walk(item, f"{path}[]")


def check_schema(value, schema, schemas, path="$"):
    """A JSON Schema subset (type, properties, additionalProperties, items, $ref, pattern):
    enough to hold the response to the served OpenAPI document."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    types = schema.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
             "integer": int, "number": (int, float)}
    if types:
        assert any(isinstance(value, kinds[t]) and not (t in ("integer", "number") and
                                                          isinstance(value, bool))
                   for t in types), (path, value, types)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), (path, set(value) - set(props))
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], schemas, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_schema(item, schema["items"], schemas, f"{path}[{i}]")
    if isinstance(value, str) and "pattern" in schema:
        import re
        assert re.fullmatch(schema["pattern"], value), (path, value)


async def setup_with_diagnostics(gateway):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant, from_number=NUMBERS[0], to_number=NUMBERS[1])
    # A later event with platform diagnostics, including fields that must never reach staff
    # (as if an adapter had let them through): digits, a number, free text.
    integration_id = (await gateway.services.db.fetchone(
        "SELECT integration_id FROM calls WHERE id = ?", (call_id,)))["integration_id"]
    integration = await gateway.services.integrations.load_for_delivery("standard",
                                                                        integration_id)
    event = CallEvent(
        platform="standard", dedupe_key="diag-1", platform_call_id="pc-1", status="completed",
        occurred_at=datetime(2026, 3, 1, 10, 0, 43, tzinfo=UTC), sequence=7,
        diagnostics={"hangup_cause": "normal_clearing", "sip_hangup_cause": "200",
                     "ErrorCode": "+14155550100", "Digits": "1234#", "caller": NUMBERS[0],
                     "call_quality_stats": {"inbound": {"mos": 4.5, "packet_count": 1200,
                                                        "note": "hello"}},
                     "transcript": "hello there"})
    gateway.clock.advance(seconds=1)
    await gateway.services.ingest.ingest_events(integration, [event])
    status, recording, _ = await gateway.request(
        "POST", f"/v1/calls/{call_id}/recordings", data=b"RIFF-secret-audio" * 100,
        headers={**tenant.auth, "Content-Type": "audio/wav"})
    assert status == 201
    raw_sql(gateway, "UPDATE recordings SET stats = ? WHERE id = ?", (json.dumps({
        "codec": "pcm_s16le", "rms_dbfs": -21.5, "silence_ratio": 0.1, "duration_ms": 42000,
        "levels_per_100ms": [1, 2, 3], "transcript": "hello", "speaker": NUMBERS[0]}),
        recording["id"]))
    return tenant, staff, call_id, recording


async def test_technical_view_is_allow_listed_masked_and_schema_true(gateway):
    tenant, staff, call_id, recording = await setup_with_diagnostics(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, req["id"])
    status, view, headers = await gateway.request(
        "GET", f"/v1/staff/diagnostics/calls/{call_id}", headers=staff["auth"])
    assert status == 200, view
    assert headers["Cache-Control"] == "no-store"
    paths = set(walk(view))
    assert paths <= ALLOWED_PATHS, paths - ALLOWED_PATHS
    assert view["call"]["parties"] == {"from": "+1415*****00", "to": "+4420******50"}
    # Parties and recordings are under their own unit keys (issue 11), outside the KEK
    # versions.
    assert view["call"]["key_version"] is None and view["recordings"][0]["key_version"] is None
    assert view["recordings"][0]["stats"] == {"codec": "pcm_s16le", "rms_dbfs": -21.5,
                                              "silence_ratio": 0.1, "duration_ms": 42000}
    [with_diag] = [e for e in view["status_history"] if e.get("sequence") == 7]
    diag = with_diag["diagnostics"]
    assert diag == {"hangup_cause": "normal_clearing", "sip_hangup_cause": "200",
                    "call_quality_stats": {"inbound": {"mos": 4.5, "packet_count": 1200}}}
    assert with_diag["delivery_delay_ms"] is not None
    # Retention per data class: the tenant's days (defaults here) counted from the call's
    # start, its first event and its recording, a child never outliving its call; no hold,
    # nothing due yet.
    def after(start, days):
        return datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(days=days)

    retention = {r["data_class"]: r for r in view["retention"]}
    assert list(retention) == ["call_metadata", "call_events", "recordings", "diagnostics"]
    call_due = after(view["call"]["started_at"], 365)
    for data_class, days, start in [
            ("call_metadata", 365, view["call"]["started_at"]),
            ("call_events", 90, view["timings"]["first_received_at"]),
            ("recordings", 30, view["recordings"][0]["created_at"]),
            ("diagnostics", 30, view["recordings"][0]["created_at"])]:
        entry = retention[data_class]
        assert entry["policy_days"] == days and entry["legal_hold"] is False, entry
        assert entry["state"] == "retained", entry
        assert after(entry["delete_after"], 0) == min(after(start, days), call_due), entry
    assert view["grant"]["id"] == req["id"]
    text = json.dumps(view)
    for needle in (*NUMBERS, *NUMBER_FORMS, "1234#", "hello", "RIFF", "secret-audio"):
        assert needle not in text, needle
    # The response holds to the schema the gateway publishes (every object closed).
    _, doc, _ = await gateway.request("GET", "/v1/openapi.json")
    schemas = doc["components"]["schemas"]
    check_schema(view, {"$ref": "#/components/schemas/TechnicalView"}, schemas)

    def closed(schema):
        if schema.get("type") in (["object", "null"], "object") and "properties" in schema:
            assert schema["additionalProperties"] is False
            for sub in schema["properties"].values():
                closed(sub)
        if "items" in schema:
            closed(schema["items"])
    closed(schemas["TechnicalView"])


async def test_audio_needs_an_audio_grant_and_is_refused_for_restricted_calls(gateway):
    tenant, staff, call_id, recording = await setup_with_diagnostics(gateway)
    audio_path = f"/v1/staff/diagnostics/calls/{call_id}/audio"
    technical = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, technical["id"])
    status, body, _ = await gateway.request("GET", audio_path, headers=staff["auth"])
    assert status == 403 and body["reason"] == "level"
    audio = await request_access(gateway, staff, tenant, calls=[call_id], level="audio",
                                 reference="OPS-77")
    await approve(gateway, tenant, audio["id"])
    status, body, headers = await gateway.request("GET", audio_path, headers=staff["auth"])
    assert status == 200 and body == b"RIFF-secret-audio" * 100
    assert headers["Content-Type"] == "audio/wav"
    status, body, _ = await gateway.request("GET", audio_path,
                                            headers={**staff["auth"], "Range": "bytes=0-3"})
    assert status == 206 and body == b"RIFF"
    # A DSR restriction on the call: no audio (and the refusal is logged).
    raw_sql(gateway, "UPDATE calls SET restricted_at = ? WHERE id = ?",
            ("2026-03-02T00:00:00.000000Z", call_id))
    status, body, _ = await gateway.request("GET", audio_path, headers=staff["auth"])
    assert status == 403 and body["reason"] == "restricted"
    entries = log_entries(gateway, tenant.id)
    reads = [(e["kind"], e["outcome"], e["details"].get("reason"), e["details"]["endpoint"])
             for e in entries if e["kind"] in ("diagnostic_read", "refused_read")]
    assert reads == [("refused_read", "refused", "level", "audio"),
                     ("diagnostic_read", "served", None, "audio"),
                     ("diagnostic_read", "served", None, "audio"),
                     ("refused_read", "refused", "restricted", "audio")]
    served = [e for e in entries if e["kind"] == "diagnostic_read"]
    assert served[0]["details"]["recording_id"] == recording["id"]
    assert served[0]["grant_id"] == audio["id"] and served[0]["scope"]["level"] == "audio"


async def test_read_is_durable_before_the_first_byte(gateway):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    audio_bytes = os.urandom(4 * 1024 * 1024)
    status, _, _ = await gateway.request("POST", f"/v1/calls/{call_id}/recordings",
                                         data=audio_bytes, headers=tenant.auth)
    assert status == 201
    req = await request_access(gateway, staff, tenant, calls=[call_id], level="audio")
    await approve(gateway, tenant, req["id"])
    before = len(log_entries(gateway, tenant.id))
    url = f"{gateway.url}/v1/staff/diagnostics/calls/{call_id}/audio"
    async with gateway.http.get(url, headers=staff["auth"]) as response:
        # The status line has arrived (the first byte of the answer), most of the body has
        # not: the entry must already be committed, visible to another connection.
        assert response.status == 200
        entries = log_entries(gateway, tenant.id)
        assert len(entries) == before + 1
        assert (entries[-1]["kind"], entries[-1]["outcome"]) == ("diagnostic_read", "served")
        first = await response.content.read(1024)
        assert first == audio_bytes[:1024]
        rest = await response.read()
    assert first + rest == audio_bytes


async def test_read_is_refused_when_the_log_cannot_be_written(gateway):
    tenant, staff, call_id, _ = await setup_with_diagnostics(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id], level="audio",
                               single_use=True)
    await approve(gateway, tenant, req["id"])
    before = log_entries(gateway, tenant.id)
    # Make every append fail, as a full disk or a broken database would.
    raw_sql(gateway, "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_entries "
                     "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;")
    for path in (f"/v1/staff/diagnostics/calls/{call_id}",
                 f"/v1/staff/diagnostics/calls/{call_id}/audio"):
        status, body, headers = await gateway.request("GET", path, headers=staff["auth"])
        assert status == 503, body
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["type"] == "urn:vgw:problem:audit-unavailable"
        text = json.dumps(body)
        assert "+1415" not in text and "RIFF" not in text and call_id not in text
    # The transparency log itself fails closed too.
    status, _, _ = await gateway.request("GET", "/v1/transparency/checkpoint",
                                         headers=tenant.auth)
    assert status == 503
    raw_sql(gateway, "DROP TRIGGER fail_audit;")
    assert log_entries(gateway, tenant.id) == before
    # Nothing was consumed by the refused attempts: the single-use grant still works once.
    status, _, _ = await gateway.request("GET", f"/v1/staff/diagnostics/calls/{call_id}",
                                         headers=staff["auth"])
    assert status == 200
    status, _, _ = await gateway.request("GET", f"/v1/staff/diagnostics/calls/{call_id}",
                                         headers=staff["auth"])
    assert status == 403


async def test_values_of_the_wrong_kind_stay_out(gateway):
    """An allow-listed key still only passes values of its kind: a platform call id that
    looks like a phone number (a tenant's own platform may use one) is dropped."""
    tenant, staff, call_id, _ = await setup_with_diagnostics(gateway)
    conn = sqlite3.connect(gateway.config.database_path)
    conn.execute("UPDATE calls SET platform_call_id = ? WHERE id = ?", ("+14155550100", call_id))
    conn.commit()
    conn.close()
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, req["id"])
    _, view, _ = await gateway.request("GET", f"/v1/staff/diagnostics/calls/{call_id}",
                                       headers=staff["auth"])
    assert view["call"].get("platform_call_id") is None
    assert "4155550100" not in json.dumps(view)


async def test_setup_time_is_start_to_answer_and_never_negative(gateway):
    """The view's setup time is what a support engineer means by it: from the call's
    start to its answer, whatever order the events came in; unanswered calls have none."""
    from tests.support.signers import call_updated, new_whsec, standard_delivery
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    started = gateway.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    async def deliver(call: str, status: str) -> None:
        raw, headers = standard_delivery(secret, call_updated(call, status, started_at=started),
                                         gateway.clock.now())
        code, body, _ = await gateway.request(
            "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
        assert code == 200, body

    await deliver("answered", "ringing")
    await deliver("unanswered", "ringing")
    gateway.clock.advance(seconds=7)
    await deliver("answered", "in-progress")
    await deliver("unanswered", "no-answer")
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    ids = {c["platform_call_id"]: c["id"] for c in page["items"]}
    request = await request_access(gateway, staff, tenant, calls=list(ids.values()))
    await approve(gateway, tenant, request["id"])
    setup = {}
    for name, call_id in ids.items():
        status, view, _ = await gateway.request(
            "GET", f"/v1/staff/diagnostics/calls/{call_id}", headers=staff["auth"])
        assert status == 200, view
        setup[name] = view["timings"]["setup_seconds"]
    assert setup == {"answered": 7, "unanswered": None}
