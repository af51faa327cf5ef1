"""Issue 15 items 3-5 end to end: the tenant's staff rule refuses (403 naming the rule) and
the refusal is in its transparency log; staff reads from outside the tenant's region are
transfers, reported by GET /v1/transfers with entry indexes that prove into the log; a
region store that is down answers 503 to that region's tenants only."""

from __future__ import annotations

import base64
import json

import pytest

from tests.access.conftest import approve, make_call, request_access, set_policy
from tests.access.test_transparency_api import leaf_hash, verify_inclusion
from tests.regions.test_residency import pinned_tenant, upload

pytestmark = pytest.mark.parametrize("region_stores", ["files"], indirect=True)


async def entries(gateway, tenant) -> list[dict]:
    _, cp, _ = await gateway.request("GET", "/v1/transparency/checkpoint", headers=tenant.auth)
    _, page, _ = await gateway.request("GET", f"/v1/transparency/entries?start=0"
                                       f"&end={cp['size']}", headers=tenant.auth)
    return [json.loads(base64.b64decode(e["data"])) for e in page["entries"]]


async def test_staff_rule_refuses_and_the_refusal_is_logged(gateway):
    tenant = await pinned_tenant(gateway, "acme", "eu")
    call = await make_call(gateway, tenant)
    policy = await set_policy(gateway, tenant, {
        "rules": {"*": {"technical": "auto_approve"}},
        "staff": {"countries": ["DE", "FR", "NL"], "employers": ["Operator GmbH"]}})
    assert policy["staff"] == {"countries": ["DE", "FR", "NL"], "employers": ["Operator GmbH"]}
    far = await gateway.new_staff("Far Away", "Operator GmbH", "US")
    contractor = await gateway.new_staff("Con Tractor", "Outsourcing Ltd", "DE")
    insider = await gateway.new_staff("In Sider", "Operator GmbH", "FR")

    for staff, rule in ((far, "staff.countries"), (contractor, "staff.employers")):
        status, body, headers = await gateway.request(
            "POST", "/v1/staff/access-requests", headers=staff["auth"],
            json={"tenant": tenant.id, "scope": {"calls": [call]}, "purpose": "operability",
                  "reference": "OPS-1", "level": "technical"})
        assert status == 403 and headers["Content-Type"].startswith("application/problem+json")
        assert body["rule"] == rule and rule in body["detail"]
        assert body["type"] == "urn:vgw:problem:access-rule-refused"
    # The rest of the policy still applies to those the staff rule lets ask.
    granted = await request_access(gateway, insider, tenant, calls=[call])
    assert granted["state"] == "approved"

    refusals = [e for e in await entries(gateway, tenant)
                if e["kind"] == "access_request" and e["outcome"] == "refused"]
    assert [(e["details"]["rule"], e["actor"]["country"], e["actor"]["id"])
            for e in refusals] == [("staff.countries", "US", far["pseudonym"]),
                                   ("staff.employers", "DE", contractor["pseudonym"])]

    # Bad rules are 422 naming the field.
    for bad, field in (({"countries": ["Germany"]}, "staff.countries"),
                       ({"employers": "Operator GmbH"}, "staff.employers"),
                       ({"cities": ["Berlin"]}, "staff.cities")):
        status, body, _ = await gateway.request("PUT", "/v1/access-policy",
                                                headers=tenant.auth, json={"staff": bad})
        assert status == 422 and body["field"] == field, body


async def test_transfer_report_matches_the_log(gateway, clock):
    tenant = await pinned_tenant(gateway, "acme", "eu")
    call = await make_call(gateway, tenant)
    await set_policy(gateway, tenant, {"rules": {"*": {"technical": "require_approval"}}})
    start = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    us = await gateway.new_staff("Us Staff", "Operator GmbH", "US")
    de = await gateway.new_staff("De Staff", "Operator GmbH", "DE")
    india = await gateway.new_staff("In Staff", "Operator GmbH", "IN")
    for staff in (us, de):
        grant = await request_access(gateway, staff, tenant, calls=[call])
        await approve(gateway, tenant, grant["id"])
        status, view, _ = await gateway.request(
            "GET", f"/v1/staff/diagnostics/calls/{call}", headers=staff["auth"])
        assert status == 200, view
    # No legal basis configured for IN: refused before any read could be a transfer.
    refused = await request_access(gateway, india, tenant, calls=[call], expect=403)
    assert refused["rule"] == "transfers.legal_basis"

    status, report, _ = await gateway.request("GET", f"/v1/transfers?since={start}",
                                              headers=tenant.auth)
    assert status == 200, report
    assert [(i["country"], i["region"], i["legal_basis"], i["staff"]["id"])
            for i in report["items"]] == [("US", "eu", "standard contractual clauses",
                                           us["pseudonym"])]
    item = report["items"][0]
    # The item is the log entry at its index: same content, and it proves into the tree.
    log = await entries(gateway, tenant)
    entry = log[item["index"]]
    assert entry["kind"] == "diagnostic_read" and entry["details"]["transfer"] == {
        "country": "US", "region": "eu", "legal_basis": "standard contractual clauses"}
    _, cp, _ = await gateway.request("GET", "/v1/transparency/checkpoint", headers=tenant.auth)
    _, proof, _ = await gateway.request(
        "GET", f"/v1/transparency/proofs/inclusion?index={item['index']}&size={cp['size']}",
        headers=tenant.auth)
    _, page, _ = await gateway.request(
        "GET", f"/v1/transparency/entries?start={item['index']}&end={item['index'] + 1}",
        headers=tenant.auth)
    data = base64.b64decode(page["entries"][0]["data"])
    assert base64.b64encode(leaf_hash(data)).decode() == item["leaf_hash"]
    assert verify_inclusion(leaf_hash(data), item["index"], cp["size"],
                            [base64.b64decode(h) for h in proof["proof"]],
                            base64.b64decode(cp["root"]))
    # Every transfer entry in the log is in the report, and nothing else.
    assert [i for i, e in enumerate(log) if "transfer" in e["details"]] == [item["index"]]
    # A later `since` excludes it; bad input is 422.
    status, later, _ = await gateway.request("GET", "/v1/transfers?since=2999-01-01T00:00:00Z",
                                             headers=tenant.auth)
    assert status == 200 and later["items"] == []
    for bad in ("since=yesterday", "limit=0", "cursor=abc"):
        status, body, _ = await gateway.request("GET", f"/v1/transfers?{bad}",
                                                headers=tenant.auth)
        assert status == 422, (bad, body)


async def test_a_region_store_that_is_down_fails_only_its_tenants(gateway, config):
    eu = await pinned_tenant(gateway, "in-eu", "eu")
    us = await pinned_tenant(gateway, "in-us", "us")
    eu_call, us_call = await make_call(gateway, eu, platform_call_id="a"), \
        await make_call(gateway, us, platform_call_id="b")
    # The eu blob store goes away (its directory is replaced by a file: every operation
    # under it fails as a lost mount would).
    import shutil
    from pathlib import Path
    eu_blobs = Path(config.regions["eu"].blob_url.removeprefix("file://"))
    shutil.rmtree(eu_blobs)
    eu_blobs.write_bytes(b"")
    status, body, headers = await gateway.request(
        "POST", f"/v1/calls/{eu_call}/recordings",
        headers={**eu.auth, "Content-Type": "audio/wav"}, data=b"x" * 1000)
    assert status == 503 and "region eu" in body["detail"] and "Retry-After" in headers
    await upload(gateway, us, us_call)
    status, ready, _ = await gateway.request("GET", "/readyz")
    assert status == 200 and ready["degraded_regions"] == ["eu"]
    assert ready["regions"]["eu"]["blob_store"] is False
