"""Issue 13, items 2, 7 and 8, through real HTTP:
- authentication comes before validation on every authenticated route (a request with
  no credentials and garbage parameters is a 401, never a 4xx that reveals validation);
- notification endpoints follow the recording-fetch URL rules;
- a staff request naming calls outside the tenant is refused (422) and never logged.
"""

from __future__ import annotations

import re
import uuid

import pytest

from gateway.web.openapi import document
from tests.access.conftest import make_call
from tests.support.server import RunningGateway
from tests.support.signers import new_whsec

GARBAGE = {"since": "0001-01-01T00:00:00+01:00", "cursor": "%%%", "limit": "-1",
           "size": "0", "index": "x", "start": "-5", "end": "a", "old": "9", "new": "1",
           "grant": "not-an-id", "recording": "not-an-id", "state": "bogus"}


def authenticated_operations() -> list[tuple[str, str]]:
    out = []
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or not operation.get("security"):
                continue
            if operation["security"] == [{"ingestToken": []}]:
                # A per-integration token: the integration is looked up to check it, so an
                # unknown integration is a 404 (as for a webhook URL), not a 401.
                continue
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "not-an-id", path)))
    return out


@pytest.mark.parametrize(("method", "path"), authenticated_operations())
async def test_no_credentials_is_401_before_any_validation(gateway: RunningGateway, method,
                                                           path):
    status, body, headers = await gateway.request(
        method, path, params=GARBAGE, data=b"{" * 50,
        headers={"Content-Type": "application/json"})
    assert status == 401, (status, body)
    assert headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]/hook",
    "https://169.254.169.254/latest/meta-data", "https://localhost/hook",
    "https://printer.localhost/hook", "https://user:pw@hooks.example.com/hook",
    "http://hooks.example.com/hook", "https://hooks.example.com:99999/hook",
    "ftp://hooks.example.com/hook"])
async def test_notification_endpoint_follows_the_fetch_rules(gateway: RunningGateway, url):
    tenant = await gateway.new_tenant("Notify Ltd")
    status, body, _ = await gateway.request(
        "PUT", "/v1/access-policy/webhook", headers=tenant.auth,
        json={"url": url, "secret": new_whsec()})
    assert status == 422 and body["field"] == "url", body
    assert url not in body["detail"]


async def test_a_public_https_notification_endpoint_is_accepted(gateway: RunningGateway):
    tenant = await gateway.new_tenant("Notify Ltd")
    status, body, _ = await gateway.request(
        "PUT", "/v1/access-policy/webhook", headers=tenant.auth,
        json={"url": "https://hooks.example.com/access", "secret": new_whsec()})
    assert status == 200, body


async def test_staff_request_naming_another_tenants_call_is_refused(gateway: RunningGateway):
    mine, theirs = await gateway.new_tenant("Mine"), await gateway.new_tenant("Theirs")
    staff = await gateway.new_staff()
    own_call = await make_call(gateway, mine, platform_call_id="own")
    foreign_call = await make_call(gateway, theirs, platform_call_id="foreign")
    status, before, _ = await gateway.request("GET", "/v1/transparency/checkpoint",
                                              headers=mine.auth)
    for calls in ([foreign_call], [own_call, foreign_call], [str(uuid.uuid4())]):
        status, body, _ = await gateway.request(
            "POST", "/v1/staff/access-requests", headers=staff["auth"],
            json={"tenant": mine.id, "purpose": "fault_diagnostics", "reference": "OPS-1",
                  "scope": {"calls": calls}})
        assert status == 422 and body["field"] == "scope.calls", body
    # Nothing about the refused requests reached the tenant's log: the only entry after
    # the first checkpoint read is the second checkpoint read.
    status, after, _ = await gateway.request("GET", "/v1/transparency/checkpoint",
                                             headers=mine.auth)
    assert after["size"] == before["size"] + 1
    status, page, _ = await gateway.request(
        "GET", "/v1/transparency/entries", headers=mine.auth,
        params={"start": 0, "end": after["size"]})
    assert foreign_call not in str(page)
    status, body, _ = await gateway.request(
        "POST", "/v1/staff/access-requests", headers=staff["auth"],
        json={"tenant": mine.id, "purpose": "fault_diagnostics", "reference": "OPS-1",
              "scope": {"calls": [own_call]}})
    assert status == 201, body
