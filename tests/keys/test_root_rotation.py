"""`gateway keys rotate-root` through the real CLI, between two runs of a real gateway, on
the file key store (SQLite) and the S3 key store (PostgreSQL): every call and recording
reads back after a restart, the old root key file is gone, a copy of the old root key
opens none of the new wrapped tenant root keys, and a rotation cut short (the next key
file written) is served by a gateway started meanwhile and finished by the next run."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

import keys
from gateway.tenants.keyring import tenant_root_key_name
from tests.lifecycle.helpers import make_env, storage_toml
from tests.support.cli import run_cli
from tests.support.server import start_gateway

pytestmark = pytest.mark.backends("sqlite", "postgres")

AUDIO = b"RIFF-root-rotation-audio" * 3000


async def _read_all(gateway, tenant, call_ids: list[str], recording_id: str) -> dict:
    out = {}
    for call_id in call_ids:
        code, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}",
                                              headers=tenant.auth)
        assert code == 200, call
        out[call_id] = {k: v for k, v in call.items() if k != "retention"}
    code, audio, _ = await gateway.request("GET", f"/v1/recordings/{recording_id}/audio",
                                           headers=tenant.auth)
    assert code == 200
    out["audio"] = audio
    return out


async def test_rotate_root_rewraps_everything_and_destroys_the_old_key(config, clock, tmp_path):
    root_path = config.root_key_path
    old_root_bytes = root_path.read_bytes()
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        other = await make_env(gateway, "other")
        a = await env.call("a", from_number="+14155550100")
        await env.event("a", "in-progress")
        b = await env.call("b", from_number="+14155550111")
        recording = await env.recording(a, AUDIO)
        x = await other.call("x")
        before = await _read_all(gateway, env.tenant, [a, b], recording)
        other_recording = await other.recording(x)
        other_before = await _read_all(gateway, other.tenant, [x], other_recording)
        cli_config = tmp_path / "gateway.toml"
        cli_config.write_text(f'{storage_toml(gateway)}[server]\nlisten = "127.0.0.1:9"\n'
                              '[logging]\nlevel = "WARNING"\n')
        tenants = [env.tenant, other.tenant]
        old_stored = {t.id: await gateway.services.key_store.get(tenant_root_key_name(t.id))
                      for t in tenants}

    # A rotation cut short: the next key file exists, nothing is rewrapped yet. A gateway
    # started now reads everything (it opens under either key).
    keys.FileRootKeyProvider.begin_rotation(root_path)
    assert root_path.with_name(root_path.name + ".next").exists()
    async with start_gateway(config, clock) as gateway:
        assert await _read_all(gateway, env.tenant, [a, b], recording) == before

    result = await asyncio.to_thread(run_cli, cli_config, "keys", "rotate-root", "--json",
                                     timeout=120)
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["resumed"] is True and done["tenant_root_keys_rewrapped"] == 2

    # The old root key file is gone: the path holds the new key, no `.next` is left, and
    # the old key's bytes are nowhere under the data directory.
    assert not root_path.with_name(root_path.name + ".next").exists()
    assert root_path.read_bytes() != old_root_bytes
    old_key = old_root_bytes[5:]
    for path in config.data_dir.rglob("*"):
        if path.is_file():
            assert old_key not in path.read_bytes(), path

    async with start_gateway(config, clock) as gateway:
        assert await _read_all(gateway, env.tenant, [a, b], recording) == before
        assert await _read_all(gateway, other.tenant, [x], other_recording) == other_before
        log = [e for e in await _entries(gateway, env.tenant.id) if e["kind"] == "key_event"]
        assert log[-1]["details"]["event"] == "root_key_rotated"
        # A copy of the old root key opens none of the rewrapped tenant root keys.
        copy = tmp_path / "old-root.key"
        copy.write_bytes(old_root_bytes)
        copy.chmod(0o600)
        old_root = keys.FileRootKeyProvider.load(copy)
        for tenant in tenants:
            stored = await gateway.services.key_store.get(tenant_root_key_name(tenant.id))
            assert stored != old_stored[tenant.id]
            with pytest.raises(keys.DecryptionError):
                keys.TenantRootKey.from_bytes(stored, old_root, uuid.UUID(tenant.id))
            keys.TenantRootKey.from_bytes(stored, gateway.services.keyring.root,
                                          uuid.UUID(tenant.id))

    # Running it again is a fresh rotation that works the same way.
    again = await asyncio.to_thread(run_cli, cli_config, "keys", "rotate-root", "--json",
                                    timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] is False
    async with start_gateway(config, clock) as gateway:
        assert await _read_all(gateway, env.tenant, [a, b], recording) == before


async def _entries(gateway, tenant_id: str) -> list[dict]:
    from gateway.transparency.log import get_audit_log
    audit = get_audit_log(gateway.services)
    return [json.loads(e) for e in await audit.entries(tenant_id, 0, await audit.size(tenant_id))
            if e]


def test_rows_under_the_root_key_itself_are_rewrapped(tmp_path):
    """A tenant from before tenant root keys: its rows are wrapped by the root key."""
    path = tmp_path / "root.key"
    keys.FileRootKeyProvider.create(path)
    tid = uuid.uuid4()
    rows = keys.new_tenant_keys(keys.FileRootKeyProvider.load(path), tid)
    old, new, resumed = keys.FileRootKeyProvider.begin_rotation(path)
    assert not resumed
    during = keys.FileRootKeyProvider.load(path)        # follows the rotation
    keys.open_tenant_keys(during, tid, rows)            # old rows open
    rewrapped = keys.rewrap_tenant_keys(old, new, tid, rows)
    assert len(rewrapped) == len(rows)
    assert keys.rewrap_tenant_keys(old, new, tid, rewrapped) == []   # rerun: nothing left
    assert keys.FileRootKeyProvider.finish_rotation(path)
    after = keys.FileRootKeyProvider.load(path)
    keys.open_tenant_keys(after, tid, rewrapped)
    with pytest.raises(keys.DecryptionError):
        keys.open_tenant_keys(after, tid, rows)
    assert not keys.FileRootKeyProvider.finish_rotation(path)     # nothing under way
