"""Retention on PostgreSQL (issue 10): expired calls (each with two events and a recording:
row and wrapped data key) deleted per second from a store of 1 M calls of which 10% are
expired, with the blob store and key store on SeaweedFS S3; baseline in the same run: the
same sweep over a store holding only the expired 10% (ratio = its sweep time / the full
store's; 1.0 means the 90% that stay cost nothing).

Seeding: 1 M calls through the API would take far too long here, so the stores are built
with set-based SQL (INSERT ... SELECT over generate_series, 100 k calls per statement)
straight into the schema `gateway init` created, in the shape the gateway writes: ids
are UUIDv7 text (time-ordered, like gateway/store/ids.py), times RFC 3339 text with
microseconds, sealed columns bytea of the gateway's sizes (110-byte parties and recording
meta, 260-byte event bodies, 66-byte wrapped keys; constant bytes, which PostgreSQL stores
the same way below its 2 kB TOAST threshold), every index of the real schema in place.
The expired recordings' blobs are not written to S3: the sweep deletes their keys with
DeleteObjects all the same (S3 answers "deleted" for a key that is absent), so the S3
round trips are measured, not the SeaweedFS disk work for 1 KiB objects.
The sweep itself is the real one (`RetentionService.sweep`, default batch size, deletion
receipts appended to the audit log, blob keys deleted on S3).

    python -m bench retention_pg            # BENCH_RETENTION_PG_CALLS=1000000
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.retention_bench import make_tenant
from gateway.config import Config
from gateway.core.clock import ManualClock
from gateway.lifecycle.retention import get_retention
from gateway.services import open_services

from .backends import ScaleOutStack, scale_out_stack

CALLS = int(os.environ.get("BENCH_RETENTION_PG_CALLS", "1000000"))
EXPIRED_SHARE = 0.10
TARGET_CALLS_PER_S = 2000
_CHUNK = 100_000

# One chunk of g in [lo, hi): a UUIDv7-shaped id per (kind, g), derived from g and a
# per-store salt so the child rows can name their call's id without a join.
_ID = ("(lpad(to_hex((extract(epoch FROM {t}) * 1000)::bigint), 12, '0') || '7'"
       " || substr(md5(%(salt)s || '{kind}' || g), 1, 3) || '8'"
       " || substr(md5(%(salt)s || '{kind}' || g), 4, 15))")
_UUID = "substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-' || substr({h}, 13, 4) || '-' " \
        "|| substr({h}, 17, 4) || '-' || substr({h}, 21, 12)"
_TIME = ("CASE WHEN g < %(n_expired)s"
         " THEN %(now)s::timestamptz - interval '400 days' - g * interval '1 second'"
         " ELSE %(now)s::timestamptz - interval '5 days' - (g %% 400000) * interval '1 second'"
         " END")
_ISO = """to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _id(kind: str) -> str:
    return _UUID.format(h=_ID.format(t="t", kind=kind))


_SERIES = f"FROM (SELECT g, {_TIME} AS t FROM generate_series(%(lo)s, %(hi)s - 1) g) s"
_INSERTS = [
    f"INSERT INTO calls (id, tenant_id, integration_id, platform, platform_call_id, status,"
    f" direction, started_at, ended_at, duration_seconds, last_sequence, sort_time, parties,"
    f" from_index, to_index, created_at, updated_at)"
    f" SELECT {_id('call')}, %(tenant)s, %(integration)s, 'standard', 'pc-' || g, 'completed',"
    f" 'inbound', {_ISO}, {_ISO}, 42, NULL, {_ISO}, %(parties)s, g %% 65536,"
    f" (g * 7) %% 65536, {_ISO}, {_ISO} {_SERIES}",
    f"INSERT INTO call_events (id, tenant_id, integration_id, call_id, dedupe_key, kind,"
    f" status, received_at, occurred_at, body)"
    f" SELECT {_id('event' + chr(39) + ' || e || ' + chr(39))}, %(tenant)s, %(integration)s,"
    f" {_id('call')}, md5(%(salt)s || g || 'e' || e) || md5(g || 'e' || e), 'call',"
    f" 'completed', {_ISO}, {_ISO}, %(body)s {_SERIES} CROSS JOIN (VALUES (1), (2)) v(e)",
    f"INSERT INTO recordings (id, tenant_id, call_id, state, source, meta, created_at,"
    f" updated_at) SELECT {_id('rec')}, %(tenant)s, {_id('call')}, 'available', 'upload',"
    f" %(parties)s, {_ISO}, {_ISO} {_SERIES}",
    f"INSERT INTO blob_keys (object_id, tenant_id, kek_version, wrapped, created_at)"
    f" SELECT {_id('rec')}, %(tenant)s, 1, %(wrapped)s, {_ISO} {_SERIES}",
]


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


def _seed(url: str, tenant_id: str, integration_id: str, n_keep: int, n_expired: int,
          now: datetime) -> None:
    params = {"tenant": tenant_id, "integration": integration_id, "salt": uuid.uuid4().hex,
              "now": now, "n_expired": n_expired, "parties": bytes(110), "body": bytes(260),
              "wrapped": bytes(66)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for lo in range(0, n_keep + n_expired, _CHUNK):
            chunk = {**params, "lo": lo, "hi": min(lo + _CHUNK, n_keep + n_expired)}
            with conn.transaction():
                for sql in _INSERTS:
                    conn.execute(sql, chunk)
        conn.execute("VACUUM ANALYZE")


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


def _store(stack: ScaleOutStack, tmp: str, name: str, n_keep: int, n_expired: int
           ) -> tuple[float, dict[str, int], float]:
    with psycopg.connect(stack.postgres.admin_url, autocommit=True) as admin:
        db_name = f"{stack.postgres.name}_{name}"
        admin.execute(f'CREATE DATABASE "{db_name}"')
    url = stack.postgres.url.rsplit("/", 1)[0] + "/" + db_name
    try:
        clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
        config = _config(stack, url, f"{tmp}/{name}", name)
        tenant_id, integration_id = asyncio.run(make_tenant(config, clock))
        started = time.perf_counter()
        _seed(url, tenant_id, integration_id, n_keep, n_expired, clock.now())
        build = time.perf_counter() - started
        elapsed, totals = asyncio.run(_sweep(config, clock))
        assert totals["call_metadata"] == n_expired, totals
        return elapsed, totals, build
    finally:
        with psycopg.connect(stack.postgres.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def run() -> dict[str, Any]:
    import tempfile
    n_expired = int(CALLS * EXPIRED_SHARE)
    with scale_out_stack() as stack, tempfile.TemporaryDirectory(prefix="vgw-ret-pg-") as tmp:
        saved = {k: os.environ.get(k) for k in stack.env}
        os.environ.update(stack.env)    # the gateway reads S3 credentials from there only
        try:
            full, totals, build_full = _store(stack, tmp, "full", CALLS - n_expired, n_expired)
            small, _, build_small = _store(stack, tmp, "small", 0, n_expired)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return {"calls_stored": CALLS, "calls_expired": n_expired,
            "events_deleted": totals["call_events"], "recordings_deleted": totals["recordings"],
            "sweep_s": full, "sweep_expired_only_s": small,
            "calls_per_s": n_expired / full, "expired_only_calls_per_s": n_expired / small,
            "ratio": small / full, "seed_s": build_full + build_small}


def target(result: dict[str, Any]) -> tuple[str, bool]:
    return (f">= {TARGET_CALLS_PER_S} calls/s", result["calls_per_s"] >= TARGET_CALLS_PER_S)


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
