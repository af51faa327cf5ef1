"""`make bench`: every benchmark, each with its baseline from the same run."""

from __future__ import annotations

import json
import sys

from . import (
    audit_bench,
    crypto_bench,
    ingest_bench,
    media_bench,
    retention_bench,
    retention_pg_bench,
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
    "crypto": (crypto_bench.run, "blob encryption vs raw AES-256-GCM", 0.8),
    # Not a ratio: the target is an absolute bound on memory growth.
    "upload": (upload_bench.run, "peak RSS growth uploading 1 GiB (MiB)",
               lambda r: ("growth < 64 MiB", r["peak_growth_mib"] < 64)),
    "upload_s3": (upload_bench.run_s3, "1 GiB recording up and down through the gateway to"
                  " SeaweedFS vs the same bytes with the S3 client directly",
                  upload_bench.target_s3),
    "audit": (audit_bench.run, "audit log appends/s (vs bare INSERTs) and inclusion proofs "
              "at 1 M entries", audit_bench.target),
    "retention": (retention_bench.run, "expired calls (with events and recordings) deleted/s,"
                  " 10% of the store expired; ratio = sweep time of an expired-only store /"
                  " the full store's", retention_bench.target),
    "retention_pg": (retention_pg_bench.run, "expired calls deleted/s on PostgreSQL + S3, 1 M"
                     " stored, 10% expired; ratio = expired-only store's sweep time / full's",
                     retention_pg_bench.target),
    "media": (media_bench.run, "concurrent real-time Twilio media streams recorded with zero"
              " frames lost, vs a bare aiohttp handler that only parses them; WHIP sessions",
              media_bench.target),
}


def main(names: list[str]) -> int:
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
