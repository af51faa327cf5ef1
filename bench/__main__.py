"""`make bench`: every benchmark, each with its baseline from the same run."""

from __future__ import annotations

import json
import sys

from . import crypto_bench, ingest_bench, upload_bench

BENCHES = {
    "ingest": (ingest_bench.run, "webhooks/s full path vs bare aiohttp handler", 0.5),
    "crypto": (crypto_bench.run, "blob encryption vs raw AES-256-GCM", 0.8),
    # Not a ratio: the target is an absolute bound on memory growth.
    "upload": (upload_bench.run, "peak RSS growth uploading 1 GiB (MiB)",
               lambda r: ("growth < 64 MiB", r["peak_growth_mib"] < 64)),
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
