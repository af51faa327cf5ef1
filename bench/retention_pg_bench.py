"""Retention on PostgreSQL (issues 10, 11): expired calls (each with two events; one in ten
with a recording) deleted per second from a store of N calls of which 10% are expired,
with the blob store and key store on SeaweedFS S3; baseline in the same run: the same
sweep over a store holding only the expired 10% (ratio = its sweep time / the full
store's; 1.0 means the 90% that stay cost nothing).

Seeding is the SQLite benchmark's (bench/retention_bench.py `_build`, through
bench/erase_bench.py `seed_calls`): parties and event bodies sealed under unit keys
written to the S3 key store, sealed rows bulk-INSERTed through the gateway's database,
recordings through the recording service (S3 PUTs), then VACUUM ANALYZE. The sweep is
the real one (`RetentionService.sweep`, default batch size, deletion receipts appended to
the audit log, blobs deleted on S3, ledger entries written and unit keys deleted from the
S3 key store), checked afterwards by a fresh gateway like the SQLite one.

    python -m bench retention_pg            # BENCH_RETENTION_PG_CALLS=100000
    BENCH_RETENTION_PG_CALLS=1000000 python -m bench retention_pg
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.erase_bench import postgres_s3_config
from bench.retention_bench import _build, _sweep, check_keys_deleted, make_tenant
from gateway.config import Config
from gateway.core.clock import ManualClock

from .backends import ScaleOutStack, scale_out_stack

EXPIRED_SHARE = 0.10
TARGET_CALLS_PER_S = 2000


def _config(stack: ScaleOutStack, database_url: str, data_dir: str, prefix: str) -> Config:
    config = Config()
    config.storage.data_dir = data_dir
    config.storage.database_url = database_url
    config.storage.blob_url = f"s3://{stack.s3.buckets[0]}/{prefix}"
    config.storage.key_store_url = f"s3://{stack.s3.buckets[1]}/{prefix}"
    config.storage.s3.endpoint_url = stack.s3.endpoint_url
    config.storage.s3.region = stack.s3.region
    config.logging.level = "WARNING"
    return config


def _store(stack: ScaleOutStack, tmp: str, name: str, n_keep: int, n_expired: int
           ) -> tuple[float, dict[str, int], float]:
    with postgres_s3_config(stack, tmp, name) as config:
        clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
        tenant_id, integration_id = asyncio.run(make_tenant(config, clock))
        started = time.perf_counter()
        asyncio.run(_build(config, clock, tenant_id, integration_id, n_keep, n_expired))
        with psycopg.connect(config.storage.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        build = time.perf_counter() - started
        elapsed, totals = asyncio.run(_sweep(config, clock))
        assert totals["call_metadata"] == n_expired, totals
        asyncio.run(check_keys_deleted(config, clock, tenant_id, n_expired))
        return elapsed, totals, build


def run() -> dict[str, Any]:
    calls = int(os.environ.get("BENCH_RETENTION_PG_CALLS", "100000"))
    n_expired = int(calls * EXPIRED_SHARE)
    with scale_out_stack() as stack, tempfile.TemporaryDirectory(prefix="vgw-ret-pg-") as tmp:
        full, totals, build_full = _store(stack, tmp, "full", calls - n_expired, n_expired)
        small, _, build_small = _store(stack, tmp, "small", 0, n_expired)
    return {"calls_stored": calls, "calls_expired": n_expired,
            "events_deleted": totals["call_events"], "recordings_deleted": totals["recordings"],
            "sweep_s": full, "sweep_expired_only_s": small,
            "calls_per_s": n_expired / full, "expired_only_calls_per_s": n_expired / small,
            "ratio": small / full, "seed_s": build_full + build_small}


def target(result: dict[str, Any]) -> tuple[str, bool]:
    return (f">= {TARGET_CALLS_PER_S} calls/s", result["calls_per_s"] >= TARGET_CALLS_PER_S)


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
