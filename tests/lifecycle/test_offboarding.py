"""Offboarding: every key destroyed, every row and blob deleted, a receipt kept; and a copy
of the database and blob directory taken before cannot be decrypted after."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import keys
from gateway.errors import DomainError
from gateway.lifecycle.offboarding import get_offboarding
from gateway.tenants.keyring import tenant_root_key_name
from tests.lifecycle.helpers import make_env, storage_toml
from tests.support.poll import eventually

SUBJECT = "+14155550123"
AUDIO = b"RIFF-secret-audio" * 5000


def _backup(config, dest: Path) -> tuple[Path, Path]:
    """What a database-and-blob backup holds: a consistent copy of the database (SQLite's
    online backup) and a copy of the blob directory. Not the key files (the backup rule)."""
    dest.mkdir()
    db_copy = dest / "gateway.sqlite3"
    src = sqlite3.connect(config.database_path)
    dst = sqlite3.connect(db_copy)
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(config.blob_dir, dest / "blobs")
    return db_copy, dest / "blobs"


def _decrypt_from_backup(root, wrapping, tenant_id: str, db_copy: Path, blob_copy: Path,
                         call_id: str, recording_id: str, key_dir: Path | None = None
                         ) -> tuple[dict, bytes]:
    """Everything an attacker with the backup, the root key, `wrapping` and the key store
    directory (the parties' unit-key segment) can read."""
    conn = sqlite3.connect(db_copy)
    try:
        rows = conn.execute("SELECT kind, version, wrapped FROM tenant_keys WHERE tenant_id = ?",
                            (tenant_id,)).fetchall()
        parties = conn.execute("SELECT parties FROM calls WHERE id = ?", (call_id,)).fetchone()[0]
        meta, key_ref = conn.execute("SELECT meta, key_ref FROM recordings WHERE id = ?",
                                     (recording_id,)).fetchone()
    finally:
        conn.close()
    ring = keys.open_tenant_keys(wrapping, uuid.UUID(tenant_id),
                                 [keys.WrappedKey(k, v, bytes(w)) for k, v, w in rows])
    units = {}
    for value in (bytes(parties), bytes(key_ref)):
        ref = keys.unit_ref(value)
        segment = key_dir / tenant_id / "units" / str(ref[0]) if key_dir and ref else None
        if segment is not None and segment.exists():
            units.update({(ref[0], e): u for e, u in keys.decode_segment(
                wrapping, uuid.UUID(tenant_id), ref[0], segment.read_bytes()).items()})
    decoded = json.loads(ring.open_record("call-parties", call_id, parties, units=units))
    length = json.loads(ring.open_record("recording-meta", recording_id, meta,
                                         units=units))["length"]
    reader = keys.open_unit_blob(units, uuid.UUID(tenant_id), uuid.UUID(recording_id),
                                 bytes(key_ref))
    with open(blob_copy / tenant_id / recording_id[-2:] / recording_id, "rb") as f:
        audio = b"".join(reader.read_range(f, length, 0, length))
    return decoded, audio


async def _tenant_rows(gateway, tenant_id: str) -> dict[str, int]:
    db = gateway.services.db
    out = {}
    for table, info in (await db.tables()).items():
        if "tenant_id" in info.columns and table != "tenants":
            n = (await db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ?",
                                   (tenant_id,)))[0]
            if n:
                out[table] = n
    return out


# The backup is a copy of the SQLite file (sqlite3 backup API); a PostgreSQL backup is
# pg_dump, which this test does not drive.
@pytest.mark.backends("sqlite")
async def test_backup_taken_before_offboarding_is_unreadable_after(gateway, tmp_path):
    env = await make_env(gateway)
    keep = await make_env(gateway, "stays")
    call_id = await env.call("a", from_number=SUBJECT)
    recording_id = await env.recording(call_id, AUDIO)
    await env.request("POST", "/v1/subjects/search", json={"phone_number": SUBJECT})
    kept_call = await keep.call("k")
    db_copy, blob_copy = _backup(gateway.config, tmp_path / "backup")
    root = gateway.services.root
    key_file = gateway.config.tenant_key_dir / tenant_root_key_name(env.tenant.id)

    # Control: with the tenant's key file the backup is readable, so the test means
    # something. Without it, the root key alone opens nothing.
    wrapping = keys.TenantRootKey.load(key_file, root, uuid.UUID(env.tenant.id))
    parties, audio = _decrypt_from_backup(root, wrapping, env.tenant.id, db_copy, blob_copy,
                                          call_id, recording_id,
                                          gateway.config.tenant_key_dir)
    assert parties["from"] == SUBJECT and audio == AUDIO
    with pytest.raises(keys.DecryptionError):
        _decrypt_from_backup(root, root, env.tenant.id, db_copy, blob_copy, call_id,
                             recording_id)

    # The operator offboards with the CLI, as a separate process, while the gateway runs.
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}'
                           '[logging]\nlevel = "WARNING"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config_file), "tenant",
         "offboard", env.tenant.id, "--yes", "--json"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert receipt["tenant_root_key_destroyed"] is True
    assert receipt["key_versions_destroyed"] == [1]
    assert receipt["deleted_rows"]["calls"] == 1 and receipt["deleted_rows"]["tenant_keys"] == 2
    assert SUBJECT not in result.stdout and "acme" not in result.stdout

    # The backup is now unreadable: the key file is gone, and nothing else opens it.
    assert not key_file.exists()
    with pytest.raises(ValueError):
        keys.TenantRootKey.load(key_file, root, uuid.UUID(env.tenant.id))
    with pytest.raises(keys.DecryptionError):
        _decrypt_from_backup(root, root, env.tenant.id, db_copy, blob_copy, call_id,
                             recording_id)
    # Not even with another tenant's key file put in its place.
    other_file = gateway.config.tenant_key_dir / tenant_root_key_name(keep.tenant.id)
    shutil.copy(other_file, key_file)
    with pytest.raises(keys.DecryptionError):
        keys.TenantRootKey.load(key_file, root, uuid.UUID(env.tenant.id))
    key_file.unlink()

    # Live: nothing of the tenant but its row (renamed, with the receipt) and its log.
    audit_tables = {"audit_entries", "audit_nodes", "audit_heads", "audit_checkpoints"}

    async def only_audit_left() -> bool:
        return set(await _tenant_rows(gateway, env.tenant.id)) <= audit_tables
    assert await eventually(only_audit_left)
    row = await gateway.services.db.fetchone(
        "SELECT name, state, offboarded_at, offboard_receipt FROM tenants WHERE id = ?",
        (env.tenant.id,))
    assert row["state"] == "offboarded" and row["name"] == f"offboarded-{env.tenant.id}"
    assert json.loads(row["offboard_receipt"]) == receipt
    assert not (gateway.config.blob_dir / env.tenant.id).exists()
    code, _, _ = await env.request("GET", "/v1/calls")
    assert code == 401
    entries = [e for e in await env.audit_entries() if e["kind"] == "key_event"]
    assert [e["outcome"] for e in entries] == ["offboarding_started", "tenant_offboarded"]
    # The other tenant is untouched.
    code, call, _ = await keep.request("GET", f"/v1/calls/{kept_call}")
    assert code == 200 and call["from"] == "+14155550100"
    # A second run is a no-op that returns the receipt.
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config_file), "tenant",
         "offboard", env.tenant.id, "--yes", "--json"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout) == receipt


async def test_offboarding_refuses_active_holds_and_resumes_after_a_crash(gateway,
                                                                          monkeypatch):
    env = await make_env(gateway)
    call_id = await env.call()
    await env.recording(call_id)
    await env.request("POST", "/v1/legal-holds", json={"scope": "tenant", "reason": "audit"})
    service = get_offboarding(gateway.services)
    with pytest.raises(DomainError) as refused:
        await service.offboard(env.tenant.id)
    assert refused.value.status_hint == 409
    assert (await gateway.services.db.fetchone(
        "SELECT state FROM tenants WHERE id = ?", (env.tenant.id,)))["state"] == "active"

    # Crash after the keys are gone but before the rows are.
    original = service._tenant_tables

    async def crash():
        raise RuntimeError("power cut")
    monkeypatch.setattr(service, "_tenant_tables", crash)
    with pytest.raises(RuntimeError):
        await service.offboard(env.tenant.id, override_holds=True)
    assert not await gateway.services.keyring.has_tenant_root_key(env.tenant.id)
    assert await env.count("tenant_keys") == 0 and await env.count("calls") == 1
    monkeypatch.setattr(service, "_tenant_tables", original)
    receipt = await service.offboard(env.tenant.id)
    assert receipt["legal_holds_overridden"] == 1
    assert receipt["tenant_root_key_destroyed"] is True
    assert await _tenant_rows(gateway, env.tenant.id) == {} or set(
        await _tenant_rows(gateway, env.tenant.id)) <= {"audit_entries", "audit_nodes",
                                                         "audit_heads", "audit_checkpoints"}
    with pytest.raises(DomainError):
        await service.offboard(str(uuid.uuid4()))
