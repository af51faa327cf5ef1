"""The alert rules in deploy/prometheus: valid for Prometheus, unit-tested, and each one
pointing on-call at a runbook section that exists.

promtool (Debian's `prometheus` package) does the checking, as Prometheus itself would
load the files. Without promtool these tests skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.helpers import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    PROMETHEUS_DIR,
    alert_rules,
    promtool,
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          cwd=PROMETHEUS_DIR)


def test_promtool_accepts_the_rules():
    result = _run("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_accepts_the_example_prometheus_config():
    result = _run("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass():
    result = _run("test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_and_stays_quiet_in_its_unit_tests():
    cases: dict[str, set[str]] = {}
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(
                "fires" if case.get("exp_alerts") else "quiet")
    untested = {rule["alert"]: sorted(cases.get(rule["alert"], set()))
                for rule in alert_rules() if cases.get(rule["alert"]) != {"fires", "quiet"}}
    assert untested == {}


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_and_a_runbook_section():
    anchors = _anchors(OPERATIONS.read_text())
    problems = {}
    for rule in alert_rules():
        annotations = rule.get("annotations", {})
        runbook = annotations.get("runbook", "")
        path, _, anchor = runbook.partition("#")
        if rule.get("labels", {}).get("severity") not in ("page", "ticket"):
            problems[rule["alert"]] = "severity must be page or ticket"
        elif not (annotations.get("summary") and annotations.get("description")):
            problems[rule["alert"]] = "summary and description needed"
        elif path != "docs/operations.md" or anchor not in anchors:
            problems[rule["alert"]] = f"runbook {runbook!r} is not a section of {path}"
    assert problems == {}
