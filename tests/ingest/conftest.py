"""Platform end-to-end fixtures: the real gateway on a real port (as tests/conftest.py), a
fake platform media server over real HTTPS, and the fetcher's transport pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import build_app
from gateway.config import Config
from gateway.core.clock import ManualClock
from gateway.ingest.settings import RecordingFetchConfig
from gateway.media.settings import MediaConfig
from gateway.services import init_storage, open_services
from tests.support.server import RunningGateway, make_config

from .fakes import FakePlatform, FakeResolver, TlsMaterial, make_tls


def fetch_config(**overrides) -> RecordingFetchConfig:
    values = dict(max_attempts=4, base_delay_seconds=2.0, max_delay_seconds=60.0,
                  timeout_seconds=20.0, connect_timeout_seconds=5.0, read_timeout_seconds=0.5,
                  poll_interval_seconds=0.5, lease_seconds=900.0,
                  # The fake platform listens on 127.0.0.1.
                  allow_private_addresses=True,
                  allowed_hosts={"standard": ["media.example.com"]})
    values.update(overrides)
    return RecordingFetchConfig(**values)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def fake_platform(tls: TlsMaterial) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    await fake.start(tls)
    yield fake
    await fake.close()


@pytest.fixture
def resolver(fake_platform: FakePlatform) -> FakeResolver:
    return FakeResolver(fake_platform.port)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data")
    config.extra["recording_fetch"] = fetch_config()
    # Live audio answers WhatsApp offers through the Graph API: never the real one.
    config.extra["media"] = MediaConfig(whatsapp_graph_base_url="http://127.0.0.1:9/unused",
                                        webrtc_host_addresses=["127.0.0.1"])
    init_storage(config)
    return config


class Launcher:
    """Starts gateways on one data dir (a restart is stop() then start()); stops them all."""

    def __init__(self, config: Config, clock: ManualClock, tls: TlsMaterial,
                 resolver: FakeResolver) -> None:
        self.config, self.clock, self.tls, self.resolver = config, clock, tls, resolver
        self.running: list[RunningGateway] = []

    async def start(self) -> RunningGateway:
        services = await open_services(self.config, self.clock)
        services.features["recording_fetch"].configure_transport(
            ssl_context=self.tls.client_context(), resolver=self.resolver)
        server = TestServer(build_app(self.config, self.clock, services), host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        gateway = RunningGateway(str(server.make_url("")).rstrip("/"), http, services,
                                 self.clock, self.config, server)
        self.running.append(gateway)
        return gateway

    async def stop(self, gateway: RunningGateway) -> None:
        self.running.remove(gateway)
        await gateway.http.close()
        await gateway.server.close()
        await gateway.services.close()


@pytest.fixture
async def launcher(config: Config, clock: ManualClock, tls: TlsMaterial,
                   resolver: FakeResolver) -> AsyncIterator[Launcher]:
    launcher = Launcher(config, clock, tls, resolver)
    yield launcher
    for gateway in list(launcher.running):
        await launcher.stop(gateway)


@pytest.fixture
async def gateway(launcher: Launcher) -> RunningGateway:
    return await launcher.start()


@pytest.fixture
def reconfigure(config: Config) -> Callable[..., None]:
    """Change the [recording_fetch] section before the gateway fixture starts."""
    def apply(**overrides) -> None:
        config.extra["recording_fetch"] = fetch_config(**overrides)
    return apply


@pytest.fixture(scope="session")
def vonage_key():
    """The Vonage application's RSA key pair (generated once: 2048-bit keys take a while)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
