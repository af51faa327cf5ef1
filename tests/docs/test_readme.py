"""The README runs as written: every `sh` block from the quick start on, top to bottom, in
one bash session (one set of variables), against a real gateway started the way `make run`
starts it (`gateway init`, then `gateway serve`, with GATEWAY_CONFIG pointing at the
example config).

What the harness changes, and nothing else:
- it runs in a fresh directory holding a copy of config.example.toml (its own data
  directory and free ports) and a `.venv` link to this checkout's, so the README's
  relative paths (`. .venv/bin/activate`, `config.example.toml`, `call.wav`) work and
  nothing is written into the checkout;
- it replaces `127.0.0.1:8080` / `127.0.0.1:9090` in the blocks with those free ports.
The blocks run with `set -euo pipefail`: a failing command, an undefined variable or a
`curl -f` on an error status fails the test, naming the block.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Sections before this heading are about installing and starting (make run / make test);
# every `sh` block from here on must run.
FIRST_RUN_SECTION = "## Quick start"
SCRIPT_TIMEOUT_SECONDS = 150

_FENCE_RE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```sh block after FIRST_RUN_SECTION."""
    start = text.index(FIRST_RUN_SECTION)
    blocks = []
    for match in _FENCE_RE.finditer(text, start):
        if match.group(1) == "sh":
            blocks.append((text.count("\n", 0, match.start()) + 1, match.group(2)))
    return blocks


def test_readme_runs_as_written(served_gateway):
    workdir, port, metrics_port, server = served_gateway
    blocks = runnable_blocks(README.read_text())
    assert len(blocks) >= 5, "the README lost its runnable sections"
    script = ["set -euo pipefail"]
    for line, body in blocks:
        body = (body.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                .replace("127.0.0.1:9090", f"127.0.0.1:{metrics_port}"))
        script.append(f"echo '>>> README.md line {line}' >&2")
        script.append(body)
    script.append("echo '>>> README done' >&2")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GATEWAY_CONFIG", "VIRTUAL_ENV")}
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS)
    markers = [ln for ln in result.stderr.splitlines() if ln.startswith(">>> ")]
    where = markers[-1] if markers else "before the first block"
    assert result.returncode == 0, (
        f"README failed at {where} (exit {result.returncode})\n"
        f"--- stderr (tail)\n{result.stderr[-4000:]}\n--- stdout (tail)\n{result.stdout[-3000:]}"
        f"\n--- server log (tail)\n{(workdir / 'serve.log').read_text()[-3000:]}")
    assert markers[-1] == ">>> README done"
    # `make run` stops with Ctrl-C / SIGTERM: a normal stop exits 0 (make reports no error).
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0
