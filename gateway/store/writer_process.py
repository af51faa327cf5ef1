"""SQLite set-based write steps in a child process, so the statements of a batch of
webhooks do not share the event loop's GIL (issue 12).

Why: on SQLite the group-commit writer is a thread of the gateway's process. Each of its
statements lets go of the GIL and takes it back, and every hand-off stalls the event loop:
measured with wrk, removing the writer's work from the process made the loop serve ~70%
more webhooks per second than with the writer thread beside it. A child process has its
own interpreter and GIL and runs on another core.

What crosses: a step is named by `module:function` (a pure function of a write
transaction and plain data, e.g. gateway/ingest/set_write.py `write_deliveries`), its
input and output are pickled over a Unix socket pair. No key, no plaintext party, no
event object crosses; the child opens the same database file with the same pragmas and
imports only the step's module.

Invariants:
- The writer thread (gateway/store/sqlite.py `_commit_batch`) sends one step and waits
  for its answer before doing anything else, so the gateway's two connections never
  write at the same time (no lock waits between them; other processes on the file still
  serialise through BEGIN IMMEDIATE and the busy timeout).
- An answer of success means the step's transaction is committed (synchronous=FULL, as
  every commit): only then do its units' waiters see a result.
- Any other outcome (the step refused, the child died, hung past `REPLY_TIMEOUT` or
  answered garbage) is "not done here": the child is killed if it misbehaved, and the
  writer thread runs the same units one by one on its own connection. A step that did
  commit before its child died is then seen as duplicates by that second run (dedupe),
  never written twice.
- The child exits when the gateway closes the socket (or dies), so it never outlives it.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("gateway.store")

# Seconds the writer thread waits for the child to open the database, and for one step.
START_TIMEOUT = 30.0
REPLY_TIMEOUT = 60.0
# After a child failed to start, steps run in-process this long before the next attempt.
RESTART_BACKOFF = 30.0


# A unit may carry `unit.remote = RemoteStep(...)` beside its `together` runner
# (gateway/store/group_commit.py): a backend with a writer process runs the step there.
REMOTE = "remote"


class RemoteStep(NamedTuple):
    """How a unit's set-based step runs in the child: `target(tx, encode(units))` there,
    `decode(units, answer)` back on the writer thread; together they must equal the unit's
    `together` runner."""
    target: str                                  # "package.module:function"
    encode: Callable[[list[Any]], Any]
    decode: Callable[[list[Any], Any], list[tuple[bool, Any]]]


class StepNotDone(Exception):
    """The child did not commit the step; its units run on the writer thread instead."""


class WriterProcess:
    """The child process and the writer thread's end of its socket. Used only from the
    writer thread."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self.path = Path(path)
        self.pragmas = list(pragmas)
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._next_start = 0.0
        self.steps = 0
        self.failures = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The child imports this checkout's code, wherever the gateway was started from.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.store.writer_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self._conn.send((str(self.path), self.pragmas))
            if not self._conn.poll(START_TIMEOUT) or self._conn.recv() != "ready":
                raise StepNotDone("the writer process did not start")
        except (OSError, EOFError, StepNotDone):
            self._kill()
            raise
        log.info("sqlite writer process started", extra={"pid": self._proc.pid})

    def run(self, step: RemoteStep, units: list[Any]) -> list[tuple[bool, Any]]:
        """The units' outcomes once the child has committed their step; StepNotDone when
        it did not (the caller then runs them itself)."""
        if self._conn is None:
            if time.monotonic() < self._next_start:
                raise StepNotDone("the writer process is not running")
            try:
                self.start()
            except (OSError, EOFError, StepNotDone) as exc:
                self._next_start = time.monotonic() + RESTART_BACKOFF
                log.error("sqlite writer process did not start; steps run in-process",
                          extra={"error": type(exc).__name__})
                raise StepNotDone("the writer process is not running") from exc
        assert self._conn is not None
        try:
            self._conn.send((step.target, step.encode(units)))
            if not self._conn.poll(REPLY_TIMEOUT):
                raise TimeoutError
            ok, answer = self._conn.recv()
        except (OSError, EOFError, TimeoutError, pickle.PickleError, ValueError,
                TypeError) as exc:
            # Dead, hung or confused: never trusted again; the next step starts a new one.
            self.failures += 1
            log.error("sqlite writer process failed; its step runs in-process",
                      extra={"error": type(exc).__name__})
            self._kill()
            raise StepNotDone(type(exc).__name__) from None
        if not ok:
            self.failures += 1
            log.debug("set-based step refused in the writer process: %s", answer)
            raise StepNotDone(answer)
        self.steps += 1
        return step.decode(units, answer)

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _kill(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


# -- the child ----------------------------------------------------------------------------
def _serve(conn: Connection) -> None:
    from gateway.store.sqlite import SqliteWriteTx

    path, pragmas = conn.recv()
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    for pragma in pragmas:
        db.execute(pragma)
    conn.send("ready")
    targets: dict[str, Callable[[Any, Any], Any]] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return          # the gateway is gone
        if message is None:
            return
        target, payload = message
        fn = targets.get(target)
        if fn is None:
            module, _, name = target.partition(":")
            fn = targets[target] = getattr(importlib.import_module(module), name)
        try:
            db.execute("BEGIN IMMEDIATE")
            answer = fn(SqliteWriteTx(db), payload)
            db.execute("COMMIT")
        except Exception as exc:    # refused or failed: nothing of the step stays
            if db.in_transaction:
                db.execute("ROLLBACK")
            conn.send((False, type(exc).__name__))
            continue
        conn.send((True, answer))


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group: the gateway decides when this child stops
    # (it closes the socket), so a step under way is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    try:
        _serve(conn)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
