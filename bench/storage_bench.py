"""Bytes at rest per call (issue 12): N calls with 3 events each (ringing, in-progress,
completed) sent as signed Standard Webhooks to one gateway on SQLite, then the database
file VACUUMed and divided by N, with where the bytes go (SQLite's dbstat: each table and
each index, per call).

    python -m bench storage          # BENCH_STORAGE_CALLS=2000
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.signers import call_updated, standard_delivery

from ._harness import GatewayProcess, run_load
from .ingest_bench import gateway_target

CALLS = int(os.environ.get("BENCH_STORAGE_CALLS", "2000"))
# Issue 12: at most this many bytes per call with 3 events.
TARGET_BYTES_PER_CALL = 2000


def _webhooks(url: str, integration_id: str, secret: str, calls: int
              ) -> list[tuple[str, bytes, dict[str, str]]]:
    now = datetime.now(UTC)
    out = []
    for i in range(calls * 3):
        status = ("ringing", "in-progress", "completed")[i % 3]
        body = call_updated(f"storage-{i // 3}", status, started_at="2026-03-01T10:00:00Z")
        raw, headers = standard_delivery(secret, body, now, msg_id=f"msg_storage_{i}")
        out.append((f"{url}/v1/hooks/standard/{integration_id}", raw, headers))
    # In call order, like a platform: a call's events arrive one after the other.
    return out


def pages(path: Path) -> tuple[int, dict[str, int]]:
    """VACUUM a copy of the database at `path`: its size, and bytes per table and index
    (dbstat)."""
    with tempfile.TemporaryDirectory(prefix="vgw-bench-storage-") as tmp:
        copy = Path(tmp) / "copy.sqlite3"
        source = sqlite3.connect(path)
        target = sqlite3.connect(copy)
        source.backup(target)
        source.close()
        target.execute("PRAGMA journal_mode = DELETE")
        target.execute("VACUUM")
        rows = target.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        target.close()
        return copy.stat().st_size, dict(rows)


def _snapshot(database: Path, scratch: Path) -> tuple[int, dict[str, int]]:
    copy = scratch / f"snapshot-{len(list(scratch.iterdir()))}.sqlite3"
    shutil.copy(database, copy)
    for suffix in ("-wal", "-shm"):
        if Path(f"{database}{suffix}").exists():
            shutil.copy(f"{database}{suffix}", f"{copy}{suffix}")
    return pages(copy)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vgw-bench-") as scratch, \
            GatewayProcess() as gw:
        target = gateway_target(gw, Path(scratch))
        requests = _webhooks(gw.url, target.integration_id, target.secret, CALLS)
        database = gw.root / "data" / "gateway.sqlite3"
        # The store before any call (schema, tenant, keys): not counted per call.
        empty_size, empty = _snapshot(database, Path(scratch))
        # One call's events in order, like a platform sends them.
        asyncio.run(run_load(requests, concurrency=1))
        size, used = _snapshot(database, Path(scratch))
        per_object = {name: round((bytes_ - empty.get(name, 0)) / CALLS)
                      for name, bytes_ in sorted(used.items(), key=lambda kv: -kv[1])}
        result = {"bytes_per_call": round((size - empty_size) / CALLS),
                  "objects": {n: b for n, b in per_object.items() if b > 0}}
    result["calls"] = CALLS
    result["events_per_call"] = 3
    return result


def target(result: dict[str, Any]) -> tuple[str, bool]:
    return (f"bytes per call <= {TARGET_BYTES_PER_CALL}",
            result["bytes_per_call"] <= TARGET_BYTES_PER_CALL)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
