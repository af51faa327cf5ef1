"""Signed Standard Webhooks per second, measured with wrk replaying pre-signed requests
(bench/wrk.py, bench/replay.lua), every figure against a baseline from the same run:

- `ingest` (issue 12): the full durable path of one gateway on SQLite (signature, replay
  window, dedupe, status merge, sealing, group-committed fsync before the 200) vs a bare
  aiohttp handler that only reads the body and answers 200.
- `ingest_pg` (issue 10): one gateway on PostgreSQL + S3 vs one on SQLite + files.
- `replicas` (issue 10): two gateways on one PostgreSQL, the load split across both (one
  wrk per replica), vs one gateway taking the same two wrk processes.

Method: `wrk -t1 -c32 -d4s` (two wrk processes of -c16 where the load is split), runs
alternating between the measured side and its baseline, medians reported with every run.
Each gateway run replays requests signed just before it, each with its own webhook-id, in
a realistic mix (each call gets ringing, in-progress, completed). One warm-up run per
server is discarded.

    python -m bench ingest            # BENCH_INGEST_RUNS=5, BENCH_INGEST_REQUESTS=20000
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.signers import call_updated, new_whsec, standard_delivery

from . import wrk
from ._harness import GatewayProcess, python_server
from .backends import scale_out_stack

BARE_SERVER = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response({"accepted": 1})
app = web.Application()
app.router.add_post("/v1/hooks/standard/{integration_id}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

RUNS = int(os.environ.get("BENCH_INGEST_RUNS", "5"))
# Pre-signed requests per wrk process and run: ~3x what a 4 s run of one gateway takes here.
REQUESTS = int(os.environ.get("BENCH_INGEST_REQUESTS", "20000"))
_tags = itertools.count()


def signed_webhooks(integration_id: str, secret: str, n: int
                    ) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    tag = f"{os.getpid()}-{next(_tags)}"
    now = datetime.now(UTC)
    for i in range(n):
        status = ("ringing", "in-progress", "completed")[i % 3]
        body = call_updated(f"bench-{tag}-{i // 3}", status, started_at="2026-03-01T10:00:00Z")
        raw, headers = standard_delivery(secret, body, now, msg_id=f"msg_{tag}_{i}")
        yield f"/v1/hooks/standard/{integration_id}", raw, headers


class Target:
    """A server under load: where to send, and a fresh requests file for each wrk."""

    def __init__(self, url: str, integration_id: str, secret: str, scratch: Path,
                 unique: bool = True) -> None:
        self.url, self.integration_id, self.secret = url, integration_id, secret
        self.scratch, self.unique = scratch, unique
        self._bare_file: Path | None = None

    def requests_file(self, n: int = REQUESTS) -> Path:
        if not self.unique:   # the bare handler checks nothing: one file, replayed
            if self._bare_file is None:
                self._bare_file = self._write(n)
            return self._bare_file
        return self._write(n)

    def _write(self, n: int) -> Path:
        path = self.scratch / f"requests-{next(_tags)}.bin"
        wrk.write_requests(path, self.url, signed_webhooks(self.integration_id, self.secret, n))
        return path


def load(targets: list[Target], connections: int = wrk.CONNECTIONS,
         duration: str = wrk.DURATION) -> tuple[float, list[str]]:
    """One wrk per target at once (connections split evenly); summed requests/s."""
    per = connections // len(targets)
    files = [t.requests_file() for t in targets]   # all signed before any load starts
    started = [wrk.start(t.url, f, connections=per, duration=duration)
               for t, f in zip(targets, files, strict=True)]
    results = [wrk.finish(p, c, allow_wrap=not t.unique)
               for (p, c), t in zip(started, targets, strict=True)]
    for f, t in zip(files, targets, strict=True):
        if t.unique:
            f.unlink()
    return sum(r.rps for r in results), [r.command for r in results]


def alternate(measured: Callable[[], tuple[float, list[str]]],
              baseline: Callable[[], tuple[float, list[str]]]) -> dict[str, Any]:
    """RUNS of each, alternating (baseline first); medians and every run."""
    measured(), baseline()   # warm-up: discarded
    runs_m, runs_b, commands = [], [], {}
    for _ in range(RUNS):
        rps, commands["baseline"] = baseline()
        runs_b.append(rps)
        rps, commands["measured"] = measured()
        runs_m.append(rps)
    m, b = statistics.median(runs_m), statistics.median(runs_b)
    return {"measured_rps": m, "baseline_rps": b, "ratio": m / b,
            "measured_runs": [round(x) for x in runs_m],
            "baseline_runs": [round(x) for x in runs_b], "commands": commands}


async def _integration(url: str, api_key: str) -> tuple[str, str]:
    secret = new_whsec()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/integrations",
                             headers={"Authorization": f"Bearer {api_key}"},
                             json={"platform": "standard", "credentials": {"secret": secret}}
                             ) as response:
            integration = await response.json()
            assert response.status == 201, integration
    return integration["id"], secret


def gateway_target(gw: GatewayProcess, scratch: Path) -> Target:
    tenant = gw.cli("tenant", "create", "--name", f"bench-{gw.port}")
    integration_id, secret = asyncio.run(_integration(gw.url, tenant["api_key"]))
    return Target(gw.url, integration_id, secret, scratch)


def _rename(result: dict[str, Any], measured: str, baseline: str) -> dict[str, Any]:
    return {k.replace("measured", measured).replace("baseline", baseline): v
            for k, v in result.items()}


def run() -> dict[str, Any]:
    """Issue 12: gateway on SQLite vs the bare handler."""
    with wrk.scratch_dir() as tmp, python_server(BARE_SERVER) as (bare_url, _), \
            GatewayProcess() as gw:
        bare = Target(bare_url, "x", "whsec_" + base64.b64encode(b"k" * 32).decode(),
                      Path(tmp), unique=False)
        gateway = gateway_target(gw, Path(tmp))
        result = alternate(lambda: load([gateway]), lambda: load([bare]))
    return _rename(result, "gateway", "bare")


def run_postgres() -> dict[str, Any]:
    """Issue 10: one gateway on PostgreSQL + S3 vs one on SQLite + files."""
    with wrk.scratch_dir() as tmp, scale_out_stack() as stack, GatewayProcess() as lite, \
            GatewayProcess(stack.storage_config, env=stack.env) as pg:
        sqlite_target, pg_target = gateway_target(lite, Path(tmp)), gateway_target(pg, Path(tmp))
        result = alternate(lambda: load([pg_target]), lambda: load([sqlite_target]))
    return _rename(result, "postgres", "sqlite")


def run_replicas() -> dict[str, Any]:
    """Issue 10: two replicas on one PostgreSQL (load split) vs one replica."""
    with wrk.scratch_dir() as tmp, scale_out_stack() as stack, ExitStack() as stack_of:
        first = stack_of.enter_context(GatewayProcess(stack.storage_config, env=stack.env))
        second = stack_of.enter_context(GatewayProcess(stack.storage_config, env=stack.env,
                                                       share_with=first))
        one = gateway_target(first, Path(tmp))
        # The same integration reached through the other replica.
        other = Target(second.url, one.integration_id, one.secret, Path(tmp))
        result = alternate(lambda: load([one, other]), lambda: load([one, one]))
    result = _rename(result, "two_replicas", "one_replica")
    result["cores"] = os.cpu_count()
    return result


def target(minimum: float) -> Callable[[dict[str, Any]], tuple[str, bool]]:
    return lambda r: (f"ratio >= {minimum}", r["ratio"] >= minimum)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
