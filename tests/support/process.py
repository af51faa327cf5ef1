"""Real `gateway serve` subprocesses: wait until one answers, failing fast if it died."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Return once GET {url}/healthz answers 200; AssertionError if the process exits or
    the deadline passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway serve did not answer /healthz in time")
