"""Hostile JSON over every JSON route of the tenant and staff APIs, through real HTTP.

Each route starts from a valid body and gets it back with fields replaced by hostile
values (tests/hostile/strategies.py). What must hold (issue 13, item 1): never a 5xx;
every refusal is application/problem+json; a 400/422 about a field names it.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.strategies import dumps, hostile_variants
from tests.support.server import RunningGateway
from tests.support.signers import new_whsec

EXAMPLES = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def valid_bodies(tenant_id: str) -> dict[tuple[str, str], dict]:
    number = {"phone_number": "+14155550100"}
    return {
        ("POST", "/v1/integrations"): {"platform": "standard", "name": "crm",
                                       "credentials": {"secret": new_whsec()},
                                       "options": {"store_audio": True}},
        ("PUT", "/v1/access-policy"): {"rules": {"operability": {"technical": "auto_approve"},
                                                 "*": {"audio": "deny"}},
                                       "pending_ttl_seconds": 3600,
                                       "max_grant_seconds": 7200},
        ("PUT", "/v1/access-policy/webhook"): {"url": "https://hooks.example.com/access",
                                               "secret": new_whsec()},
        ("PUT", "/v1/retention"): {"call_metadata": 30, "recordings": 7},
        ("POST", "/v1/legal-holds"): {"scope": "phone_number", "reason": "litigation",
                                      "phone_number": "+14155550100",
                                      "ends_at": "2099-01-01T00:00:00Z"},
        ("POST", "/v1/subjects/search"): number,
        ("POST", "/v1/subjects/export"): number,
        ("POST", "/v1/subjects/restrict"): {**number, "lift": False},
        ("POST", "/v1/subjects/rectify"): {**number, "corrected_number": "+14155550101"},
        ("POST", "/v1/subjects/erase"): number,
        ("POST", "/v1/staff/access-requests"): {
            "tenant": tenant_id, "purpose": "fault_diagnostics", "reference": "OPS-4711",
            "level": "technical", "duration_seconds": 3600, "single_use": False,
            "scope": {"window": {"since": "2026-01-01T00:00:00Z",
                                 "until": "2026-01-01T06:00:00+01:00"}}},
    }


ROUTES = sorted(valid_bodies(str(uuid.uuid4())))


@pytest.mark.parametrize(("method", "path"), ROUTES)
@EXAMPLES
@given(data=st.data())
async def test_hostile_bodies_never_crash(gateway: RunningGateway, method, path, data):
    if not hasattr(gateway, "_hostile_actors"):
        gateway._hostile_actors = (await gateway.new_tenant("Hostile Ltd"),
                                   await gateway.new_staff())
    tenant, staff = gateway._hostile_actors
    auth = staff["auth"] if path.startswith("/v1/staff/") else tenant.auth
    doc = data.draw(hostile_variants(valid_bodies(tenant.id)[(method, path)]))
    status, body, headers = await gateway.request(
        method, path, data=dumps(doc), headers={**auth, "Content-Type": "application/json"})
    assert status < 500, (status, body)
    if status >= 400:
        assert headers["Content-Type"].startswith("application/problem+json"), body
        if status in (400, 422) and "field" in body:
            assert body["field"] and len(body["field"]) <= 400
