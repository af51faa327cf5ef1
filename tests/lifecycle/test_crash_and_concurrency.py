"""The sweep interrupted at random points (an injected crash, and a real SIGKILL of
`gateway retention run`), and two sweeps of two processes at once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from adapters.events import CallEvent
from gateway.lifecycle.retention import RetentionService, get_retention
from gateway.lifecycle.sweep import SweepInterrupted
from gateway.services import open_services
from gateway.transparency.log import get_audit_log
from tests.lifecycle.helpers import make_env, storage_toml

HELD_NUMBER = "+14155550177"


async def _seed(gateway, name: str, n_old: int = 24, n_young: int = 6) -> dict:
    """A tenant whose calls (each with a recording) are: old and due, old but held (by
    call and by number), old but restricted, and young."""
    env = await make_env(gateway, name)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 2})
    integration = await gateway.services.integrations.load_for_delivery(
        "standard", env.integration["id"])
    now = gateway.clock.now()
    events = []
    for i in range(n_old + n_young):
        started = now - timedelta(days=5 if i < n_old else 0, seconds=i)
        number = HELD_NUMBER if i == 1 else f"+1415555{1000 + i:04d}"
        events.append(CallEvent(platform="standard", dedupe_key=f"{name}-{i}",
                                platform_call_id=f"{name}-{i}", status="completed",
                                from_number=number, to_number="+14155550199",
                                started_at=started, occurred_at=started))
    await gateway.services.ingest.ingest_events(integration, events)
    rows = await gateway.services.db.fetchall(
        "SELECT id, platform_call_id FROM calls WHERE tenant_id = ?", (env.tenant.id,))
    by_index = {int(r["platform_call_id"].rsplit("-", 1)[1]): r["id"] for r in rows}
    audio = {}

    async def record(i: int) -> None:
        data = f"audio-{name}-{i}-".encode() * 50

        async def chunks():
            yield data
        result = await gateway.services.recordings.store_stream(
            env.tenant.id, by_index[i], "audio/wav", chunks())
        audio[by_index[i]] = (result["id"], data)

    await asyncio.gather(*(record(i) for i in by_index))
    held = {by_index[0], by_index[1], by_index[2]}
    await env.request("POST", "/v1/legal-holds", json={"scope": "call", "call_id": by_index[0],
                                                       "reason": "x"})
    await env.request("POST", "/v1/legal-holds", json={"scope": "call", "call_id": by_index[2],
                                                       "reason": "x"})
    await env.request("POST", "/v1/legal-holds", json={"scope": "phone_number",
                                                       "phone_number": HELD_NUMBER,
                                                       "reason": "x"})
    restricted = {by_index[3], by_index[4]}
    await gateway.services.db.write(lambda tx: tx.execute(
        f"UPDATE calls SET restricted_at = ? WHERE id IN ({','.join('?' * len(restricted))})",
        (now.isoformat(), *restricted)))
    gateway.clock.advance(hours=12)
    keep = held | restricted | {by_index[i] for i in range(n_old, n_old + n_young)}
    due = set(by_index.values()) - keep
    return {"env": env, "keep": keep, "due": due, "audio": audio}


async def _check_consistent(gateway, seed) -> set[str]:
    """Invariants at any instant: what must stay is whole and readable; a call that is
    gone left no readable recording; every deletion has its receipt. Returns the calls
    still present."""
    env = seed["env"]
    db = gateway.services.db
    present = {r["id"] for r in await db.fetchall("SELECT id FROM calls WHERE tenant_id = ?",
                                                  (env.tenant.id,))}
    assert seed["keep"] <= present, "a kept call was deleted"
    for call_id, (recording_id, _data) in seed["audio"].items():
        row = await db.fetchone("SELECT 1 FROM recordings WHERE id = ?", (recording_id,))
        # Its key reference (the key is in the key store; a legacy key is in blob_keys).
        key = await db.fetchone(
            "SELECT 1 FROM recordings r WHERE r.id = ? AND (r.key_ref IS NOT NULL OR EXISTS"
            " (SELECT 1 FROM blob_keys k WHERE k.object_id = r.id))", (recording_id,))
        if call_id in present:
            assert row is not None and key is not None
            assert await env.blob_exists(recording_id)
        else:
            assert row is None and key is None, "a deleted call left a readable recording"
    for call_id in seed["keep"]:
        recording_id, data = seed["audio"][call_id]
        opened = await gateway.services.recordings.open(env.tenant.id, recording_id)
        assert b"".join([p async for p in opened.iter_range()]) == data
    listed = set()
    for entry in await env.audit_entries():
        if entry["kind"] == "deletion_receipt" and entry["outcome"] == "deleted":
            hashes = entry["details"]["ids_sha256"]
            assert not listed & set(hashes), "an id is in two receipts"
            listed.update(hashes)
    gone = set(seed["audio"]) - present
    assert listed == {hashlib.sha256(c.encode()).hexdigest() for c in gone}
    return present


async def test_sweep_killed_at_random_points_loses_nothing_and_finishes(gateway):
    service = get_retention(gateway.services)
    rng = random.Random(20260101)
    interrupted = 0
    for example in range(12):
        seed = await _seed(gateway, f"crash{example}")
        tenant = seed["env"].tenant.id
        point = rng.choice(["in_unit", "after_commit", "after_unlink"])
        k = rng.randint(1, 8)
        service.cfg.batch_size = rng.choice([1, 2, 3, 5])
        calls = {"n": 0}

        def hook(where: str, point=point, k=k, calls=calls) -> None:
            if where == point:
                calls["n"] += 1
                if calls["n"] == k:
                    raise SweepInterrupted(where)

        service.fault_hook = hook
        try:
            await service.sweep(tenant_ids=[tenant])
        except SweepInterrupted:
            interrupted += 1
        finally:
            service.fault_hook = None
        await _check_consistent(gateway, seed)
        # The next sweep finishes the job; the one after has nothing to do.
        await service.sweep(tenant_ids=[tenant])
        present = await _check_consistent(gateway, seed)
        assert present == seed["keep"], (example, point, k)
        for call_id in seed["due"]:
            assert not await seed["env"].blob_exists(seed["audio"][call_id][0])
        assert await seed["env"].count("blob_tombstones") == 0
        again = await service.sweep(tenant_ids=[tenant])
        assert again.totals()["call_metadata"] == 0
    service.cfg.batch_size = 500
    assert interrupted >= 9, interrupted


async def test_two_processes_sweeping_at_once_do_no_double_work(gateway):
    free = await _seed(gateway, "free", n_old=60)
    turns = await _seed(gateway, "turns", n_old=60)
    # A second gateway process: its own services, its own database connections (SQLite's
    # write lock between two connections is the same as between two processes).
    second = await open_services(gateway.config, gateway.clock)
    try:
        one = get_retention(gateway.services)
        two = RetentionService(second.db, second.keyring, second.blobs, second.clock,
                               one.cfg, audit=get_audit_log(second))
        one.cfg.batch_size = 3
        # Free-running: whoever gets the write lock works; every call is deleted once.
        a, b = await asyncio.gather(one.sweep(tenant_ids=[free["env"].tenant.id]),
                                    two.sweep(tenant_ids=[free["env"].tenant.id]))
        assert a.totals()["call_metadata"] + b.totals()["call_metadata"] == len(free["due"])
        assert await _check_consistent(gateway, free) == free["keep"]  # one receipt per id
        # Taking turns batch by batch, so both certainly work on the same rows' range.
        turn = asyncio.Condition()
        state = {"next": 0}

        def alternate(service, me):
            original = service.sweeper._sweep_batch

            async def batch(*args, **kwargs):
                async with turn:
                    await turn.wait_for(lambda: state["next"] == me or state.get("done"))
                try:
                    return await original(*args, **kwargs)
                finally:
                    async with turn:
                        state["next"] = 1 - me
                        turn.notify_all()
            service.sweeper._sweep_batch = batch

        alternate(one, 0)
        alternate(two, 1)

        async def run(service, me):
            try:
                return await service.sweep(tenant_ids=[turns["env"].tenant.id])
            finally:
                async with turn:
                    state["done"] = True
                    turn.notify_all()

        a, b = await asyncio.gather(run(one, 0), run(two, 1))
        del one.sweeper._sweep_batch
        one.cfg.batch_size = 500
    finally:
        await second.close()
    assert a.totals()["call_metadata"] and b.totals()["call_metadata"]
    assert a.totals()["call_metadata"] + b.totals()["call_metadata"] == len(turns["due"])
    assert await _check_consistent(gateway, turns) == turns["keep"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_cli_sweep_sigkilled_mid_run(gateway, tmp_path):
    seed = await _seed(gateway, "killed", n_old=150, n_young=10)
    tenant = seed["env"].tenant.id
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}'
                           '[logging]\nlevel = "WARNING"\n[retention]\nbatch_size = 2\n'
                           'sweep_interval_seconds = 0\n')
    # The subprocess runs on the system clock: the old calls started five real days ago,
    # so they are due by its clock too, and the young ones are not.
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                             "retention", "run", "--tenant", tenant, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        total = len(seed["due"]) + len(seed["keep"])
        target = random.Random(7).randint(10, len(seed["due"]) - 10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = await seed["env"].count("calls")
            if total - left >= target or proc.poll() is not None:
                break
            await asyncio.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it was killed"
    present = await _check_consistent(gateway, seed)
    assert seed["keep"] < present, "the kill came too late to test anything"
    await get_retention(gateway.services).sweep(tenant_ids=[tenant])
    assert await _check_consistent(gateway, seed) == seed["keep"]
    assert await seed["env"].count("blob_tombstones") == 0
