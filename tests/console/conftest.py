"""Fixtures for the console: a real `gateway serve` subprocess (set up with the CLI, as an
operator would), and Debian's Chromium driven by Playwright.

A missing Chromium or Playwright FAILS these tests (CI installs Chromium in .ci/run); set
GATEWAY_SKIP_BROWSER_TESTS=1 to skip them knowingly on a machine without a browser."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import wait_healthy

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # The player test starts playback from script, without a click.
                 "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).parent / "artifacts"
AXE_SOURCE = Path(__file__).parent / "axe.min.js"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServedGateway:
    url: str
    config_path: Path
    database_path: Path
    tenant_id: str
    api_key: str
    staff: dict[str, str]
    process: subprocess.Popen

    @property
    def tenant_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """`gateway init`, `tenant create`, `staff create`, then `gateway serve` on a free port."""
    root = tmp_path_factory.mktemp("console")
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    config_path = root / "gateway.toml"
    config_path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\npublic_base_url = "{url}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        f'[storage]\ndata_dir = "{root / "data"}"\n')

    def cli(*args: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_path),
                              *args, "--json"], check=True, capture_output=True, text=True,
                             timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])

    cli("init")
    tenant = cli("tenant", "create", "--name", "Acme Telephony")
    staff = cli("staff", "create", "--name", "Sam Support", "--employer", "Operator GmbH",
                "--country", "DE")
    log = open(root / "serve.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config",
                                str(config_path), "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, process)
        yield ServedGateway(url, config_path, root / "data" / "gateway.sqlite3",
                            tenant["tenant_id"], tenant["api_key"], staff, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if os.environ.get("GATEWAY_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("GATEWAY_SKIP_BROWSER_TESTS=1")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium "
                    "(or set GATEWAY_SKIP_BROWSER_TESTS=1 to skip knowingly)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageProblems:
    """Console errors and CSP violations a page reported; a test ends with none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                and not _expected_console_error(m.text) else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))


def _expected_console_error(text: str) -> bool:
    # The browser logs every non-2xx fetch; 401s (signed out) and 403s (refusals the test
    # provokes) are the console working as intended.
    return "the server responded with a status of 40" in text


def new_page(browser: Any, base_url: str) -> tuple[Any, Any, PageProblems]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    return context, page, PageProblems(page)


def check_page(page: Any, name: str) -> None:
    """Zero serious or critical axe-core violations, and a screenshot in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    # Evaluated through the DevTools protocol, which the page's CSP does not govern.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    assert result == [], f"{name}: accessibility violations {json.dumps(result, indent=1)}"
