"""A real `gateway serve` subprocess (bench/_harness.GatewayProcess, as an operator runs
it) with a tenant and a staff member created by the CLI, for the suites that need a real
listener: schemathesis, slow clients, disk full, crash and restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench._harness import ROOT, GatewayProcess, wait_for_port


class RestartableGateway(GatewayProcess):
    """GatewayProcess that can be killed (-9) and started again on the same data, with
    extra keys for its [server] and [storage] sections."""

    def __init__(self, extra_config: str = "", *, server: str = "", storage: str = "") -> None:
        super().__init__(extra_config)
        text = self.config.read_text()
        text = text.replace("[server]\n", "[server]\n" + server, 1)
        text = text.replace("[storage]\n", "[storage]\n" + storage, 1)
        self.config.write_text(text)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config",
                                      str(self.config), "serve"], cwd=ROOT,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> RestartableGateway:
        self.cli("init")
        self.start()
        return self


@dataclass
class Served:
    gw: RestartableGateway
    tenant_id: str
    tenant_auth: dict[str, str]
    staff_auth: dict[str, str]

    @property
    def url(self) -> str:
        return self.gw.url


def served_gateway(extra_config: str = "", **sections: str) -> Iterator[Served]:
    with RestartableGateway(extra_config, **sections) as gw:
        tenant: dict[str, Any] = gw.cli("tenant", "create", "--name", "Hostile Ltd")
        staff = gw.cli("staff", "create", "--name", "Sam Support", "--employer", "Op GmbH",
                       "--country", "DE")
        yield Served(gw, tenant["tenant_id"],
                     {"Authorization": f"Bearer {tenant['api_key']}"},
                     {"Authorization": f"Bearer {staff['token']}"})


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    yield from served_gateway()
