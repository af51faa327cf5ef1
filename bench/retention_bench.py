"""Retention sweep: expired calls (each with two events; one in ten with a recording: row,
key and blob file) deleted per second from a store of N calls of which 10% are expired,
and the same sweep over a store holding only those expired 10%. The ratio of the two
sweep times shows that the cost follows the expired items, not the 90% that stay.

The stores are seeded as ingest seals calls (bench/erase_bench.py `seed_calls`): every
call's parties and each event body under its own unit key in the key store, bulk INSERTs
of the sealed rows, recordings through the recording service. So the sweep's figure
includes what issue 11 added to each deletion batch: the ledger entry and the unit keys'
deletion from the key store (segment rewrites), and the WAL truncation. The sweep is the
real one (`RetentionService.sweep`, default batch size, deletion receipts appended to the
audit log, blob files unlinked); afterwards a fresh gateway checks that the ledger names
every deleted call and that the calls that stay still open.

    python -m bench retention                     # N = 100 000 (BENCH_RETENTION_CALLS)
    BENCH_RETENTION_CALLS=1000000 python -m bench retention
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.core.clock import ManualClock, isoformat
from gateway.lifecycle.retention import get_retention
from gateway.services import init_storage, open_services
from gateway.tenants.accounts import create_tenant

# Ids as the gateway makes them: "uuid7" (time-ordered, RFC 9562 §5.7, gateway/ids.py), so
# id-keyed indexes are clustered by time like the expiry indexes and deleting the oldest
# calls dirties few pages. "uuid4" measures the random ids used before, for comparison.
IDS = os.environ.get("BENCH_RETENTION_IDS", "uuid7")
EXPIRED_SHARE = 0.10
TARGET_CALLS_PER_S = 2000


def _uuid7(when: datetime) -> str:
    ms = int(when.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (
        rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _new_id(when: datetime) -> str:
    return _uuid7(when) if IDS == "uuid7" else str(uuid.uuid4())


def _config(data_dir: Path) -> Config:
    config = Config()
    config.storage.data_dir = str(data_dir)
    config.logging.level = "WARNING"
    return config


async def make_tenant(config: Config, clock: ManualClock) -> tuple[str, str]:
    """A tenant and a bare integration to hang seeded calls on (shared by retention_pg)."""
    init_storage(config)
    services = await open_services(config, clock)
    try:
        tenant_id, _ = await create_tenant(services.db, services.keyring, clock, "bench")
        integration_id = str(uuid.uuid4())
        await services.db.write(lambda tx: tx.execute(
            "INSERT INTO integrations (id, tenant_id, platform, credentials, created_at)"
            " VALUES (?, ?, 'standard', ?, ?)",
            (integration_id, tenant_id, os.urandom(120), isoformat(clock.now()))))
    finally:
        await services.close()
    return tenant_id, integration_id


async def _build(config: Config, clock: ManualClock, tenant_id: str, integration_id: str,
                 n_keep: int, n_expired: int) -> dict[str, Any]:
    """Seed n_expired old calls (ids and times oldest first) and n_keep recent ones, sealed
    as ingest seals them (bench/erase_bench.py `seed_calls`); one in RECORDING_EVERY of the
    expired calls has a recording, stored through the recording service."""
    from .erase_bench import RECORDING_EVERY, PlannedCall, seed_calls
    now = clock.now()
    plan = [PlannedCall(now - timedelta(days=400, seconds=n_expired - i), f"+1201{i:07d}",
                        "+12025550100", recording=i % RECORDING_EVERY == 0)
            for i in range(n_expired)]
    plan += [PlannedCall(now - timedelta(days=5, seconds=(n_keep - i) % 400_000),
                         f"+1201{(n_expired + i) % 10_000_000:07d}", "+12025550100")
             for i in range(n_keep)]
    services = await open_services(config, clock)
    try:
        seeded = await seed_calls(services, tenant_id, integration_id, plan)
    finally:
        await services.close()
    if not config.storage.database_url:
        conn = sqlite3.connect(config.database_path, isolation_level=None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
        conn.close()
    return seeded


async def _sweep(config: Config, clock: ManualClock) -> tuple[float, dict[str, int]]:
    services = await open_services(config, clock)
    try:
        service = get_retention(services)
        started = time.perf_counter()
        report = await service.sweep()
        elapsed = time.perf_counter() - started
    finally:
        await services.close()
    return elapsed, report.totals()


def _store(root: Path, n_keep: int, n_expired: int) -> tuple[float, dict[str, int], float]:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    config = _config(root)
    tenant_id, integration_id = asyncio.run(make_tenant(config, clock))
    started = time.perf_counter()
    asyncio.run(_build(config, clock, tenant_id, integration_id, n_keep, n_expired))
    build = time.perf_counter() - started
    elapsed, totals = asyncio.run(_sweep(config, clock))
    assert totals["call_metadata"] == n_expired, totals
    assert not any((config.blob_dir / tenant_id).rglob("*-*")), "blob files left"
    asyncio.run(check_keys_deleted(config, clock, tenant_id, n_expired))
    return elapsed, totals, build


async def check_keys_deleted(config: Config, clock: ManualClock, tenant_id: str,
                             n_expired: int) -> None:
    """A fresh gateway after the sweep: the ledger names every deleted call, and the unit
    keys of the calls that stay are still in the key store (shared with retention_pg)."""
    services = await open_services(config, clock)
    try:
        units = services.keyring.units
        ledger = await units.ledger(tenant_id)
        kept = await services.db.fetchall(
            "SELECT parties FROM calls WHERE tenant_id = ? ORDER BY sort_time DESC LIMIT 100",
            (tenant_id,))
        found = await units.load(tenant_id, [bytes(r["parties"]) for r in kept])
    finally:
        await services.close()
    assert len({c for e in ledger for c in e.get("calls", [])}) == n_expired, \
        "ledger does not name every deleted call"
    assert len(found) == len(kept), "kept calls lost their unit keys"


def run() -> dict[str, Any]:
    calls = int(os.environ.get("BENCH_RETENTION_CALLS", "100000"))
    n_expired = int(calls * EXPIRED_SHARE)
    with tempfile.TemporaryDirectory(prefix="vgw-retention-bench-") as tmp:
        full, totals, build_full = _store(Path(tmp) / "full", calls - n_expired, n_expired)
    with tempfile.TemporaryDirectory(prefix="vgw-retention-bench-") as tmp:
        small, _, build_small = _store(Path(tmp) / "small", 0, n_expired)
    return {"calls_stored": calls, "calls_expired": n_expired, "ids": IDS,
            "events_deleted": totals["call_events"], "recordings_deleted": totals["recordings"],
            "sweep_s": full, "sweep_expired_only_s": small,
            "calls_per_s": n_expired / full, "expired_only_calls_per_s": n_expired / small,
            # 1.0: the 90% that stay cost nothing; below 1, their share of the sweep time.
            "ratio": small / full, "build_s": build_full + build_small}


def target(result: dict[str, Any]) -> tuple[str, bool]:
    """Issue 6: >= 2,000 calls/s, sweep time independent of the calls that stay."""
    return (f">= {TARGET_CALLS_PER_S} calls/s and expired-only/full sweep time >= 0.75",
            result["calls_per_s"] >= TARGET_CALLS_PER_S and result["ratio"] >= 0.75)


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
