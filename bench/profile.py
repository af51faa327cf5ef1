"""`make profile`: where one gateway's CPU goes while wrk replays signed webhooks at it.

Starts a gateway on SQLite exactly as `python -m bench ingest` does (bench/_harness.py
GatewayProcess, bench/ingest_bench.py signing), drives it with wrk (`-t1 -c32`) and samples
it with py-spy (`py-spy record --format raw --threads`, native frames off), then prints:

- per thread (and the SQLite writer process as one line): CPU per webhook as the kernel
  counted it (/proc/<pid>/task/*/stat, user +
  system time over the sampled window), and the share of py-spy's samples;
- the top functions by own time (the innermost Python frame of each sample), each as a
  share of all samples and as microseconds of CPU per webhook, so the figures read like
  issue 12's breakdown;
- the same grouped by the first frame under the event loop or the writer thread's loop
  (`--by-caller`), which shows what a request spends in each step.

py-spy samples from outside the process (ptrace: root, or CAP_SYS_PTRACE) and slows it by a
few percent at the default 250 Hz. The raw collapsed stacks are kept (`--keep PATH`) for
a flame graph (`py-spy record --format flamegraph` takes the same options).

    python -m bench.profile                 # PROFILE_SECONDS=8, top 30
    python -m bench.profile --seconds 15 --top 50 --keep /tmp/stacks.txt
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from . import wrk
from ._harness import GatewayProcess
from .ingest_bench import gateway_target

# Samples per second py-spy takes; 250 keeps its own cost to a few percent.
RATE = 250
# Pre-signed requests per second of load: above what one gateway serves here, so the run
# never wraps onto duplicates (which take the cheaper dedupe path).
REQUESTS_PER_SECOND = 6000
# A frame in py-spy's raw format: "function (path/to/file.py:line)"; thread frames with
# --threads: "thread (0x7f...)" or "process ... thread ..." depending on the version.
_FRAME_RE = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: `.venv/bin/pip install py-spy` (make profile"
                         " installs it)")
    return found


def _frame_name(frame: str) -> str:
    match = _FRAME_RE.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['fn']} ({match['file']})"


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy raw output: one "frame;frame;...;frame count" line per distinct stack, the
    outermost frame first."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _thread_of(frames: list[str]) -> str:
    first = frames[0]
    if first.startswith(("thread", "process")):
        return first
    return "?"


# Outer frames that are the loop itself, skipped when grouping by step.
_LOOP_FRAMES = ("run_forever", "_run_once", "_run (asyncio/events.py)", "run (asyncio",
                "run_until_complete", "main (gateway/cli.py)", "<module>", "_run_module_as_main",
                "_run_code", "_bootstrap", "run (threading.py)", "_bootstrap_inner",
                "thread", "process", "run (asyncio/runners.py)", "asyncio.run")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each thread of `pid` has used, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    usage = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue        # the thread ended
        fields = stat[stat.rindex(")") + 2:].split()
        usage[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return usage


def child_cpu(pid: int) -> dict[int, float]:
    """CPU seconds each child process of `pid` has used (all its threads), by pid: on
    SQLite, the writer process (gateway/store/writer_process.py)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    return {int(child): sum(thread_cpu(int(child)).values()) for child in children
            if Path(f"/proc/{child}").exists()}


def thread_names(stacks: list[tuple[list[str], int]]) -> dict[int, str]:
    """Thread id -> name, from py-spy's thread frames ("thread (1234): MainThread")."""
    names = {}
    for frames, _ in stacks:
        match = re.match(r"thread \((?:0x)?(\d+)\): (.*)", frames[0])
        if match:
            names[int(match[1])] = match[2]
    return names


def requests_answered(metrics_port: int) -> int:
    """Requests the gateway has answered so far (its own gateway_http_requests counter)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("gateway_http_requests_total{")))


def cpu_report(before: dict[int, float], after: dict[int, float], requests: int,
               names: dict[int, str]) -> str:
    lines = ["thread CPU (kernel accounting)           us/webhook"]
    # (a child process counts as one line, all its threads together)
    total = 0.0
    for tid in sorted(after, key=lambda t: before.get(t, 0.0) - after[t]):
        used = after[tid] - before.get(tid, 0.0)
        total += used
        if used > 0:
            label = f"{names.get(tid, '?')} ({tid})"
            lines.append(f"{label[:40]:40} {1e6 * used / max(requests, 1):9.1f}")
    lines.append(f"{'all threads':40} {1e6 * total / max(requests, 1):9.1f}")
    return "\n".join(lines)


def report(stacks: list[tuple[list[str], int]], requests: int, seconds: float, top: int,
           by_caller: bool) -> str:
    total = sum(count for _, count in stacks) or 1
    # One sample is 1/RATE s of a thread's CPU (py-spy skips idle threads by default).
    us_per_sample = 1e6 / RATE
    per_request = us_per_sample / max(requests, 1)
    lines = [f"{requests} webhooks answered while sampling ({seconds:.1f} s, {requests / seconds:.0f}/s),"
             f" {total} samples at {RATE} Hz"
             f" = {total * per_request:.0f} us of sampled CPU per webhook", ""]
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for frames, count in stacks:
        thread = _thread_of(frames)
        threads[thread] += count
        python_frames = [_frame_name(f) for f in frames if not f.startswith(("thread",
                                                                              "process"))]
        if python_frames:
            own[python_frames[-1]] += count
            step = next((f for f in python_frames
                         if not any(skip in f for skip in _LOOP_FRAMES)), python_frames[-1])
            steps[step] += count
    lines.append("thread (py-spy samples)                  share   us/webhook")
    for thread, count in threads.most_common():
        lines.append(f"{thread[:40]:40} {100 * count / total:5.1f}%   {count * per_request:7.1f}")
    lines += ["", f"top {top} functions by own time        share   us/webhook"]
    for name, count in own.most_common(top):
        lines.append(f"{100 * count / total:5.1f}%  {count * per_request:7.1f}  {name}")
    if by_caller:
        lines += ["", f"top {top} first frames under the loop   share   us/webhook"]
        for name, count in steps.most_common(top):
            lines.append(f"{100 * count / total:5.1f}%  {count * per_request:7.1f}  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling time")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--by-caller", action="store_true",
                        help="also group samples by the first frame under the loop")
    parser.add_argument("--keep", metavar="PATH", help="keep py-spy's collapsed stacks here")
    parser.add_argument("--access-log", action="store_true",
                        help="run the gateway at log level INFO, so it writes its access log"
                             " (the default, like `make bench`, is WARNING)")
    args = parser.parse_args(argv)
    py_spy = _py_spy()
    gateway = GatewayProcess()
    if args.access_log:
        text = gateway.config.read_text()
        gateway.config.write_text(text.replace('level = "WARNING"', 'level = "INFO"'))
    with wrk.scratch_dir() as tmp, gateway as gw:
        target = gateway_target(gw, Path(tmp))
        # Warm-up (caches, SQLite pages, the first tenant key), then the sampled run.
        wrk.wrk(target.url, target.requests_file(4000), allow_wrap=True, duration="1s")
        requests_file = target.requests_file(int(REQUESTS_PER_SECOND * (args.seconds + 2)))
        stacks_path = Path(args.keep or Path(tmp) / "stacks.txt")
        load, command = wrk.start(target.url, requests_file,
                                  duration=f"{int(args.seconds) + 2}s")
        time.sleep(1.0)    # sample the steady state, not wrk's connection set-up
        cpu_before = thread_cpu(gw.proc.pid) | child_cpu(gw.proc.pid)
        answered_before = requests_answered(gw.metrics_port)
        started = time.perf_counter()
        spy = subprocess.run([py_spy, "record", "--pid", str(gw.proc.pid), "--format", "raw",
                              "--threads", "--rate", str(RATE), "--duration",
                              str(int(args.seconds)), "--nonblocking", "--output",
                              str(stacks_path)], capture_output=True, text=True)
        sampled = time.perf_counter() - started
        cpu_after = thread_cpu(gw.proc.pid) | child_cpu(gw.proc.pid)
        requests = requests_answered(gw.metrics_port) - answered_before
        result = wrk.finish(load, command)
        if spy.returncode:
            raise SystemExit(f"py-spy failed ({spy.returncode}): {spy.stderr[-2000:]}")
        print(f"wrk over its whole run: {result.rps:.0f} requests/s")
        print(f"load: {command}")
        stacks = parse_collapsed(stacks_path.read_text())
        names = thread_names(stacks)
        names.update({pid: "writer process" for pid in child_cpu(gw.proc.pid)})
        print(cpu_report(cpu_before, cpu_after, requests, names))
        print()
        print(report(stacks, requests, sampled,
                     args.top, args.by_caller))
    return 0


if __name__ == "__main__":
    sys.exit(main())
