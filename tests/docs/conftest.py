"""A gateway served the way `make run` serves it: `gateway init` then `gateway serve` as
subprocesses, GATEWAY_CONFIG pointing at a copy of config.example.toml whose only changes
are free ports (its data directory, `./data`, lands in the test's own directory)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.process import wait_healthy
from tests.support.seaweedfs import free_ports

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = str(ROOT / ".venv" / "bin" / "gateway")
STARTUP_SECONDS = 60


def _config_copy(workdir: Path, port: int, metrics_port: int) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    for old, new in (("127.0.0.1:8080", f"127.0.0.1:{port}"),
                     ("127.0.0.1:9090", f"127.0.0.1:{metrics_port}")):
        assert old in text, f"config.example.toml no longer says {old}"
        text = text.replace(old, new)
    path = workdir / "config.example.toml"
    path.write_text(text)
    return path


@pytest.fixture
def served_gateway(tmp_path: Path):
    """A gateway started as `make run` starts it, from a copy of the example config."""
    port, metrics_port = free_ports(2)
    config = _config_copy(tmp_path, port, metrics_port)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "GATEWAY_CONFIG": str(config)}
    subprocess.run([GATEWAY, "init"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=STARTUP_SECONDS)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([GATEWAY, "serve"], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, timeout=STARTUP_SECONDS)
        yield tmp_path, port, metrics_port, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()


