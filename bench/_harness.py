"""Shared bench plumbing: start a gateway (or a baseline server) in a subprocess, drive it
from this process, read its peak RSS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class GatewayProcess:
    """`gateway init` + `gateway serve` in a temp directory, like an operator runs it.

    `env` is added to the child's environment (S3 credentials come only from there).
    `share_with` makes this a second replica of another GatewayProcess: the same data_dir
    (root and signing key files) and storage settings, its own ports, no temp dir of its own.
    """

    def __init__(self, extra_config: str = "", *, env: dict[str, str] | None = None,
                 share_with: GatewayProcess | None = None, server_config: str = "") -> None:
        self.env = {**os.environ, **(env or {})}
        self.dir = None if share_with else tempfile.TemporaryDirectory(prefix="vgw-bench-")
        self.root = Path(share_with.root if share_with else self.dir.name)
        self.port = free_port()
        self.metrics_port = free_port()
        self.config = self.root / f"gateway-{self.port}.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n'
            f'public_base_url = "http://127.0.0.1:{self.port}"\n{server_config}'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
            f'[logging]\nlevel = "WARNING"\n'
            f'[storage]\ndata_dir = "{self.root / "data"}"\n' + extra_config)
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(self.config),
                              *args, "--json"], capture_output=True, text=True,
                             cwd=ROOT, env=self.env)
        if out.returncode:
            raise RuntimeError(f"gateway {' '.join(args)} exited {out.returncode}:\n"
                               f"{out.stdout}{out.stderr[-2000:]}")
        return json.loads(out.stdout)

    def __enter__(self) -> GatewayProcess:
        self.cli("init")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config",
                                      str(self.config), "serve"], cwd=ROOT, env=self.env,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.dir is not None:
            self.dir.cleanup()


@contextlib.contextmanager
def python_server(code: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a small aiohttp server (the baseline) from source in a subprocess."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=ROOT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def run_load(requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int,
                   check: Callable[[int], bool] = lambda s: 200 <= s < 300) -> float:
    """POST every request once with `concurrency` workers; returns requests per second."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                url, body, headers = queue.get_nowait()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if not check(response.status):
                        failures += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return len(requests) / elapsed


def best_of(runs: int, fn: Callable[[], Awaitable[float]]) -> float:
    return max(asyncio.run(fn()) for _ in range(runs))
