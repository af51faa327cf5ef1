"""The OpenAPI document matches the routes served; nothing personal or secret reaches logs
or metrics."""

from __future__ import annotations

import logging

from gateway.core.logs import JsonFormatter
from tests.support.signers import call_updated, new_whsec, standard_delivery


async def test_openapi_lists_exactly_the_served_routes(gateway):
    status, doc, _ = await gateway.request("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}
    served = set()
    for route in gateway.server.app.router.routes():
        if route.method in ("HEAD", "OPTIONS") and route.resource is not None:
            continue
        served.add((route.resource.canonical, route.method))
    assert served == documented


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_no_number_token_or_secret_in_logs_or_metrics(gateway):
    # Our own handler on the gateway's logger: an in-process CLI test elsewhere may have
    # replaced the root handlers (setup_logging), which would blind pytest's caplog.
    collected = _Collect()
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.addHandler(collected)
    previous_level = gateway_logger.level
    gateway_logger.setLevel(logging.DEBUG)
    try:
        await _exercise_and_check(gateway, collected)
    finally:
        gateway_logger.removeHandler(collected)
        gateway_logger.setLevel(previous_level)


async def _exercise_and_check(gateway, collected):
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    path = f"/v1/hooks/standard/{integration['id']}"
    event = call_updated("pc-priv", "completed", from_number="+14155550100",
                         to_number="+14155550199")
    raw, headers = standard_delivery(secret, event, gateway.clock.now())
    assert (await gateway.request("POST", path, data=raw, headers=headers))[0] == 200
    # Failures too: bad signature, malformed body, a number in a bad field.
    raw, headers = standard_delivery(new_whsec(), event, gateway.clock.now())
    assert (await gateway.request("POST", path, data=raw, headers=headers))[0] == 401
    raw, headers = standard_delivery(secret, b'{"type": "call.updated", "data": '
                                     b'{"call_id": "+14155550100", "status": "+14155550100"}}',
                                     gateway.clock.now())
    status, body, _ = await gateway.request("POST", path, data=raw, headers=headers)
    # Authentic but unusable: acknowledged as rejected, its content echoed nowhere.
    assert status == 200 and body == {"accepted": 0, "duplicates": 0, "rejected": 1}
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    call_id = page["items"][0]["id"]
    await gateway.request("POST", f"/v1/calls/{call_id}/recordings", data=b"RIFF-audio-bytes",
                          headers=tenant.auth)
    await gateway.request("GET", "/v1/calls", headers={"Authorization": "Bearer vgw_bad"})

    scraped = await gateway.scrape_metrics()
    assert 'gateway_webhooks_total{outcome="accepted",platform="standard"} 1.0' in scraped
    assert 'outcome="bad_signature"' in scraped
    assert 'route="/v1/calls/{call_id}/recordings"' in scraped
    assert "gateway_bytes_encrypted_total" in scraped

    formatter = JsonFormatter()
    logs = "\n".join(formatter.format(r) + r.getMessage() + str(r.__dict__)
                     for r in collected.records)
    assert logs, "the gateway logged nothing"
    for needle in ("4155550100", "4155550199", secret, secret[6:], tenant.api_key,
                   tenant.api_key.split("_", 2)[2], "RIFF-audio"):
        assert needle not in logs
        assert needle not in scraped
