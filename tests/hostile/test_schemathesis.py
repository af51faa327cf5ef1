"""Schemathesis over the served OpenAPI document, against a real `gateway serve`, as a
tenant and as a staff member (issue 13, item 6 and the first test it asks for).

Every check is on: no 5xx; every status code, content type, header and body conforms to
what the document declares for that operation; data the schema forbids is refused;
authentication is not ignored. A bounded number of examples per operation keeps the run
within the suite's time budget on two cores.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from gateway.web.openapi import document
from tests.hostile.conftest import Served

EXAMPLES_PER_OPERATION = 12
ALL_CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
              checks.content_type_conformance, checks.response_schema_conformance,
              checks.response_headers_conformance, checks.negative_data_rejection,
              checks.ignored_auth, checks.missing_required_header,
              checks.unsupported_method, checks.use_after_free,
              checks.ensure_resource_availability]
BOUNDED = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))


# Loaded from the module that serves it (schemathesis's lazy `from_fixture` loader needs a
# pytest private that pytest 9 removed); `test_served_document_is_the_one_tested` pins
# that the server answers exactly this document. One schema per role, each with its
# bearer token registered as the schema's auth, so schemathesis knows which header
# authenticates (its negative cases then drop or spoil that header on purpose).
TOKENS: dict[str, dict[str, str]] = {}
tenant_schema = schemathesis.openapi.from_dict(document())
staff_schema = schemathesis.openapi.from_dict(document())


def _bearer(role: str):
    class Bearer:
        def get(self, case, context):
            # Looked up per case (no caching): the server starts after collection.
            return TOKENS.get(role, {}).get("Authorization", "Bearer not-yet-known")

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": data}
    return Bearer


tenant_schema.auth(refresh_interval=None)(_bearer("tenant"))
staff_schema.auth(refresh_interval=None)(_bearer("staff"))


@schemathesis.serializer("application/sdp")
def sdp(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": (value if isinstance(value, str) else json.dumps(value)).encode()}


@pytest.fixture(autouse=True)
def tokens(served: Served) -> None:
    TOKENS["tenant"], TOKENS["staff"] = served.tenant_auth, served.staff_auth


def test_served_document_is_the_one_tested(served: Served) -> None:
    assert requests.get(served.url + "/v1/openapi.json", timeout=10).json() == \
        json.loads(json.dumps(document()))


@tenant_schema.exclude(path_regex="^/v1/staff/").exclude(tag="console").parametrize()
@BOUNDED
def test_tenant_api(case, served: Served) -> None:
    case.call_and_validate(base_url=served.url, checks=ALL_CHECKS, timeout=30)


@staff_schema.include(path_regex="^/v1/staff/").parametrize()
@BOUNDED
def test_staff_api(case, served: Served) -> None:
    case.call_and_validate(base_url=served.url, checks=ALL_CHECKS, timeout=30)
