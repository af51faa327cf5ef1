"""The access area as an operator meets it: the `[staff_access]` section is checked when the
config loads (without importing the area), expiry happens on its own timer with nobody
touching the grant, and the area's modules keep to their rooms."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.services import init_storage
from tests.access.conftest import approve, log_entries, make_call, request_access
from tests.support.server import make_config

ACCESS_DIR = Path(__file__).resolve().parents[2] / "gateway" / "access"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """As the area's conftest, with the expiry sweep every 50 ms so a test can watch it."""
    config = make_config(tmp_path / "data")
    config.section("staff_access").notify_allow_http = True
    config.section("staff_access").notify_allow_private_addresses = True   # 127.0.0.1
    config.section("staff_access").sweep_interval_seconds = 0.05
    init_storage(config)
    return config


async def test_the_sweep_job_expires_and_logs_a_grant_nobody_touches(gateway):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    req = await request_access(gateway, staff, tenant, calls=[call_id], duration_seconds=60)
    await approve(gateway, tenant, req["id"])
    gateway.clock.advance(seconds=61)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while [e["kind"] for e in log_entries(gateway, tenant.id)][-1:] != ["expiry"]:
        assert loop.time() < deadline, "the sweep job did not expire the grant"
        await asyncio.sleep(0.05)
    expiry = log_entries(gateway, tenant.id)[-1]
    assert expiry["grant_id"] == req["id"] and expiry["details"]["was"] == "approved"
    assert expiry["actor"] == {"type": "system", "id": "access-clock"}
    status, body, _ = await gateway.request("GET", f"/v1/access-requests/{req['id']}",
                                            headers=tenant.auth)
    assert status == 200 and body["state"] == "expired"


def _load(tmp_path: Path, section: str) -> subprocess.CompletedProcess:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(section))
    code = textwrap.dedent(f"""
        import sys
        from gateway.config import ConfigError, load_config
        try:
            cfg = load_config({str(path)!r}).section("staff_access")
        except ConfigError as exc:
            print("ConfigError:", exc)
        else:
            print("max_grant_seconds", cfg.max_grant_seconds)
        print("area imported:", sorted(m for m in sys.modules
                                      if m.startswith("gateway.access.")
                                      and m != "gateway.access.settings"))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)


def test_staff_access_section_loads_and_is_checked_without_importing_the_area(tmp_path):
    ok = _load(tmp_path, """
        [staff_access]
        max_grant_seconds = 7200
    """)
    assert "max_grant_seconds 7200" in ok.stdout
    assert "area imported: []" in ok.stdout
    for bad, key in [("max_grant_seconds = 10", "max_grant_seconds"),
                     ("pending_ttl_seconds = 9999999", "pending_ttl_seconds"),
                     ("notify_max_attempts = 0", "notify_max_attempts"),
                     ("sweep_interval_seconds = 0", "sweep_interval_seconds"),
                     ("no_such_key = 1", "no_such_key")]:
        out = _load(tmp_path, f"[staff_access]\n{bad}\n").stdout
        assert "ConfigError: " in out and f"staff_access.{key}" in out, (bad, out)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_access_modules_keep_to_their_rooms():
    modules = sorted(ACCESS_DIR.glob("*.py"))
    assert {p.stem for p in modules} >= {"settings", "policy", "requests", "grants", "gate",
                                         "notifier", "service", "diagnostics"}
    for path in modules:
        imports = _imports(path)
        for banned in ("gateway.services", "gateway.cli", "aiohttp.web", "gateway.web"):
            assert not any(n == banned or n.startswith(banned + ".") for n in imports), (
                path.name, banned)
        # Background loops are PeriodicJobs (gateway.core.jobs), never a task of their own.
        assert "create_task" not in path.read_text(), f"{path.name}: use PeriodicJob"
    settings = _imports(ACCESS_DIR / "settings.py")
    assert {n for n in settings if n.startswith("gateway")} <= {
        "gateway.errors", "gateway.errors.ConfigError"}
    for pure in ("policy.py", "requests.py"):
        assert not any(n.startswith("gateway.store") for n in _imports(ACCESS_DIR / pure)), pure
