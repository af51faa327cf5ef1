"""Live-audio tests run the real gateway (tests/conftest.py) with a [media] section tuned
for tests: short timeouts, frequent checkpoints, WebRTC on the loopback interface only."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.media.settings import MediaConfig
from gateway.services import init_storage
from tests.support.server import make_config


@pytest.fixture
def media_config() -> MediaConfig:
    return MediaConfig(idle_timeout_seconds=3.0, checkpoint_seconds=0.2,
                       webrtc_host_addresses=["127.0.0.1"],
                       whatsapp_graph_base_url="http://127.0.0.1:9/unused",
                       whatsapp_timeout_seconds=5.0)


@pytest.fixture
def config(tmp_path: Path, media_config: MediaConfig) -> Config:
    config = make_config(tmp_path / "data")
    config.extra["media"] = media_config
    init_storage(config)
    return config
