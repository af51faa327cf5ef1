"""The [retention] and [keys] config sections, the CLI commands, the progress bar, the
in-process scheduler and the orphan collection."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.lifecycle.progress import ProgressBar
from gateway.lifecycle.retention import get_retention
from gateway.lifecycle.settings import RetentionConfig
from tests.lifecycle.helpers import iso, make_env, storage_toml
from tests.support.poll import eventually


def _cli(config_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                           *args], capture_output=True, text=True, timeout=60)


def test_config_section_defaults_overrides_and_errors(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text("[retention]\nbatch_size = 100\ndsr_due_days = 14\n"
                    "[retention.classes.recordings]\nmax_days = 90\n"
                    "[keys]\ngrace_seconds = 60.0\n")
    # load_config knows the [retention] and [keys] sections without importing the area.
    config = load_config(path)
    section = config.section("retention")
    assert section.batch_size == 100 and section.dsr_due_days == 14
    # A class keeps the defaults it did not override.
    assert section.classes["recordings"] == {"default_days": 30, "min_days": 0, "max_days": 90}
    assert section.classes["call_metadata"]["default_days"] == 365
    assert config.section("keys").grace_seconds == 60.0
    for bad, message in [("[retention.classes.recordings]\nmax_days = 10\n", "default_days"),
                         ("[retention.classes.videos]\nmax_days = 1\n", "videos"),
                         ("[retention.classes.audit]\nmin = 1\n", "audit.min"),
                         ("[retention]\nbatch_size = 5000\n", "batch_size"),
                         ("[retention]\nbatchsize = 5\n", "batchsize")]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    assert RetentionConfig().classes["audit"]["min_days"] == 365


def test_progress_bar_renders_on_one_line():
    out = io.StringIO()
    bar = ProgressBar(10, out, width=10)
    bar.advance(5)
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "[#####-----]" in text and "100%" in text and "10/10" in text


async def test_cli_retention_run_dry_run_then_run(gateway, tmp_path):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 1})
    # Due by the CLI's real clock: started three days ago.
    now = gateway.clock.now()
    for i in range(3):
        await env.call(f"c{i}", started_at=iso(now - timedelta(days=3)))
    await env.call("young")
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}'
                           '[logging]\nlevel = "WARNING"\n')
    assert await eventually(lambda: _calls_are(env, 4))
    result = _cli(config_file, "retention", "run", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    dry = json.loads(result.stdout)
    assert dry["dry_run"] and dry["deleted"]["call_metadata"] == 3
    result = _cli(config_file, "retention", "run")
    assert result.returncode == 0, result.stderr
    assert "deleted: call_metadata 3" in result.stdout and "\r" not in result.stdout
    assert await eventually(lambda: _calls_are(env, 1))
    result = _cli(config_file, "retention", "run", "--json", "--orphans")
    assert json.loads(result.stdout)["deleted"]["call_metadata"] == 0


async def _calls_are(env, n: int) -> bool:
    return await env.count("calls") == n


async def test_cli_keys_rotate_and_status(gateway, tmp_path):
    env = await make_env(gateway)
    await env.call()
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}'
                           '[logging]\nlevel = "WARNING"\n[keys]\ngrace_seconds = 0.0\n')
    result = _cli(config_file, "keys", "rotate", "--tenant", env.tenant.id, "--wait", "--json")
    assert result.returncode == 0, result.stderr
    rotation = json.loads(result.stdout)
    assert rotation["state"] == "completed" and rotation["destroyed_versions"] == [1]
    result = _cli(config_file, "keys", "status", "--tenant", env.tenant.id, "--json")
    assert json.loads(result.stdout)["versions"] == [2]
    # The running gateway picks the new version up (its ring cache is reloaded).
    gateway.services.keyring.forget(env.tenant.id)
    code, page, _ = await env.request("GET", "/v1/calls")
    assert code == 200 and page["items"][0]["from"] == "+14155550100"


async def test_cli_keys_names_a_wrong_tenant_without_a_traceback(gateway, tmp_path):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}')
    result = _cli(config_file, "keys", "status", "--tenant", "00000000-0000-4000-8000-000000000000")
    assert result.returncode == 1 and "tenant not found" in result.stderr
    result = _cli(config_file, "keys", "rotate", "--tenant", "acme")
    assert result.returncode == 1 and "--tenant: must be a UUID" in result.stderr
    assert "Traceback" not in result.stderr


async def test_offboard_cli_refuses_without_confirmation(gateway, tmp_path):
    env = await make_env(gateway)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                             "tenant", "offboard", env.tenant.id], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "--yes" in result.stderr
    code, _, _ = await env.request("GET", "/v1/calls")
    assert code == 200


async def test_in_process_sweep_runs_on_its_interval(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 0})
    await env.call()
    gateway.clock.advance(seconds=1)
    service = get_retention(gateway.services)
    await service.stop()
    service.cfg.sweep_interval_seconds = 0.05
    try:
        await service.start()
        for _ in range(100):
            if await env.count("calls") == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        await service.stop()
        service.cfg.sweep_interval_seconds = 300.0
    assert await env.count("calls") == 0


async def test_orphans_from_other_paths_are_collected(gateway):
    env = await make_env(gateway)
    call = await env.call()
    rec = await env.recording(call)
    service = get_retention(gateway.services)
    # A cascade (here: a raw delete of the call) still shreds the key and leaves a
    # tombstone for the file, which the next sweep unlinks.
    await gateway.services.db.write(lambda tx: tx.execute("DELETE FROM calls WHERE id = ?",
                                                          (call,)))
    assert await env.count("blob_keys") == 0 and await env.count("blob_tombstones") == 1
    assert await env.blob_exists(rec)
    report = await service.sweep()
    assert report.blobs_unlinked == 1 and not await env.blob_exists(rec)
    # A file nobody knows (a writer that died mid-rename) and a key without a row: the
    # full scan removes both.
    stray = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    await env.put_blob(stray, b"ciphertext")
    call2 = await env.call("c2")
    rec2 = await env.recording(call2)
    await gateway.services.db.write(lambda tx: tx.execute(
        "INSERT INTO blob_keys (object_id, tenant_id, kek_version, wrapped, created_at)"
        " VALUES (?, ?, 1, ?, '2026-01-01T00:00:00Z')",
        ("11111111-1111-4111-8111-111111111111", env.tenant.id, b"\x00")))
    counts = await service.scan_orphans()
    assert counts == {"keys": 1, "files": 1}
    assert not await env.blob_exists(stray) and await env.blob_exists(rec2)
