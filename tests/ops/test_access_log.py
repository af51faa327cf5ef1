"""The access log and the event loop of a real `gateway serve`, as an operator sees them on
stderr: one JSON line per request (written off the request path, within a fraction of a
second), the loop named at start, `[logging] access_log_sample` obeyed, and nothing
personal or secret on any line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench._harness import ROOT, GatewayProcess, wait_for_port
from tests.support.poll import eventually
from tests.support.signers import call_updated, new_whsec, standard_delivery

HOOK_ROUTE = "/v1/hooks/{platform}/{integration_id}"


class LoggedGateway(GatewayProcess):
    """A gateway at log level INFO whose stderr is kept in a file."""

    def __init__(self, logging_section: str = "") -> None:
        super().__init__()
        text = self.config.read_text().replace('level = "WARNING"\n',
                                               'level = "INFO"\n' + logging_section)
        self.config.write_text(text)
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="vgw-stderr-", delete=False)

    def __enter__(self) -> LoggedGateway:
        self.cli("init")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config",
                                      str(self.config), "serve"], cwd=ROOT, env=self.env,
                                     stderr=self.stderr_file)
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.stderr_file.close()
        Path(self.stderr_file.name).unlink()

    def lines(self) -> list[dict]:
        text = Path(self.stderr_file.name).read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _deliver(gw: LoggedGateway, api_key: str) -> tuple[str, str]:
    """Connect a Standard Webhooks integration, send it one call event; (id, secret)."""
    secret = new_whsec()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/integrations",
                             headers={"Authorization": f"Bearer {api_key}"},
                             json={"platform": "standard", "credentials": {"secret": secret}}
                             ) as response:
            assert response.status == 201
            integration_id = (await response.json())["id"]
        raw, headers = standard_delivery(secret, call_updated("pc-log", "ringing"),
                                         datetime.now(UTC))
        async with http.post(f"{gw.url}/v1/hooks/standard/{integration_id}", data=raw,
                             headers=headers) as response:
            assert response.status == 200
        async with http.get(f"{gw.url}/healthz") as response:
            assert response.status == 200
    return integration_id, secret


def test_every_request_gets_a_line_and_the_loop_is_named():
    with LoggedGateway() as gw:
        tenant = gw.cli("tenant", "create", "--name", "Log Ltd")
        integration_id, secret = asyncio.run(_deliver(gw, tenant["api_key"]))

        async def access_lines():
            found = [line for line in gw.lines() if line.get("logger") == "gateway.http"]
            return found if len(found) >= 3 else None
        lines = asyncio.run(eventually(access_lines, timeout=5))
        serving = [line for line in gw.lines() if line.get("message") == "serving"]
        assert serving and serving[0]["loop"] == "uvloop"

        hook = next(line for line in lines if line["route"] == HOOK_ROUTE)
        assert hook["message"] == "request" and hook["level"] == "INFO"
        assert hook["method"] == "POST" and hook["status"] == 200
        assert isinstance(hook["duration_ms"], float) and hook["duration_ms"] >= 0
        assert {line["route"] for line in lines} >= {"/v1/integrations", HOOK_ROUTE,
                                                      "/healthz"}
        request_ids = [line["request_id"] for line in lines]
        assert len(set(request_ids)) == len(request_ids)
        datetime.fromisoformat(hook["time"])
        text = Path(gw.stderr_file.name).read_text()
        for needle in (integration_id, secret, secret[6:], tenant["api_key"], "4155550100",
                       "pc-log"):
            assert needle not in text


def test_sample_zero_turns_the_access_log_off():
    with LoggedGateway("access_log_sample = 0\n") as gw:
        tenant = gw.cli("tenant", "create", "--name", "Quiet Ltd")
        asyncio.run(_deliver(gw, tenant["api_key"]))
        asyncio.run(asyncio.sleep(1.0))     # > the access log's flush interval
        assert any(line.get("message") == "serving" for line in gw.lines())
        assert not [line for line in gw.lines() if line.get("logger") == "gateway.http"]


def test_a_sample_outside_zero_to_one_is_refused_at_start():
    gw = GatewayProcess()
    text = gw.config.read_text().replace('level = "WARNING"\n',
                                         'level = "WARNING"\naccess_log_sample = 2\n')
    gw.config.write_text(text)
    try:
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(gw.config),
                              "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        assert "access_log_sample" in out.stderr
    finally:
        gw.__exit__(None, None, None)


def test_a_buffered_line_is_exactly_what_the_json_formatter_writes():
    # The access log formats its lines from a template (cheaper than a LogRecord each);
    # an operator's parser must see the same bytes as for any other line.
    import logging

    from gateway.core.logs import AccessLog, JsonFormatter
    access = AccessLog("f00d01")
    for created, method, route, status, number, seconds in [
            (1.7e9 + 0.5, "POST", HOOK_ROUTE, 200, 5, 0.0021),
            (1.7e9, "GET", "unmatched", 404, 6, 0.0),
            (1.7e9 + 0.000001, "PROPFIND", "/v1/calls/{call_id}", 503, 7, 1.23456)]:
        record = access.log.makeRecord("gateway.http", logging.INFO, __file__, 0, "request",
                                       (), None, extra={
                                           "method": method, "route": route, "status": status,
                                           "request_id": f"f00d01-{number}",
                                           "duration_ms": round(seconds * 1000, 2)})
        record.created = created
        expected = JsonFormatter().format(record) + "\n"
        assert access._line(created, method, route, status, number, seconds) == expected
