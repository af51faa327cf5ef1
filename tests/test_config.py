"""config.example.toml is the reference: it loads, and it documents every key."""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from gateway import features
from gateway.config import _EXTRA_SECTIONS, Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def test_example_config_loads_and_documents_every_key():
    features.modules()  # registers every feature's section
    load_config(EXAMPLE)
    written = tomllib.loads(EXAMPLE.read_text())
    sections = {f.name: type(getattr(Config(), f.name)) for f in fields(Config)
                if f.name != "extra"}
    sections.update(_EXTRA_SECTIONS)
    for name, cls in sections.items():
        assert name in written, f"[{name}] missing from config.example.toml"
        for f in fields(cls):
            if not is_dataclass(f.type):
                assert f.name in written[name], f"{name}.{f.name} undocumented"


def test_unknown_keys_and_bad_types_are_errors(tmp_path):
    path = tmp_path / "c.toml"
    for text, message in (("[server]\nlisten = 8080\n", "server.listen"),
                          ("[nonsense]\nx = 1\n", "nonsense"),
                          ("[privacy]\nblind_index_bits = 64\n", "blind_index_bits"),
                          ("[server\n", "not valid TOML")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)
