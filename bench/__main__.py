"""`make bench`: every benchmark, each with its baseline from the same run."""

from __future__ import annotations

import json
import os
import sys

from . import (
    audit_bench,
    crypto_bench,
    erase_bench,
    ingest_bench,
    media_bench,
    retention_bench,
    retention_pg_bench,
    storage_bench,
    upload_bench,
)

BENCHES = {
    # wrk replaying pre-signed webhooks, alternating runs, medians (bench/ingest_bench.py).
    "ingest": (ingest_bench.run, "webhooks/s, gateway on SQLite vs bare aiohttp handler (wrk)",
               ingest_bench.target(0.25)),
    "ingest_pg": (ingest_bench.run_postgres, "webhooks/s, one gateway on PostgreSQL + S3 vs one"
                  " on SQLite + files (wrk)", None),
    "replicas": (ingest_bench.run_replicas, "webhooks/s, two replicas on one PostgreSQL (load"
                 " split) vs one replica (wrk)", ingest_bench.target(1.3)),
    # Not a ratio: bytes per call with 3 events at rest, where they go (issue 12).
    "storage": (storage_bench.run, "bytes at rest per call with 3 events (SQLite, VACUUMed)",
                storage_bench.target),
    "crypto": (crypto_bench.run, "blob encryption vs raw AES-256-GCM", 0.8),
    # Not a ratio: the target is an absolute bound on memory growth.
    "upload": (upload_bench.run, "peak RSS growth uploading 1 GiB (MiB)",
               lambda r: ("growth < 64 MiB", r["peak_growth_mib"] < 64)),
    "upload_s3": (upload_bench.run_s3, "1 GiB recording up and down through the gateway to"
                  " SeaweedFS vs the same bytes with the S3 client directly",
                  upload_bench.target_s3),
    "upload_keys": (upload_bench.run_keys, "recordings stored/s with per-recording keys in"
                    " the key store vs wrapped DEKs in blob_keys (issue 11)",
                    upload_bench.target_keys),
    "audit": (audit_bench.run, "audit log appends/s (vs bare INSERTs) and inclusion proofs "
              "at 1 M entries", audit_bench.target),
    "retention": (retention_bench.run, "expired calls (with events and recordings) deleted/s,"
                  " 10% of the store expired; ratio = sweep time of an expired-only store /"
                  " the full store's", retention_bench.target),
    "retention_pg": (retention_pg_bench.run, "expired calls deleted/s on PostgreSQL + S3,"
                     " 10% expired (BENCH_RETENTION_PG_CALLS); ratio = expired-only store's"
                     " sweep time / full's", retention_pg_bench.target),
    # Issue 11: key-store deletion (ledger entry, segment rewrites) included in both.
    "erase": (erase_bench.run, "calls erased/s by subject erasure (SQLite + files; heavy:"
              " N/200 calls a subject, light: 2 calls a subject, one request after another)",
              erase_bench.target),
    "erase_pg": (erase_bench.run_postgres, "calls erased/s by subject erasure (PostgreSQL +"
                 " S3), heavy and light subjects as in `erase`", erase_bench.target),
    "media": (media_bench.run, "concurrent real-time Twilio media streams recorded with zero"
              " frames lost, vs a bare aiohttp handler that only parses them; WHIP sessions",
              media_bench.target),
}


# `--quick`: CI-sized stores for the benchmarks that build one (unless set explicitly).
QUICK_SIZES = {"BENCH_RETENTION_CALLS": "10000", "BENCH_RETENTION_PG_CALLS": "10000",
               "BENCH_ERASE_CALLS": "10000", "BENCH_ERASE_LIGHT": "50"}


def main(names: list[str]) -> int:
    if "--quick" in names:
        names = [n for n in names if n != "--quick"]
        for name, value in QUICK_SIZES.items():
            os.environ.setdefault(name, value)
    selected = names or list(BENCHES)
    results = {}
    for name in selected:
        fn, label, target = BENCHES[name]
        result = fn()
        results[name] = result
        line = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in result.items() if k != "commands")
        verdict = ""
        if callable(target):
            what, met = target(result)
            verdict = f" [target {what}: {'met' if met else 'NOT met'}]"
        elif target is not None and "ratio" in result:
            verdict = f" [target ratio >= {target:.2f}: {'met' if result['ratio'] >= target else 'NOT met'}]"
        print(f"{name}: {label}: {line}{verdict}", flush=True)
        for side, commands in result.get("commands", {}).items():
            print(f"  {side}: " + " & ".join(commands), flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
