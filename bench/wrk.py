"""wrk as the load generator: pre-signed requests written to a file and replayed by
bench/replay.lua, so the generator is not what limits the figure (issue 12: a Python
generator capped near 3k req/s while wrk measures ~20k/s for a bare aiohttp handler).

Invariants:
- Every request is built (and signed) in Python before the run starts; wrk only sends
  bytes. Requests for a gateway run are signed just before that run, well inside the
  Standard Webhooks 5-minute tolerance.
- A run that wrapped around its file, saw socket errors or any non-2xx answer raises:
  a figure is reported only for a clean run.
- `wrk` comes from the Debian package (`make bench` installs it where missing).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["WrkResult", "write_requests", "wrk", "wrk_command", "LUA"]

LUA = Path(__file__).resolve().parent / "replay.lua"
# The settings of issue 12's independent measurement: one thread, 32 connections, 4 s.
THREADS, CONNECTIONS, DURATION = 1, 32, "4s"


@dataclass
class WrkResult:
    rps: float
    requests: int
    command: str


def _binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found: `apt-get install -y wrk` (make bench does it)")
    return found


def write_requests(path: Path, base_url: str,
                   requests: Iterable[tuple[str, bytes, dict[str, str]]]) -> int:
    """Raw HTTP/1.1 POSTs (path, body, headers) in replay.lua's file format."""
    host = urlsplit(base_url).netloc
    count = 0
    with open(path, "wb") as out:
        for target, body, headers in requests:
            head = [f"POST {target} HTTP/1.1", f"Host: {host}",
                    f"Content-Length: {len(body)}"]
            head += [f"{name}: {value}" for name, value in headers.items()
                     if name.lower() not in ("host", "content-length")]
            raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
            out.write(f"{len(raw)}\n".encode() + raw)
            count += 1
    return count


def wrk_command(url: str, requests_file: Path, threads: int = THREADS,
                connections: int = CONNECTIONS, duration: str = DURATION) -> list[str]:
    return [_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration}", "-s", str(LUA),
            url, "--", str(requests_file), str(threads)]


def _parse(output: str, command: str, allow_wrap: bool) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or total is None:
        raise RuntimeError(f"unreadable wrk output:\n{output}")
    problems = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        problems.append(f"{m.group(1)} non-2xx answers")
    if m := re.search(r"Socket errors: (.*)", output):
        problems.append(f"socket errors {m.group(1)}")
    wrapped = re.search(r"replay_wrapped (\d+)", output)
    if not allow_wrap and wrapped and int(wrapped.group(1)):
        problems.append("ran out of pre-signed requests (raise the count)")
    if problems:
        raise RuntimeError(f"{command}: {'; '.join(problems)}\n{output}")
    return WrkResult(float(rps.group(1)), int(total.group(1)), command)


def start(url: str, requests_file: Path, **settings) -> tuple[subprocess.Popen, str]:
    command = wrk_command(url, requests_file, **settings)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, " ".join(command)


def finish(proc: subprocess.Popen, command: str, allow_wrap: bool = False) -> WrkResult:
    output, _ = proc.communicate(timeout=120)
    return _parse(output, command, allow_wrap)


def wrk(url: str, requests_file: Path, allow_wrap: bool = False, **settings) -> WrkResult:
    """One wrk run against url replaying requests_file; requests/s of a clean run."""
    return finish(*start(url, requests_file, **settings), allow_wrap=allow_wrap)


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="vgw-bench-wrk-")
