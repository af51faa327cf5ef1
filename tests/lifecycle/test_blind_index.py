"""Blind index per tenant, end to end through a real server: the width is stored with the
tenant (a config change never makes search or erase miss), the planner widens it as the
tenant grows, a reindex stopped mid-way resumes in the next process, and a blind-index key
rotation reindexes and destroys the old key while search, erase and holds keep working."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from gateway.lifecycle.blind_index import get_blind_index_service, planned_bits
from tests.lifecycle.helpers import make_env, storage_toml
from tests.support.server import start_gateway

SUBJECT = "+14155550123"
HELD = "+14155550177"


async def _search(env, number: str) -> set[str]:
    code, result, _ = await env.request("POST", "/v1/subjects/search",
                                        json={"phone_number": number})
    assert code == 200, result
    return {c["id"] for c in result["calls"]}


async def _erase(env, number: str) -> dict:
    code, result, _ = await env.request("POST", "/v1/subjects/erase",
                                        json={"phone_number": number})
    assert code == 200, result
    return result["receipt"]


async def _state(gateway, tenant_id: str) -> dict:
    return await get_blind_index_service(gateway.services).state(tenant_id)


async def _wait_reindexed(gateway, tenant_id: str, bits: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = await _state(gateway, tenant_id)
        if state["reindex"] is None and state["bits"] == bits:
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)


async def _bik_versions(gateway, tenant_id: str) -> list[int]:
    return [r[0] for r in await gateway.services.db.fetchall(
        "SELECT version FROM tenant_keys WHERE tenant_id = ? AND kind = 'bik' ORDER BY version",
        (tenant_id,))]


async def _indexes_match_ring(gateway, tenant_id: str, numbers: dict[str, tuple[str, str]]):
    """Every call's stored indexes are its parties' indexes under the tenant's one current
    index (key version and width)."""
    keyring = gateway.services.keyring
    keyring.forget(tenant_id)
    ring = await keyring.for_tenant(tenant_id)
    assert len(ring.blind_index_versions) == 1
    for call_id, (a, b) in numbers.items():
        row = await gateway.services.db.fetchone(
            "SELECT from_index, to_index FROM calls WHERE id = ?", (call_id,))
        assert (row["from_index"], row["to_index"]) == (ring.blind_index(a), ring.blind_index(b))


def _quiet_jobs(config, **keys_values) -> None:
    cfg = config.section("keys")
    cfg.grace_seconds = 0.0
    for name, value in keys_values.items():
        setattr(cfg, name, value)


async def test_a_width_change_in_the_config_never_makes_search_or_erase_miss(config, clock):
    config.privacy.blind_index_bits = 16
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        call = await env.call("a", from_number=SUBJECT)
        other = await env.call("b")
        assert await _search(env, SUBJECT) == {call}
        tenant = env.tenant
    config.privacy.blind_index_bits = 20
    async with start_gateway(config, clock) as gateway:
        env.gateway = gateway
        env.tenant = tenant
        state = await _state(gateway, tenant.id)
        assert (state["bik_version"], state["bits"]) == (1, 16)   # stored, not the config
        assert await _search(env, SUBJECT) == {call}
        receipt = await _erase(env, SUBJECT)
        assert receipt["deleted"]["call_metadata"] == 1
        assert await env.count("calls", "id = ?", (call,)) == 0
        assert await env.count("calls", "id = ?", (other,)) == 1
        # A tenant created now starts at the new width.
        newer = await make_env(gateway, "newer")
        assert (await _state(gateway, newer.tenant.id))["bits"] == 20


async def test_the_planner_widens_the_index_as_the_tenant_grows(config, clock):
    config.privacy.blind_index_bits = 1
    config.privacy.blind_index_check_seconds = 0.2
    _quiet_jobs(config, poll_interval_seconds=0.2, rotation_batch_size=7)
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        service = get_blind_index_service(gateway.services)
        # Paused while the tenant grows, so the planner sees it grown in one step (checked
        # mid-way it may settle on a narrower width that is in range, as it should).
        await service.stop()
        code, _, _ = await env.request("POST", "/v1/legal-holds", json={
            "scope": "phone_number", "phone_number": HELD, "reason": "kept"})
        assert code == 201
        numbers = {await env.call("held", from_number=HELD, to_number="+14155550101"):
                   (HELD, "+14155550101")}
        # 1 bit is in range for 2 numbers; 21 calls of 2 new numbers each are not.
        for i in range(20):
            a, b = f"+1415555{1000 + i:04d}", f"+1415555{2000 + i:04d}"
            numbers[await env.call(f"c{i}", from_number=a, to_number=b)] = (a, b)
        target = planned_bits(2 * len(numbers))
        assert target == 4
        assert (await _state(gateway, env.tenant.id))["bits"] == 1
        await service.start()
        state = await _wait_reindexed(gateway, env.tenant.id, target)
        assert state["bik_version"] == 1
        await _indexes_match_ring(gateway, env.tenant.id, numbers)
        some = next(c for c, (a, _) in numbers.items() if a == "+14155551007")
        assert await _search(env, "+14155551007") == {some}
        # The held number's hold still covers its call after the reindex.
        receipt = await _erase(env, HELD)
        assert receipt["held"] == 1 and receipt["deleted"]["call_metadata"] == 0
        receipt = await _erase(env, "+14155552007")
        assert receipt["deleted"]["call_metadata"] == 1
        entries = await env.audit_entries()
        done = [e for e in entries if e.get("outcome") == "blind_index_reindexed"]
        assert done and done[-1]["details"]["bits"] == target


async def test_a_reindex_stopped_mid_way_resumes_in_the_next_process(config, clock):
    config.privacy.blind_index_check_seconds = 0   # no planner: only the rotation runs
    _quiet_jobs(config, poll_interval_seconds=3600.0, rotation_batch_size=2)
    numbers = {}
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        service = get_blind_index_service(gateway.services)
        await service.stop()     # drive the job by hand in this process
        for i in range(7):
            a, b = f"+1415555{3000 + i:04d}", f"+1415555{4000 + i:04d}"
            numbers[await env.call(f"c{i}", from_number=a, to_number=b)] = (a, b)
        assert await service.start_reindex(env.tenant.id, rotate_key=True, reason="rotation")
        assert await service.run_pending(max_batches=2)     # 4 of 7 calls, then "killed"
        state = await _state(gateway, env.tenant.id)
        assert state["reindex"]["phase"] == "calls" and state["reindex"]["rows_done"] == 4
        # Mid-way, rows are under both keys: every number is still found.
        for call_id, (a, b) in numbers.items():
            assert await _search(env, a) == {call_id}
            assert await _search(env, b) == {call_id}
        assert await _bik_versions(gateway, env.tenant.id) == [1, 2]
        tenant = env.tenant
    # The stopped process held the reindex's lease; it runs out, and the next process
    # (its job runs at start) claims it and finishes from the cursor.
    clock.advance(config.section("keys").lease_seconds + 1)
    async with start_gateway(config, clock) as gateway:
        env.gateway, env.tenant = gateway, tenant
        state = await _wait_reindexed(gateway, tenant.id, 16)
        assert state["bik_version"] == 2
        assert await _bik_versions(gateway, tenant.id) == [2]
        await _indexes_match_ring(gateway, tenant.id, numbers)
        entries = await env.audit_entries()
        done = [e for e in entries if e.get("outcome") == "blind_index_reindexed"]
        # Resumed, not restarted: 7 calls in all, the first 4 counted once.
        assert done[-1]["details"]["rows"] == 7
        assert done[-1]["details"]["bik_versions_destroyed"] == [1]
        first, (a, _) = next(iter(numbers.items()))
        assert await _search(env, a) == {first}


async def test_the_reindex_walks_past_other_tenants_calls(config, clock):
    """The walk reads every tenant's calls in id order (no index of its own since
    migration 0013): it reindexes this tenant's calls only, counts only them, and batches
    that hold none of them still move it on."""
    config.privacy.blind_index_check_seconds = 0   # no planner: only the rotation runs
    _quiet_jobs(config, poll_interval_seconds=3600.0, rotation_batch_size=2)
    numbers, theirs = {}, {}
    async with start_gateway(config, clock) as gateway:
        env = await make_env(gateway)
        other = await make_env(gateway, "other")
        service = get_blind_index_service(gateway.services)
        await service.stop()     # drive the job by hand
        for i in range(5):
            for target, found, base in ((env, numbers, 3000), (other, theirs, 5000),
                                        (other, theirs, 6000)):
                a, b = f"+1415555{base + i:04d}", f"+1415555{base + 500 + i:04d}"
                found[await target.call(f"c{base}-{i}", from_number=a, to_number=b)] = (a, b)
        before = {call_id: await gateway.services.db.fetchone(
            "SELECT from_index, to_index FROM calls WHERE id = ?", (call_id,))
            for call_id in theirs}
        assert await service.start_reindex(env.tenant.id, rotate_key=True, reason="rotation")
        await service.run_pending()
        state = await _wait_reindexed(gateway, env.tenant.id, 16)
        assert state["bik_version"] == 2
        await _indexes_match_ring(gateway, env.tenant.id, numbers)
        for call_id, row in before.items():
            assert dict(await gateway.services.db.fetchone(
                "SELECT from_index, to_index FROM calls WHERE id = ?", (call_id,))) == dict(row)
        done = [e for e in await env.audit_entries()
                if e.get("outcome") == "blind_index_reindexed"]
        assert done[-1]["details"]["rows"] == 5
        for call_id, (a, _) in numbers.items():
            assert await _search(env, a) == {call_id}


def _cli(config_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                           *args], capture_output=True, text=True, timeout=120)


async def test_rotating_the_blind_index_key_keeps_search_erase_and_holds(gateway, tmp_path):
    env = await make_env(gateway)
    held = await env.call("held", from_number=HELD)
    code, _, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": HELD, "reason": "kept"})
    assert code == 201
    call = await env.call("a", from_number=SUBJECT)
    other = await env.call("b", from_number="+14155550124")
    old_ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[keys]\ngrace_seconds = 0\n'
                           '[logging]\nlevel = "WARNING"\n')
    result = await asyncio.to_thread(_cli, config_file, "keys", "rotate-blind-index",
                                     "--tenant", env.tenant.id, "--wait", "--json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["reindex"] is None and state["bik_version"] == 2 and state["bits"] == 16
    # The old key's row is gone; this gateway re-reads the ring like a fresh replica.
    assert await _bik_versions(gateway, env.tenant.id) == [2]
    gateway.services.keyring.forget(env.tenant.id)
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    assert ring.blind_index_versions == ((2, 16),)
    numbers = [SUBJECT, HELD, "+14155550124"] + [f"+1415555{i:04d}" for i in range(8)]
    assert any(ring.blind_index(n) != old_ring.blind_index(n) for n in numbers)
    row = await gateway.services.db.fetchone("SELECT from_index FROM calls WHERE id = ?",
                                             (call,))
    assert row["from_index"] == ring.blind_index(SUBJECT)
    assert await _search(env, SUBJECT) == {call}
    receipt = await _erase(env, HELD)
    assert receipt["held"] == 1 and await env.count("calls", "id = ?", (held,)) == 1
    receipt = await _erase(env, SUBJECT)
    assert receipt["deleted"]["call_metadata"] == 1
    assert await env.count("calls", "id IN (?, ?)", (call, other)) == 1
    entries = await env.audit_entries()
    key_events = [e for e in entries if e["kind"] == "key_event"]
    # The old BIK's row is deleted, then the tenant root key rotated ("rewrapped"), so the
    # row a database backup still holds opens under no key that exists.
    assert [e["outcome"] for e in key_events][-3:] == [
        "blind_index_reindex_started", "blind_index_reindexed", "rewrapped"]
    assert key_events[-1]["details"]["reason"] == "key_versions_destroyed"
    # Another rotation names the next version.
    result = await asyncio.to_thread(_cli, config_file, "keys", "rotate-blind-index",
                                     "--tenant", env.tenant.id, "--wait")
    assert result.returncode == 0 and "version 3" in result.stdout, result.stderr


async def test_a_killed_rotation_is_resumed_by_the_running_gateway(gateway, tmp_path):
    """SIGKILL the CLI mid-reindex: its cursor survives, the gateway's job takes the
    reindex over once the dead process's lease runs out, and finishes from the cursor."""
    env = await make_env(gateway)
    service = get_blind_index_service(gateway.services)
    await service.stop()            # until the CLI is dead, only the CLI advances it
    numbers = {}
    for i in range(60):
        a, b = f"+1415555{5000 + i:04d}", f"+1415555{6000 + i:04d}"
        numbers[await env.call(f"k{i}", from_number=a, to_number=b)] = (a, b)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[keys]\ngrace_seconds = 0\n'
                           'rotation_batch_size = 1\n[logging]\nlevel = "WARNING"\n')
    cli = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config_file),
                            "keys", "rotate-blind-index", "--tenant", env.tenant.id, "--wait"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            row = await gateway.services.db.fetchone(
                "SELECT done FROM blind_index_state WHERE tenant_id = ? AND phase = 'calls'",
                (env.tenant.id,))
            if row is not None and row["done"] >= 3:
                break
            assert time.monotonic() < deadline and cli.poll() is None
            await asyncio.sleep(0.005)
        cli.kill()
    finally:
        cli.kill()
        cli.wait()
    state = await _state(gateway, env.tenant.id)
    assert state["reindex"] is not None and 3 <= state["reindex"]["rows_done"] < 60
    killed_at = state["reindex"]["rows_done"]
    assert await _search(env, "+14155555059") == {list(numbers)[59]}    # both keys matched
    # The dead process's lease (on the real clock) runs out; this gateway's job takes over.
    gateway.clock.advance(gateway.config.section("keys").lease_seconds + 120)
    await service.start()
    state = await _wait_reindexed(gateway, env.tenant.id, 16)
    assert state["bik_version"] == 2 and await _bik_versions(gateway, env.tenant.id) == [2]
    await _indexes_match_ring(gateway, env.tenant.id, numbers)
    entries = await env.audit_entries()
    done = [e for e in entries if e.get("outcome") == "blind_index_reindexed"]
    assert done[-1]["details"]["rows"] == 60 and killed_at < 60
    receipt = await _erase(env, "+14155556000")
    assert receipt["deleted"]["call_metadata"] == 1
