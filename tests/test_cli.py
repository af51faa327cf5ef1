"""The `gateway` command, run as a user runs it: a subprocess with a config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_path),
                           *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[storage]\ndata_dir = "data"\n')
    return path


def test_init_then_tenant_and_staff_create(config_file: Path, tmp_path: Path):
    result = run_cli(config_file, "init", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created["created"]) == {"root_key", "signing_key"}
    root_key = tmp_path / "data" / "root.key"
    assert os.stat(root_key).st_mode & 0o777 == 0o600
    # Idempotent: a second init keeps the keys.
    before = root_key.read_bytes()
    assert run_cli(config_file, "init", "--json").returncode == 0
    assert root_key.read_bytes() == before

    result = run_cli(config_file, "tenant", "create", "--name", "acme", "--json")
    assert result.returncode == 0, result.stderr
    tenant = json.loads(result.stdout)
    assert set(tenant) == {"tenant_id", "api_key"} and tenant["api_key"].startswith("vgw_")

    result = run_cli(config_file, "tenant", "create", "--name", "acme", "--json")
    assert result.returncode != 0 and "exists" in result.stderr

    result = run_cli(config_file, "staff", "create", "--name", "Sam", "--employer", "Op Ltd",
                     "--country", "GB", "--json")
    assert result.returncode == 0, result.stderr
    staff = json.loads(result.stdout)
    assert staff["token"].startswith("vgws_") and staff["pseudonym"].startswith("staff-")
    # Secrets are printed once and never logged.
    assert tenant["api_key"] not in result.stderr


def test_commands_refuse_before_init_and_on_bad_config(tmp_path: Path, config_file: Path):
    result = run_cli(config_file, "tenant", "create", "--name", "acme")
    assert result.returncode == 2 and "gateway init" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\ndata_dri = 'x'\n")
    result = run_cli(bad, "init")
    assert result.returncode == 2 and "storage.data_dri" in result.stderr
