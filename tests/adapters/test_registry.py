"""The registry API and the package's boundaries."""

from __future__ import annotations

import ast
import pathlib
from datetime import timedelta

import pytest

import adapters
from adapters import PLATFORMS, PlatformAdapter, get_adapter

PACKAGE = pathlib.Path(adapters.__file__).parent


def test_platforms():
    assert sorted(PLATFORMS) == ["standard", "telnyx", "twilio", "vonage", "whatsapp"]
    for name, adapter in PLATFORMS.items():
        assert adapter.name == name
        assert isinstance(adapter, PlatformAdapter)
        assert isinstance(adapter.replay_window, timedelta)
        assert get_adapter(name) is adapter


def test_unknown_platform_is_key_error():
    with pytest.raises(KeyError):
        get_adapter("skype")


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        PLATFORMS["x"] = PLATFORMS["twilio"]  # type: ignore[index]


def test_replay_windows():
    assert get_adapter("twilio").replay_window >= timedelta(hours=24)
    assert get_adapter("whatsapp").replay_window >= timedelta(days=7)
    assert get_adapter("telnyx").replay_window == timedelta(minutes=10)


FORBIDDEN_IMPORTS = {"aiohttp", "gateway", "keys", "requests", "httpx", "socket", "time",
                     "sqlite3", "aiosqlite", "asyncio", "logging", "jwt", "os"}


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_sans_io(module):
    """No framework, storage, network, clock or PyJWT (a dev-only dependency) in adapters."""
    tree = ast.parse((PACKAGE / module).read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{module} imports {name}"
        if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
            pytest.fail(f"{module} reads the clock")
