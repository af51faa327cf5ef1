"""Staff access requests, the tenant's policy and decisions, grants and their clocks, over
real HTTP. Each invariant of issue 5 about requests and grants has a test here."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.clock import isoformat, parse_iso
from tests.access.conftest import (
    approve,
    log_entries,
    make_call,
    request_access,
    set_policy,
)


async def setup(gateway, name="acme"):
    tenant = await gateway.new_tenant(name)
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    return tenant, staff, call_id


async def read_view(gateway, staff, call_id, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return await gateway.request("GET", f"/v1/staff/diagnostics/calls/{call_id}"
                                 + (f"?{query}" if query else ""), headers=staff["auth"])


async def test_request_validation_422(gateway):
    tenant, staff, call_id = await setup(gateway)
    base = {"tenant": tenant.id, "scope": {"calls": [call_id]}, "purpose": "operability",
            "reference": "OPS-1", "level": "technical"}
    bad = [
        ({"purpose": "curiosity"}, "purpose"),
        ({"purpose": "marketing"}, "purpose"),
        ({"reference": None}, "reference"),
        ({"reference": ""}, "reference"),
        ({"reference": "+1 415 555 0100"}, "reference"),
        ({"level": "everything"}, "level"),
        ({"duration_seconds": 10 * 86400}, "duration_seconds"),
        ({"duration_seconds": 5}, "duration_seconds"),
        ({"scope": {"calls": []}}, "scope.calls"),
        ({"scope": {"calls": ["not-a-uuid"]}}, "scope.calls"),
        ({"scope": {"window": {"since": "2026-01-02T00:00:00Z",
                               "until": "2026-01-01T00:00:00Z"}}}, "scope.window"),
        ({"scope": {"window": {"since": "2025-01-01T00:00:00Z",
                               "until": "2026-01-01T00:00:00Z"}}}, "scope.window"),
        ({"tenant": "00000000-0000-4000-8000-000000000000"}, "tenant"),
        ({"single_use": "yes"}, "single_use"),
        ({"notes": "hello"}, "notes"),
    ]
    for change, field in bad:
        body = {**base, **change}
        if change.get("reference", "x") is None:
            body.pop("reference")
        status, problem, headers = await gateway.request(
            "POST", "/v1/staff/access-requests", headers=staff["auth"], json=body)
        assert status == 422, (change, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["field"] == field, (change, problem)
        assert "415 555" not in str(problem)
    # Nothing was requested, nothing logged.
    assert log_entries(gateway, tenant.id) == []


async def test_staff_never_approves_and_tenants_never_use_staff_routes(gateway):
    tenant, staff, call_id = await setup(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    for method, path in [("POST", f"/v1/access-requests/{req['id']}/approve"),
                         ("POST", f"/v1/access-requests/{req['id']}/deny"),
                         ("POST", f"/v1/grants/{req['id']}/revoke"),
                         ("GET", "/v1/access-requests"),
                         ("PUT", "/v1/access-policy"),
                         ("GET", "/v1/transparency/checkpoint")]:
        status, body, _ = await gateway.request(method, path, headers=staff["auth"], json={})
        assert status == 401, (path, body)
    for method, path in [("POST", "/v1/staff/access-requests"),
                         ("GET", f"/v1/staff/diagnostics/calls/{call_id}"),
                         ("GET", "/v1/staff/access-requests")]:
        status, body, _ = await gateway.request(method, path, headers=tenant.auth, json={})
        assert status == 401, (path, body)
    _, listed, _ = await gateway.request("GET", "/v1/access-requests", headers=tenant.auth)
    assert [r["state"] for r in listed["items"]] == ["pending"]


async def test_default_policy_requires_approval_and_grant_clock_starts_at_approval(gateway):
    tenant, staff, call_id = await setup(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id], duration_seconds=3600)
    assert req["state"] == "pending" and req["expires_at"] is None
    # Pending: no access yet, and the refusal is logged.
    status, body, _ = await read_view(gateway, staff, call_id)
    assert status == 403 and body["reason"] == "pending"
    gateway.clock.advance(minutes=30)
    approved_at = gateway.clock.now()
    granted = await approve(gateway, tenant, req["id"])
    assert granted["state"] == "approved"
    assert parse_iso(granted["starts_at"]) == approved_at
    assert parse_iso(granted["expires_at"]) == approved_at + timedelta(seconds=3600)
    status, view, _ = await read_view(gateway, staff, call_id)
    assert status == 200, view
    # 50 minutes after approval (80 after the request) the grant still holds...
    gateway.clock.advance(minutes=50)
    assert (await read_view(gateway, staff, call_id))[0] == 200
    # ...and an hour after approval it is over.
    gateway.clock.advance(minutes=10)
    status, body, _ = await read_view(gateway, staff, call_id)
    assert status == 403 and body["reason"] == "expired"
    kinds = [(e["kind"], e["outcome"]) for e in log_entries(gateway, tenant.id)]
    assert kinds == [("access_request", "pending"), ("refused_read", "refused"),
                     ("decision", "approved"), ("diagnostic_read", "served"),
                     ("diagnostic_read", "served"), ("expiry", "expired"),
                     ("refused_read", "refused")]
    _, listed, _ = await gateway.request("GET", f"/v1/access-requests/{req['id']}",
                                         headers=tenant.auth)
    assert listed["state"] == "expired" and listed["reads"] == 2


async def test_pending_request_expires_on_its_own_clock(gateway):
    tenant, staff, call_id = await setup(gateway)
    await set_policy(gateway, tenant, {"pending_ttl_seconds": 600})
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    assert parse_iso(req["pending_until"]) == gateway.clock.now() + timedelta(seconds=600)
    gateway.clock.advance(seconds=599)
    _, page, _ = await gateway.request("GET", "/v1/access-requests?state=pending",
                                       headers=tenant.auth)
    assert [r["id"] for r in page["items"]] == [req["id"]]
    gateway.clock.advance(seconds=1)
    status, body, _ = await gateway.request(
        "POST", f"/v1/access-requests/{req['id']}/approve", headers=tenant.auth)
    assert status == 409 and body["state"] == "expired"
    entries = log_entries(gateway, tenant.id)
    assert [e["kind"] for e in entries] == ["access_request", "expiry"]
    assert entries[1]["details"]["was"] == "pending"
    # The sweeper (not only a read or a decision) expires what is due.
    req2 = await request_access(gateway, staff, tenant, calls=[call_id], reference="OPS-2")
    gateway.clock.advance(seconds=601)
    assert await gateway.services.features["staff_access"].expire_due() == 1
    assert [e["kind"] for e in log_entries(gateway, tenant.id)][-1] == "expiry"
    _, got, _ = await gateway.request("GET", f"/v1/access-requests/{req2['id']}",
                                      headers=tenant.auth)
    assert got["state"] == "expired"


async def test_policy_auto_approve_deny_and_deny_wins(gateway):
    tenant, staff, call_id = await setup(gateway)
    policy = await set_policy(gateway, tenant, {"rules": {
        "fault_diagnostics": {"technical": "auto_approve", "audio": "auto_approve"},
        "operability": {"*": "auto_approve"},
        "*": {"audio": "deny"},
        "integration_analysis": {"technical": "deny", "audio": "auto_approve"},
    }, "max_grant_seconds": 1800})
    eff = policy["effective"]
    assert eff["fault_diagnostics"] == {"technical": "auto_approve", "audio": "deny"}
    assert eff["operability"] == {"technical": "auto_approve", "audio": "deny"}
    assert eff["integration_analysis"] == {"technical": "deny", "audio": "deny"}
    assert eff["legal_request"] == {"technical": "require_approval", "audio": "deny"}

    auto = await request_access(gateway, staff, tenant, calls=[call_id], duration_seconds=1800)
    assert auto["state"] == "approved" and auto["decided_by"] == "policy"
    assert (await read_view(gateway, staff, call_id))[0] == 200
    denied = await request_access(gateway, staff, tenant, calls=[call_id], level="audio")
    assert denied["state"] == "denied"
    denied2 = await request_access(gateway, staff, tenant, calls=[call_id],
                                   purpose="integration_analysis", level="audio")
    assert denied2["state"] == "denied"
    # The tenant's maximum bounds the request.
    await request_access(gateway, staff, tenant, calls=[call_id], duration_seconds=1801,
                         expect=422)
    # Invalid policies are refused.
    for bad in ({"rules": {"gossip": {"technical": "deny"}}},
                {"rules": {"operability": {"technical": "maybe"}}},
                {"pending_ttl_seconds": 1}, {"max_grant_seconds": 10 ** 9}, {"x": 1}):
        status, _, _ = await gateway.request("PUT", "/v1/access-policy", headers=tenant.auth,
                                             json=bad)
        assert status == 422, bad
    decisions = [e for e in log_entries(gateway, tenant.id) if e["kind"] == "decision"]
    assert [d["outcome"] for d in decisions] == ["approved", "denied", "denied"]
    assert all(d["actor"] == {"type": "system", "id": "access-policy"} for d in decisions)


async def test_tenant_denies_and_revocation_takes_effect_on_next_read(gateway):
    tenant, staff, call_id = await setup(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    status, denied, _ = await gateway.request(
        "POST", f"/v1/access-requests/{req['id']}/deny", headers=tenant.auth)
    assert status == 200 and denied["state"] == "denied"
    assert (await read_view(gateway, staff, call_id))[0] == 403
    await approve(gateway, tenant, req["id"], expect=409)

    req2 = await request_access(gateway, staff, tenant, calls=[call_id], reference="OPS-2")
    await approve(gateway, tenant, req2["id"])
    assert (await read_view(gateway, staff, call_id))[0] == 200
    status, revoked, _ = await gateway.request("POST", f"/v1/grants/{req2['id']}/revoke",
                                               headers=tenant.auth)
    assert status == 200 and revoked["state"] == "revoked"
    status, body, _ = await read_view(gateway, staff, call_id)
    assert status == 403 and body["reason"] == "revoked"
    status, _, _ = await gateway.request("POST", f"/v1/grants/{req2['id']}/revoke",
                                         headers=tenant.auth)
    assert status == 409
    # Another tenant cannot see or decide this tenant's requests.
    other = await gateway.new_tenant("other")
    status, _, _ = await gateway.request("POST", f"/v1/grants/{req2['id']}/revoke",
                                         headers=other.auth)
    assert status == 404
    kinds = [(e["kind"], e["outcome"]) for e in log_entries(gateway, tenant.id)]
    assert ("revocation", "revoked") in kinds
    assert kinds[-1] == ("refused_read", "refused")
    assert log_entries(gateway, tenant.id)[-1]["details"]["reason"] == "revoked"


async def test_single_use_grant_ends_after_one_read(gateway):
    tenant, staff, call_id = await setup(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id], single_use=True)
    await approve(gateway, tenant, req["id"])
    status, view, _ = await read_view(gateway, staff, call_id)
    assert status == 200 and view["grant"]["single_use"] is True
    status, body, _ = await read_view(gateway, staff, call_id)
    assert status == 403 and body["reason"] == "used"
    _, got, _ = await gateway.request("GET", f"/v1/staff/access-requests/{req['id']}",
                                      headers=staff["auth"])
    assert got["state"] == "used" and got["reads"] == 1


async def test_scope_calls_window_and_tenant_boundaries(gateway):
    tenant, staff, call_id = await setup(gateway)
    other_call = await make_call(gateway, tenant, platform_call_id="pc-2",
                                 started_at="2026-03-05T10:00:00Z")
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, req["id"])
    status, body, _ = await read_view(gateway, staff, other_call)
    assert status == 403 and body["reason"] == "out_of_scope"
    # A window covering only the second call.
    win = await request_access(gateway, staff, tenant, window={
        "since": "2026-03-05T00:00:00Z", "until": "2026-03-06T00:00:00Z"}, reference="OPS-9")
    await approve(gateway, tenant, win["id"])
    assert (await read_view(gateway, staff, other_call))[0] == 200
    # Naming a grant that does not cover the call is refused even if another would.
    status, body, _ = await read_view(gateway, staff, other_call, grant=req["id"])
    assert status == 403 and body["reason"] == "out_of_scope"
    # Another staff member has no grant at all.
    colleague = await gateway.new_staff("Kim Colleague")
    status, body, _ = await read_view(gateway, colleague, call_id)
    assert status == 403 and body["reason"] == "no_grant"
    # A call of another tenant, and a call that does not exist, look the same.
    other = await gateway.new_tenant("other")
    foreign = await make_call(gateway, other, platform_call_id="pc-x")
    s1, b1, _ = await read_view(gateway, staff, foreign)
    s2, b2, _ = await read_view(gateway, staff, "00000000-0000-4000-8000-000000000000")
    assert s1 == s2 == 403 and b1 == b2
    # The foreign tenant's log records the refused read; nothing of it in ours.
    foreign_entries = log_entries(gateway, other.id)
    assert [e["kind"] for e in foreign_entries] == ["refused_read"]
    assert foreign_entries[0]["actor"]["id"] == staff["pseudonym"]


async def test_staff_lists_own_requests_only(gateway):
    tenant, staff, call_id = await setup(gateway)
    colleague = await gateway.new_staff("Kim Colleague")
    mine = await request_access(gateway, staff, tenant, calls=[call_id])
    await request_access(gateway, colleague, tenant, calls=[call_id], reference="OPS-5")
    _, page, _ = await gateway.request("GET", "/v1/staff/access-requests",
                                       headers=staff["auth"])
    assert [r["id"] for r in page["items"]] == [mine["id"]]
    status, _, _ = await gateway.request("GET", f"/v1/staff/access-requests/{mine['id']}",
                                         headers=colleague["auth"])
    assert status == 404
    _, page, _ = await gateway.request("GET", "/v1/access-requests?limit=1",
                                       headers=tenant.auth)
    assert len(page["items"]) == 1 and page["next_cursor"]
    _, page2, _ = await gateway.request(
        "GET", f"/v1/access-requests?limit=1&cursor={page['next_cursor']}", headers=tenant.auth)
    assert len(page2["items"]) == 1 and page2["items"][0]["id"] != page["items"][0]["id"]


async def test_every_entry_names_who_why_and_what_and_carries_no_number(gateway):
    """Request, decision, expiry, revocation, read, refused read, log read: each entry has
    time, the staff pseudonym, employer and country, purpose, reference, scope, grant id and
    outcome; none carries a phone number or content."""
    tenant, staff, call_id = await setup(gateway)
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, req["id"])
    await read_view(gateway, staff, call_id)
    await gateway.request("POST", f"/v1/grants/{req['id']}/revoke", headers=tenant.auth)
    await read_view(gateway, staff, call_id)
    req2 = await request_access(gateway, staff, tenant, calls=[call_id], reference="OPS-2",
                                duration_seconds=60)
    await approve(gateway, tenant, req2["id"])
    gateway.clock.advance(seconds=61)
    await gateway.services.features["staff_access"].expire_due()
    await gateway.request("GET", "/v1/transparency/checkpoint", headers=tenant.auth)
    entries = log_entries(gateway, tenant.id)
    kinds = {e["kind"] for e in entries}
    assert kinds == {"access_request", "decision", "diagnostic_read", "revocation",
                     "refused_read", "expiry", "log_read"}
    import re
    digits = re.compile(r"\d[\d\s().+-]{5,}\d")
    for entry in entries:
        assert entry["time"].endswith("Z")
        if entry["kind"] == "log_read":
            assert entry["actor"]["type"] == "tenant"
            continue
        staff_info = entry["actor"] if entry["actor"]["type"] == "staff" \
            else entry["details"]["staff"]
        assert staff_info == {"type": "staff", "id": staff["pseudonym"],
                              "employer": "Operator GmbH", "country": "DE"}
        assert entry["purpose"] == "fault_diagnostics"
        assert entry["reference"] in ("OPS-4711", "OPS-2")
        assert entry["grant_id"] in (req["id"], req2["id"])
        assert entry["outcome"]
        assert call_id in str(entry["scope"])
        text = str(entry)
        for needle in ("4155550100", "2071838750", "415 555", "+1415"):
            assert needle not in text
        # Times, UUIDs and key ids (random hex) aside, no run of 7+ digits anywhere.
        scrubbed = re.sub(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z|[0-9a-f-]{36}|key-[0-9a-f]{16}|staff-[a-z0-9]+", "",
                          text)
        assert not digits.search(scrubbed), entry
    assert isoformat(gateway.clock.now()) >= entries[-1]["time"]
