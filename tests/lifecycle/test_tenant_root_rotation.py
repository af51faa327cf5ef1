"""`gateway keys rotate-tenant-root` through the real CLI against a running gateway: every
call, recording and log entry reads as before, the old tenant root key is gone from the key
store, a key_event is logged, and the tenant's key rows as a database backup taken before
hold them open under neither the new key nor (destroyed) the old one. A run cut short
after the next key was stored is finished by the next run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import keys
from gateway.tenants.keyring import next_tenant_root_key_name, tenant_root_key_name
from tests.lifecycle.helpers import make_env, storage_toml

AUDIO = b"RIFF-rotation-audio" * 4000


def _cli(config_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                           *args], capture_output=True, text=True, timeout=120)


async def _rotate(gateway, tmp_path, tenant_id: str) -> dict:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[logging]\nlevel = "WARNING"\n')
    result = await asyncio.to_thread(_cli, config_file, "keys", "rotate-tenant-root",
                                     "--tenant", tenant_id, "--json")
    assert result.returncode == 0, result.stderr
    # The running gateway as a fresh replica would see it: nothing opened before.
    keyring = gateway.services.keyring
    keyring.forget(tenant_id)
    keyring.units._cache.clear()
    return json.loads(result.stdout)


async def _everything(env, call_ids, recording_id) -> dict:
    out = {}
    for call_id in call_ids:
        code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
        assert code == 200, call
        out[call_id] = call
    code, audio, _ = await env.request("GET", f"/v1/recordings/{recording_id}/audio")
    assert code == 200
    out["audio"] = audio
    out["log"] = (await env.audit_entries())
    return out


async def _backup_rows(gateway, tenant_id: str) -> list[keys.WrappedKey]:
    rows = await gateway.services.db.fetchall(
        "SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?", (tenant_id,))
    return [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"])) for r in rows]


async def test_rotation_keeps_everything_readable_and_destroys_the_old_key(gateway, tmp_path):
    env = await make_env(gateway)
    other = await make_env(gateway, "other")
    a = await env.call("a", from_number="+14155550100")
    await env.event("a", "in-progress")
    b = await env.call("b", from_number="+14155550111")
    recording = await env.recording(a, AUDIO)
    other_call = await other.call("x")
    tid = env.tenant.id
    store, root = gateway.services.key_store, gateway.services.keyring.root
    old_bytes = await store.get(tenant_root_key_name(tid))
    backup = await _backup_rows(gateway, tid)
    # The backup opens while the old key exists (what the rotation must take away).
    old_key = keys.TenantRootKey.from_bytes(old_bytes, root, uuid.UUID(tid))
    keys.open_tenant_keys(old_key, uuid.UUID(tid), backup)
    before = await _everything(env, [a, b], recording)

    result = await _rotate(gateway, tmp_path, tid)
    assert result["key_rows_rewrapped"] == 2 and result["segments_rewrapped"] >= 1
    assert result["resumed"] is False

    after = await _everything(env, [a, b], recording)
    assert after["audio"] == AUDIO
    assert {k: v for k, v in after.items() if k != "log"} == \
        {k: v for k, v in before.items() if k != "log"}
    assert after["log"][:len(before["log"])] == before["log"]
    event = after["log"][result["log_index"]]
    assert event["kind"] == "key_event"
    assert event["details"]["event"] == "tenant_root_key_rotated"
    # New calls still work, and the other tenant is untouched.
    c = await env.call("c", from_number="+14155550122")
    code, call, _ = await env.request("GET", f"/v1/calls/{c}")
    assert code == 200 and call["from"] == "+14155550122"
    code, call, _ = await other.request("GET", f"/v1/calls/{other_call}")
    assert code == 200 and call["from"] == "+14155550100"

    # The old key object is gone from the store; only the new one is left.
    new_bytes = await store.get(tenant_root_key_name(tid))
    assert new_bytes is not None and new_bytes != old_bytes
    assert await store.get(next_tenant_root_key_name(tid)) is None
    for name in await store.list(tid):
        assert await store.get(name) != old_bytes
    # The backup's rows do not open under the new key, and the old one no longer exists.
    new_key = keys.TenantRootKey.from_bytes(new_bytes, root, uuid.UUID(tid))
    with pytest.raises(keys.DecryptionError):
        keys.open_tenant_keys(new_key, uuid.UUID(tid), backup)
    keys.open_tenant_keys(new_key, uuid.UUID(tid), await _backup_rows(gateway, tid))


async def test_a_rotation_cut_short_is_finished_by_the_next_run(gateway, tmp_path):
    env = await make_env(gateway)
    a = await env.call("a")
    recording = await env.recording(a, AUDIO)
    tid = env.tenant.id
    store, root = gateway.services.key_store, gateway.services.keyring.root
    old_bytes = await store.get(tenant_root_key_name(tid))
    # A run that stopped right after storing the next key (step 1): the gateway already
    # wraps new unit keys under it, and reads work with both.
    _, next_bytes = keys.TenantRootKey.generate(root, uuid.UUID(tid))
    await store.put(next_tenant_root_key_name(tid), next_bytes)
    gateway.services.keyring.forget(tid)
    during = await env.call("during", from_number="+14155550133")
    code, call, _ = await env.request("GET", f"/v1/calls/{a}")
    assert code == 200 and call["from"] == "+14155550100"

    result = await _rotate(gateway, tmp_path, tid)
    assert result["resumed"] is True
    assert await store.get(tenant_root_key_name(tid)) == next_bytes
    assert await store.get(next_tenant_root_key_name(tid)) is None
    for name in await store.list(tid):
        assert await store.get(name) != old_bytes
    for call_id, number in ((a, "+14155550100"), (during, "+14155550133")):
        code, call, _ = await env.request("GET", f"/v1/calls/{call_id}")
        assert code == 200 and call["from"] == number
    code, audio, _ = await env.request("GET", f"/v1/recordings/{recording}/audio")
    assert code == 200 and audio == AUDIO


async def test_rotate_tenant_root_names_a_wrong_tenant_without_a_traceback(gateway, tmp_path):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[logging]\nlevel = "WARNING"\n')
    result = _cli(config_file, "keys", "rotate-tenant-root", "--tenant", str(uuid.uuid4()))
    assert result.returncode != 0 and "Traceback" not in result.stderr
