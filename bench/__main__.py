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
    upload_bench,
)

BENCHES = {
    "ingest": (ingest_bench.run, "webhooks/s full path vs bare aiohttp handler", 0.5),
    "crypto": (crypto_bench.run, "blob encryption vs raw AES-256-GCM", 0.8),
    # Not a ratio: the target is an absolute bound on memory growth.
    "upload": (upload_bench.run, "peak RSS growth uploading 1 GiB (MiB)",
               lambda r: ("growth < 64 MiB", r["peak_growth_mib"] < 64)),
    "audit": (audit_bench.run, "audit log appends/s (vs bare INSERTs) and inclusion proofs "
              "at 1 M entries", audit_bench.target),
    "retention": (retention_bench.run, "expired calls (with events and recordings) deleted/s,"
                  " 10% of the store expired; ratio = sweep time of an expired-only store /"
                  " the full store's", retention_bench.target),
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
                         for k, v in result.items())
        verdict = ""
        if callable(target):
            what, met = target(result)
            verdict = f" [target {what}: {'met' if met else 'NOT met'}]"
        elif target is not None and "ratio" in result:
            verdict = f" [target ratio >= {target:.2f}: {'met' if result['ratio'] >= target else 'NOT met'}]"
        print(f"{name}: {label}: {line}{verdict}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
