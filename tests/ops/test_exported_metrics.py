"""The dashboard and the alert rules read only what a running gateway exports.

A real `gateway serve` (started as an operator starts it, bench/_harness.GatewayProcess)
takes a signed webhook, a forged one and a readiness probe; then its metrics listener is
scraped and every PromQL expression in deploy/ is parsed and checked against the scrape.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bench._harness import GatewayProcess, wait_for_port
from tests.ops.helpers import (
    OPERATIONS,
    PROMETHEUS_SERIES,
    alert_rules,
    dashboard,
    dashboard_queries,
    exported_series,
    families,
    grafana_to_promql,
    metric_names,
)
from tests.support.signers import call_updated, new_whsec, standard_delivery

FROM_NUMBER, TO_NUMBER = "+14155550123", "+14155550187"


class Observed:
    """What the scenario saw: the scrape text and the values it must not leak."""

    def __init__(self) -> None:
        self.scrape = ""
        self.readyz: dict[str, Any] = {}
        self.secrets: list[str] = []
        self.statuses: dict[str, int] = {}


async def _drive(gw: GatewayProcess) -> Observed:
    seen = Observed()
    tenant = gw.cli("tenant", "create", "--name", "acme")
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    secret = new_whsec()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/integrations", headers=auth,
                             json={"platform": "standard",
                                   "credentials": {"secret": secret}}) as r:
            assert r.status == 201, await r.text()
            integration = await r.json()
        hook = f"{gw.url}/v1/hooks/standard/{integration['id']}"
        body, headers = standard_delivery(
            secret, call_updated("ext-call-1", "completed", from_number=FROM_NUMBER,
                                 to_number=TO_NUMBER), datetime.now(UTC))
        async with http.post(hook, data=body, headers=headers) as r:
            seen.statuses["signed"] = r.status
        forged, forged_headers = standard_delivery(new_whsec(), call_updated(
            "ext-call-2", "ringing"), datetime.now(UTC))
        async with http.post(hook, data=forged, headers=forged_headers) as r:
            seen.statuses["forged"] = r.status
        async with http.get(f"{gw.url}/readyz") as r:
            seen.statuses["readyz"] = r.status
            seen.readyz = await r.json()
        async with http.get(f"http://127.0.0.1:{gw.metrics_port}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            seen.scrape = await r.text()
    seen.secrets = [tenant["api_key"], tenant["tenant_id"], secret, integration["id"],
                    FROM_NUMBER, TO_NUMBER, FROM_NUMBER[1:], TO_NUMBER[1:]]
    return seen


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    with GatewayProcess() as gw:
        wait_for_port(gw.metrics_port)
        yield asyncio.run(_drive(gw))


def _value(scrape: str, name: str, **labels: str) -> float:
    for family in families(scrape):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_the_scenario_was_answered_as_a_platform_expects(observed: Observed):
    assert observed.statuses == {"signed": 200, "forged": 401, "readyz": 200}


def test_every_dashboard_query_names_an_exported_metric(observed: Observed):
    exported = exported_series(observed.scrape) | dict.fromkeys(PROMETHEUS_SERIES, "")
    missing = {}
    for where, expr in dashboard_queries():
        names = metric_names(grafana_to_promql(expr))
        assert names, f"{where} reads no metric: {expr}"
        if names - exported.keys():
            missing[where] = sorted(names - exported.keys())
    assert not missing, missing


def test_every_alert_names_an_exported_metric(observed: Observed):
    exported = exported_series(observed.scrape) | dict.fromkeys(PROMETHEUS_SERIES, "")
    missing = {}
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} reads no metric"
        if names - exported.keys():
            missing[rule["alert"]] = sorted(names - exported.keys())
    assert not missing, missing


def test_the_dashboard_shows_what_on_call_needs():
    """Issue 16: ingest per platform, latency, group commit, live streams, the fetch queue,
    retention lag, access requests, log appends, health."""
    read = set().union(*(metric_names(grafana_to_promql(e)) for _, e in dashboard_queries()))
    assert read >= {
        "gateway_webhooks_total", "gateway_http_request_duration_seconds_bucket",
        "gateway_group_commit_units_bucket", "gateway_media_streams_active",
        "gateway_recording_fetch_queue_depth", "gateway_retention_lag_seconds",
        "gateway_staff_access_requests_total", "gateway_staff_diagnostic_reads_total",
        "gateway_audit_appends_total", "gateway_audit_append_failures_total",
        "gateway_ready", "gateway_up", "gateway_storage_free_bytes"}
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel.get("description"), f"{panel['title']} has no description"


def test_every_metric_family_has_help(observed: Observed):
    found = families(observed.scrape)
    assert len(found) > 20
    assert [f.name for f in found if not f.documentation.strip()] == []


def test_the_traffic_moved_the_metrics(observed: Observed):
    scrape = observed.scrape
    assert _value(scrape, "gateway_webhooks_total", platform="standard",
                  outcome="accepted") == 1
    assert _value(scrape, "gateway_webhooks_total", platform="standard",
                  outcome="bad_signature") == 1
    # Group commit sizes are observed (the metric was defined and never fed before).
    commits = _value(scrape, "gateway_group_commit_units_count")
    units = _value(scrape, "gateway_group_commit_units_sum")
    assert commits >= 1 and units >= commits
    assert _value(scrape, "gateway_http_requests_total", method="POST",
                  route="/v1/hooks/{platform}/{integration_id}", status="200") == 1
    assert _value(scrape, "gateway_up") == 1


def test_readiness_gauge_reports_what_readyz_reports(observed: Observed):
    checks = observed.readyz["checks"]
    assert checks and all(checks.values())
    for component in checks:
        assert _value(observed.scrape, "gateway_ready", component=component) == 1
    labelled = {s.labels["component"] for f in families(observed.scrape)
                if f.name == "gateway_ready" for s in f.samples}
    assert labelled == set(checks)


def test_free_space_is_reported_for_every_store(observed: Observed):
    for store in ("database", "blobs", "keys"):
        free = _value(observed.scrape, "gateway_storage_free_bytes", store=store)
        size = _value(observed.scrape, "gateway_storage_size_bytes", store=store)
        assert not math.isnan(free) and 0 < free <= size, store


def test_no_secret_number_or_id_in_the_scrape(observed: Observed):
    leaked = [value for value in observed.secrets if value in observed.scrape]
    assert leaked == []


def test_the_name_check_catches_a_misspelt_metric(observed: Observed):
    """The checks above are only worth something if a wrong name fails them."""
    exported = exported_series(observed.scrape)
    assert metric_names(grafana_to_promql(
        'sum by (platform) (rate(gateway_webhook_total{instance=~"$instance"}[$__rate_interval]))'
    )) - exported.keys() == {"gateway_webhook_total"}
    assert "gateway_group_commit_units_bucket" in exported       # histogram suffixes
    assert "gateway_group_commit_units" not in exported          # ... and not the bare name
    with pytest.raises(AssertionError, match="without a metric name"):
        metric_names('{__name__=~"gateway_.*"}')


def test_operations_guide_lists_every_metric(observed: Observed):
    guide = OPERATIONS.read_text()
    shown = {f.name + ("_total" if f.type == "counter" else "")
             for f in families(observed.scrape) if not f.name.endswith("_created")}
    assert sorted(name for name in shown if f"`{name}`" not in guide) == []
