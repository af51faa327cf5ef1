"""Deletion that reaches every copy (issue 11), end to end on the embedded stack (SQLite
and files: the backup here is a file copy; tests/lifecycle runs the same erase and sweep
paths on PostgreSQL + S3).

- Restore: back up the database and the blobs, erase a subject and let retention delete
  another call, stop, put the backup back beside the current key store and root key,
  start: the erased and expired calls and recordings are gone (404), their unit keys
  (parties, events, each recording's data key) are not in the key store (the backup
  alone cannot open them), everything else reads back, recordings whole and by range.
- Forensics: after an erase, the database file, its WAL and every key-store file hold
  neither the erased unit keys (a recording's data key among them) nor the erased sealed
  values (taken before the erase); after a recording stored before per-recording keys
  moves into the key store, its wrapped data key is in neither the database nor its WAL.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.lifecycle.helpers import iso, make_env
from tests.support.forensics import stored_segment_entries
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
    """The call's sealed values and its recordings' key references and sealed metadata."""
    db = gateway.services.db
    values = [bytes((await db.fetchone("SELECT parties FROM calls WHERE id = ?",
                                       (call_id,)))[0])]
    values += [bytes(r[0]) for r in await db.fetchall(
        "SELECT body FROM call_events WHERE call_id = ?", (call_id,))]
    for key_ref, meta in await db.fetchall(
            "SELECT key_ref, meta FROM recordings WHERE call_id = ?", (call_id,)):
        values += [bytes(key_ref), bytes(meta)]
    return values


async def _read(env, recording_id: str, range_header: str | None = None):
    headers = {**env.auth, **({"Range": range_header} if range_header else {})}
    return await env.request("GET", f"/v1/recordings/{recording_id}/audio", headers=headers)


@pytest.mark.backends("sqlite")
async def test_restored_backup_never_serves_erased_or_expired_calls(config, clock, tmp_path):
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        erased = await env.call("erased", from_number=SUBJECT)
        erased_rec = await env.recording(erased, ERASED_AUDIO)
        old = iso(clock.now() - timedelta(days=30))
        expired = await env.call("expired", from_number=OTHER, started_at=old)
        expired_rec = await env.recording(expired, ERASED_AUDIO)
        kept = await env.call("kept", from_number=OTHER)
        kept_rec = await env.recording(kept, AUDIO)
        kept_too = await env.recording(kept, AUDIO[::-1])
        doomed_sealed = await _sealed(gateway, erased) + await _sealed(gateway, expired)
        # Per call: parties, its event, its recording's data key (key ref) and metadata.
        assert len(doomed_sealed) == 2 * (2 + 2)
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
        for gone in (erased_rec, expired_rec):
            for path in (f"/v1/recordings/{gone}", f"/v1/recordings/{gone}/audio"):
                assert (await env.request("GET", path))[0] == 404
        code, found, _ = await env.request("POST", "/v1/subjects/search",
                                           json={"phone_number": SUBJECT})
        assert code == 200 and found["calls"] == [], found
        # Everything else reads back intact.
        code, call, _ = await env.request("GET", f"/v1/calls/{kept}")
        assert code == 200 and call["from"] == OTHER and "state" not in call
        for recording_id, data in ((kept_rec, AUDIO), (kept_too, AUDIO[::-1])):
            code, audio, _ = await _read(env, recording_id)
            assert code == 200 and audio == data
            code, part, _ = await _read(env, recording_id, "bytes=30000-40000")
            assert code == 206 and part == data[30000:40001]
            code, tail, _ = await _read(env, recording_id, "bytes=-100")
            assert code == 206 and tail == data[-100:]


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
    await env.recording(call_id, ERASED_AUDIO)
    kept = await env.call("kept", from_number=OTHER)
    sealed = await _sealed(gateway, call_id)
    units = gateway.services.keyring.units
    loaded = await units.load(env.tenant.id, sealed)
    # Parties, two events, and the recording's data key (its key ref and metadata name it).
    assert len(loaded) == 4 and len(sealed) == 5
    # The raw key bytes, read here for forensics only (keys/ never hands them out).
    needles = [u._key for u in loaded.values()] + sealed
    config = gateway.config
    store_files = _files(config.tenant_key_dir, Path(f"{config.database_path}"),
                         Path(f"{config.database_path}-wal"))
    before = b"".join(p.read_bytes() for p in store_files)
    # The control: the sealed values are there to find (the keys are inside the segment's
    # own encryption, so a scan can only show they are not lying in the clear).
    assert all(n in before for n in sealed)
    assert not any(u._key in before for u in loaded.values())

    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": SUBJECT})
    assert code == 200 and result["receipt"]["deleted"]["call_metadata"] == 1, result
    for path in _files(config.tenant_key_dir, Path(f"{config.database_path}"),
                       Path(f"{config.database_path}-wal")):
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"erased bytes found in {path.name}"
    # Each erased key's segment is gone or, rewritten without it (it also holds keys written
    # ahead for later calls), decrypts without the erased entries; the kept call opens.
    for segment_id, entry_id in loaded:
        assert entry_id not in await stored_segment_entries(gateway, env.tenant.id, segment_id)
    code, call, _ = await env.request("GET", f"/v1/calls/{kept}")
    assert code == 200 and call["from"] == OTHER


@pytest.mark.backends("sqlite")
async def test_moved_legacy_data_keys_leave_no_bytes_in_database_or_wal(gateway):
    from tests.lifecycle.legacy import legacy_recording, wrapped_dek
    env = await make_env(gateway)
    call_id = await env.call("legacy", from_number=SUBJECT)
    recording_id = await legacy_recording(gateway, env.tenant.id, call_id, AUDIO)
    wrapped = await wrapped_dek(gateway, recording_id)
    config = gateway.config
    database = [Path(f"{config.database_path}"), Path(f"{config.database_path}-wal")]
    assert any(wrapped in p.read_bytes() for p in _files(*database))   # the control
    assert await gateway.services.recordings.migrate_recording_keys() == 1
    for path in _files(*database):
        assert wrapped not in path.read_bytes(), f"a moved data key found in {path.name}"
    code, audio, _ = await env.request("GET", f"/v1/recordings/{recording_id}/audio")
    assert code == 200 and audio == AUDIO
    # Erased, the moved key leaves the key store too.
    row = await gateway.services.db.fetchone("SELECT key_ref FROM recordings WHERE id = ?",
                                             (recording_id,))
    (unit,) = (await gateway.services.keyring.units.load(env.tenant.id, [row[0]])).values()
    code, _, _ = await env.request("POST", "/v1/subjects/erase", json={"phone_number": SUBJECT})
    assert code == 200
    for path in _files(config.tenant_key_dir, *database):
        assert unit._key not in path.read_bytes(), f"an erased data key found in {path.name}"
