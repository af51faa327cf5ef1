"""Deletion that reaches every copy (issue 11), end to end on the embedded stack (SQLite
and files: the backup here is a file copy; tests/lifecycle runs the same erase and sweep
paths on PostgreSQL + S3).

- Restore: back up the database and the blobs, erase a subject and let retention delete
  another call, stop, put the backup back beside the current key store and root key,
  start: the erased and expired calls and recordings are gone (404), their unit keys are
  not in the key store (the backup alone cannot open them), everything else reads back.
- Forensics: after an erase, the database file, its WAL and every key-store file hold
  neither the erased unit keys nor the erased sealed values (taken before the erase).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.lifecycle.unit_keys import segment_name
from tests.lifecycle.helpers import iso, make_env
from tests.support.server import start_gateway

SUBJECT = "+14155550123"
OTHER = "+14155550188"
AUDIO = b"RIFF-kept-audio-" * 4000
ERASED_AUDIO = b"RIFF-erased-audio" * 4000


def _backup(config, dest: Path) -> None:
    dest.mkdir()
    src = sqlite3.connect(config.database_path)
    dst = sqlite3.connect(dest / "db.sqlite3")
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(config.blob_dir, dest / "blobs")


def _restore(config, src: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{config.database_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(src / "db.sqlite3", config.database_path)
    shutil.rmtree(config.blob_dir)
    shutil.copytree(src / "blobs", config.blob_dir)


async def _sealed(gateway, call_id: str) -> list[bytes]:
    db = gateway.services.db
    values = [bytes((await db.fetchone("SELECT parties FROM calls WHERE id = ?",
                                       (call_id,)))[0])]
    values += [bytes(r[0]) for r in await db.fetchall(
        "SELECT body FROM call_events WHERE call_id = ?", (call_id,))]
    return values


@pytest.mark.backends("sqlite")
async def test_restored_backup_never_serves_erased_or_expired_calls(config, clock, tmp_path):
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        erased = await env.call("erased", from_number=SUBJECT)
        erased_rec = await env.recording(erased, ERASED_AUDIO)
        old = iso(clock.now() - timedelta(days=30))
        expired = await env.call("expired", from_number=OTHER, started_at=old)
        kept = await env.call("kept", from_number=OTHER)
        kept_rec = await env.recording(kept, AUDIO)
        doomed_sealed = await _sealed(gateway, erased) + await _sealed(gateway, expired)
        _backup(config, tmp_path / "backup")

        code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                            json={"phone_number": SUBJECT})
        assert code == 200 and result["status"] == "completed", result
        code, policy, _ = await env.request("PUT", "/v1/retention", json={"call_metadata": 7})
        assert code == 200, policy
        await env.sweep()
        assert (await env.request("GET", f"/v1/calls/{expired}"))[0] == 404
        tenant = env.tenant

    _restore(config, tmp_path / "backup")
    async with start_gateway(config, clock) as gateway:
        env.gateway = gateway
        env.tenant = tenant
        # The backup's rows point at unit keys the key store no longer has.
        units = gateway.services.keyring.units
        assert await units.load(tenant.id, doomed_sealed) == {}
        for call_id in (erased, expired):
            code, problem, _ = await env.request("GET", f"/v1/calls/{call_id}")
            assert code == 404, problem
        code, _, _ = await env.request("GET", f"/v1/recordings/{erased_rec}/audio")
        assert code == 404
        code, found, _ = await env.request("POST", "/v1/subjects/search",
                                           json={"phone_number": SUBJECT})
        assert code == 200 and found["calls"] == [], found
        # Everything else reads back intact.
        code, call, _ = await env.request("GET", f"/v1/calls/{kept}")
        assert code == 200 and call["from"] == OTHER and "state" not in call
        code, audio, _ = await env.request("GET", f"/v1/recordings/{kept_rec}/audio")
        assert code == 200 and audio == AUDIO


def _files(*roots: Path) -> list[Path]:
    out = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out += [Path(d) / f for d, _, fs in os.walk(root) for f in fs]
    return out


@pytest.mark.backends("sqlite")
async def test_erase_leaves_no_key_or_sealed_bytes_in_database_wal_or_key_store(gateway):
    env = await make_env(gateway)
    call_id = await env.call("erased", from_number=SUBJECT)
    await env.event("erased", "in-progress")
    kept = await env.call("kept", from_number=OTHER)
    sealed = await _sealed(gateway, call_id)
    units = gateway.services.keyring.units
    loaded = await units.load(env.tenant.id, sealed)
    assert len(loaded) == len(sealed) == 3
    # The raw key bytes, read here for forensics only (keys/ never hands them out).
    needles = [u._key for u in loaded.values()] + sealed
    config = gateway.config
    store_files = _files(config.tenant_key_dir, Path(f"{config.database_path}"),
                         Path(f"{config.database_path}-wal"))
    before = b"".join(p.read_bytes() for p in store_files)
    # The control: the sealed values are there to find (the keys are inside the segment's
    # own encryption, so a scan can only show they are not lying in the clear).
    assert all(n in before for n in sealed)

    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": SUBJECT})
    assert code == 200 and result["receipt"]["deleted"]["call_metadata"] == 1, result
    for path in _files(config.tenant_key_dir, Path(f"{config.database_path}"),
                       Path(f"{config.database_path}-wal")):
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"erased bytes found in {path.name}"
    # The erased keys' segments are gone (nothing else was in them); the kept call opens.
    for segment_id, _ in loaded:
        assert not (config.tenant_key_dir / segment_name(env.tenant.id, segment_id)).exists()
    code, call, _ = await env.request("GET", f"/v1/calls/{kept}")
    assert code == 200 and call["from"] == OTHER
