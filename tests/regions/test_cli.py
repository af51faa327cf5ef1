"""The operator's commands, run as a user would (subprocesses on a config file):
`tenant create --region`, an unknown region, `tenant move-region`, and refusing to start
when a region in use was removed from the config."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_cli


def write_config(tmp_path: Path, regions: tuple[str, ...] = ("eu", "us")) -> Path:
    lines = ["[storage]", f'data_dir = "{tmp_path / "data"}"']
    for name in regions:
        lines += [f"[regions.{name}]", f'blob_url = "file://{tmp_path / name / "blobs"}"',
                  f'key_store_url = "file://{tmp_path / name / "keys"}"',
                  f'countries = ["{"DE" if name == "eu" else "US"}"]']
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_create_move_and_refuse(tmp_path):
    config = write_config(tmp_path)
    assert run_cli(config, "init").returncode == 0
    created = run_cli(config, "tenant", "create", "--name", "acme", "--region", "eu", "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["region"] == "eu"
    assert (tmp_path / "eu" / "keys" / f"{tenant['tenant_id']}.key").exists()
    assert not list((tmp_path / "data").rglob(f"{tenant['tenant_id']}*"))

    unknown = run_cli(config, "tenant", "create", "--name", "other", "--region", "mars")
    assert unknown.returncode == 1
    assert "configured regions: eu, us" in unknown.stderr

    old_key = (tmp_path / "eu" / "keys" / f"{tenant['tenant_id']}.key").read_bytes()
    moved = run_cli(config, "tenant", "move-region", "--tenant", tenant["tenant_id"],
                    "--region", "us", "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["to"] == "us"
    assert not list((tmp_path / "eu").rglob(f"{tenant['tenant_id']}*.key"))
    # Re-encrypted into us under a new tenant root key, not a copy of the old one.
    assert (tmp_path / "us" / "keys" / f"{tenant['tenant_id']}.key").read_bytes() != old_key

    # us is in use: a config without it does not start, and says who is there.
    refused = run_cli(write_config(tmp_path, ("eu",)), "tenant", "create", "--name", "x")
    assert refused.returncode == 2
    assert tenant["tenant_id"] in refused.stderr and "'us'" in refused.stderr
