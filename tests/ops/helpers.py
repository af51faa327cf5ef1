"""What the ops tests share: reading the dashboard's and the alert rules' PromQL, reading a
scrape, and finding promtool.

Invariants:
- Metric names come from a real PromQL parser (promql-parser, the Rust implementation the
  GreptimeDB project maintains), never from a regular expression over the text.
- A scrape's "exported names" are the series names prometheus-client writes for each
  family it declares (HELP/TYPE), with or without samples yet: a labelled counter nobody
  incremented is still exported.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's built-in interval variables, replaced as Grafana would before sending a query.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Series Prometheus makes itself for every scrape target; not the gateway's to export.
PROMETHEUS_SERIES = {"up"}

# Series names prometheus-client writes for one family, by the family's type.
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                              "_created"),
             "summary": ("", "_count", "_sum", "_created"), "info": ("_info",),
             "gaugehistogram": ("_bucket", "_gcount", "_gsum")}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating query."""
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((f"panel {panel['title']!r} target {target['refId']}",
                              target["expr"]))
            walk(panel.get("panels", []))

    board = dashboard()
    walk(board["panels"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((f"variable {variable['name']}",
                          query["query"] if isinstance(query, dict) else query))
    return found


def grafana_to_promql(expr: str) -> str:
    """The query Grafana sends: interval variables filled in, dashboard variables (used
    only inside label matchers' quotes here) replaced by match-all, label_values() by the
    selector it lists."""
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    for variable in ("$instance", "$platform"):
        expr = expr.replace(variable, ".*")
    assert "$" not in expr, f"unknown dashboard variable in {expr!r}"
    if expr.startswith("label_values("):
        # label_values(selector, label): the selector is PromQL, the label a name.
        inner = expr[len("label_values("):-1]
        expr = inner.rsplit(",", 1)[0]
    return expr


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects, by name. A selector without a fixed name
    (`{__name__=~"..."}`) is refused: a dashboard must say what it reads."""
    names: set[str] = set()
    unnamed: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            if name is None:
                for matcher in node.matchers.matchers:
                    if (matcher.name == "__name__"
                            and matcher.op == promql_parser.MatchOp.Equal):
                        name = matcher.value
            if name is None:
                unnamed.append(str(node))
            else:
                names.add(name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert not unnamed, f"selector without a metric name: {unnamed}"
    return names


def exported_series(scrape: str) -> dict[str, str]:
    """Series name -> HELP text of its family, for every family the scrape declares."""
    series: dict[str, str] = {}
    for family in text_string_to_metric_families(scrape):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            series[family.name + suffix] = family.documentation
    return series


def families(scrape: str) -> list[Any]:
    return list(text_string_to_metric_families(scrape))


def promtool() -> str:
    """promtool's path. Where it is missing: a skip on a developer's machine, a failure in
    CI (CI is set there, and .ci/run installs Debian's `prometheus` package)."""
    path = shutil.which("promtool")
    if path is None:
        message = ("promtool not found: install Debian's `prometheus` package"
                   " (apt-get install -y prometheus)")
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have")
        pytest.skip(message)
    return path
