"""The 22 requests of issue 13 that crashed into a bare 500, replayed through real HTTP:
each must now get a problem+json 4xx that names what was wrong (and never a 5xx)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.server import RunningGateway

DEEP = "[" * 5000 + "]" * 5000          # RecursionError in json.loads at ~1,000 levels
JSON_ROUTES = [
    ("POST", "/v1/integrations"), ("PUT", "/v1/access-policy"),
    ("PUT", "/v1/access-policy/webhook"), ("PUT", "/v1/retention"),
    ("POST", "/v1/legal-holds"), ("POST", "/v1/subjects/search"),
    ("POST", "/v1/subjects/export"), ("POST", "/v1/subjects/erase"),
    ("POST", "/v1/subjects/restrict"), ("POST", "/v1/subjects/rectify"),
]
STAFF_JSON_ROUTES = [("POST", "/v1/staff/access-requests")]
CURSOR_ROUTES = ["/v1/calls", "/v1/access-requests"]
NESTED_CURSOR = base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()  # under 8 KiB URL
TENANT_ID = "00000000-0000-4000-8000-000000000000"


def assert_problem(status: int, body, headers, *, expect: int | None = None,
                   field: str | None = None) -> None:
    assert 400 <= status < 500, (status, body)
    if expect is not None:
        assert status == expect, (status, body)
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == status and body["type"].startswith("urn:vgw:problem:")
    if field is not None:
        assert body.get("field") == field, body


@pytest.fixture
async def actors(gateway: RunningGateway):
    tenant = await gateway.new_tenant("Hostile Ltd")
    staff = await gateway.new_staff()
    return tenant, staff


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES + STAFF_JSON_ROUTES)
async def test_deeply_nested_json_is_refused(gateway: RunningGateway, actors, method, path):
    tenant, staff = actors
    auth = staff["auth"] if path.startswith("/v1/staff") else tenant.auth
    status, body, headers = await gateway.request(
        method, path, data=DEEP, headers={**auth, "Content-Type": "application/json"})
    assert_problem(status, body, headers, expect=400)
    assert "deep" in body["detail"]


@pytest.mark.parametrize("path", [*CURSOR_ROUTES, "/v1/staff/access-requests"])
async def test_cursor_holding_nested_json_is_refused(gateway: RunningGateway, actors, path):
    tenant, staff = actors
    auth = staff["auth"] if path.startswith("/v1/staff") else tenant.auth
    status, body, headers = await gateway.request(
        "GET", path, params={"cursor": NESTED_CURSOR}, headers=auth)
    assert_problem(status, body, headers, expect=422, field="cursor")


@pytest.mark.parametrize(("name", "value"), [("since", "0001-01-01T00:00:00+01:00"),
                                              ("until", "9999-12-31T23:59:59-01:00")])
async def test_calls_time_filters_at_the_edge_of_the_range(gateway: RunningGateway, actors,
                                                           name, value):
    tenant, _ = actors
    status, body, headers = await gateway.request("GET", "/v1/calls", params={name: value},
                                                  headers=tenant.auth)
    assert_problem(status, body, headers, expect=422, field=name)


async def test_legal_hold_ending_past_year_9999(gateway: RunningGateway, actors):
    tenant, _ = actors
    status, body, headers = await gateway.request(
        "POST", "/v1/legal-holds", headers=tenant.auth,
        json={"scope": "tenant", "reason": "audit", "ends_at": "9999-12-31T23:59:59-23:59"})
    assert_problem(status, body, headers, expect=422, field="ends_at")


@pytest.mark.parametrize(("since", "until"), [
    ("0001-01-01T00:00:00+01:00", "0001-01-01T10:00:00+01:00"),
    ("9999-12-31T20:00:00-01:00", "9999-12-31T23:00:00-01:00")])
async def test_staff_request_window_in_year_1_or_9999(gateway: RunningGateway, actors,
                                                      since, until):
    tenant, staff = actors
    status, body, headers = await gateway.request(
        "POST", "/v1/staff/access-requests", headers=staff["auth"],
        json={"tenant": tenant.id, "purpose": "operability", "reference": "OPS-1",
              "scope": {"window": {"since": since, "until": until}}})
    assert_problem(status, body, headers, expect=422)
    assert body["field"].startswith("scope.window")


@pytest.mark.parametrize(("path", "doc", "field"), [
    ("/v1/legal-holds", {"scope": "tenant", "reason": "\ud800"}, "reason"),
    ("/v1/integrations", {"platform": "standard", "name": "\ud800",
                          "credentials": {"secret": "whsec_" + "A" * 43}}, "name"),
    ("/v1/access-policy/webhook", {"url": "https://example.com/\ud800",
                                   "secret": "whsec_" + "A" * 43}, "url"),
    ("/v1/subjects/search", {"phone_number": "+1415\ud800"}, "phone_number"),
])
async def test_lone_surrogates_in_text_fields(gateway: RunningGateway, actors, path, doc,
                                              field):
    tenant, _ = actors
    # json.dumps escapes the surrogate as \ud800, as a hostile client would send it.
    method = "PUT" if path.endswith("webhook") else "POST"
    status, body, headers = await gateway.request(
        method, path, data=json.dumps(doc), headers={**tenant.auth,
                                                     "Content-Type": "application/json"})
    assert_problem(status, body, headers, expect=400, field=field)
    assert "\ud800" not in json.dumps(body, ensure_ascii=False).encode("utf-8", "replace").decode()


@pytest.mark.parametrize("raw", [
    b'{"phone_number": "\xff\xfe"}',                               # invalid UTF-8
    '{"phone_number": "+14155550100"}'.encode("utf-16"),          # valid JSON, not UTF-8
    b'\xef\xbb\xbf{"phone_number": "+14155550100"}',               # a BOM (RFC 8259 §8.1)
    b'{"phone_number": NaN}', b'{"phone_number": 1e999}',         # not RFC 8259 numbers
])
async def test_json_that_is_not_rfc_8259_utf8_is_refused(gateway: RunningGateway, actors, raw):
    tenant, _ = actors
    status, body, headers = await gateway.request(
        "POST", "/v1/subjects/search", data=raw,
        headers={**tenant.auth, "Content-Type": "application/json"})
    assert_problem(status, body, headers, expect=400)


@pytest.mark.parametrize("params", [
    {"start": "9999999999999999998", "end": "9999999999999999999"},
    {"start": "٣", "end": "٤"},                       # Unicode digits pass str.isdigit()
    {"limit": "9" * 5000}])
async def test_extreme_query_numbers(gateway: RunningGateway, actors, params):
    tenant, _ = actors
    path = "/v1/calls" if "limit" in params else "/v1/transparency/entries"
    status, body, headers = await gateway.request("GET", path, params=params,
                                                  headers=tenant.auth)
    assert_problem(status, body, headers, expect=422)
