"""SQLite set-based write steps in a child process, so the statements of a batch of
webhooks do not share the event loop's GIL (issue 12).

Why: on SQLite the group-commit writer is a thread of the gateway's process. Each of its
statements lets go of the GIL and takes it back, and every hand-off stalls the event loop:
measured with wrk, taking the writer's work out of the process let the loop serve ~70%
more webhooks per second than with the writer thread beside it. A child process has its
own interpreter and GIL and runs on another core. The event loop talks to it directly
(an asyncio protocol on a Unix socket pair): no thread hop, no GIL hand-off per batch.

What crosses: a step is named by `module:function` (a pure function of a write
transaction and plain data, e.g. gateway/ingest/set_write.py `write_deliveries`); its
input and output are pickled, length-prefixed. No key, no plaintext party, no event object
crosses; the child (gateway/store/writer_child.py) opens the same database file with the
same pragmas and imports only the step's module.

Invariants:
- One step at a time: the group-commit task (gateway/store/group_commit.py) awaits each
  step, or each batch on the writer thread, before starting the next, so the gateway's
  two connections never write at the same time (no lock waits between them; other
  processes on the file still serialise through BEGIN IMMEDIATE and the busy timeout).
- An answer of success means the step's transaction is committed (synchronous=FULL, as
  every commit): only then do its units' waiters see a result.
- Any other outcome (the step refused, the child died, hung past `REPLY_TIMEOUT` or
  answered garbage) is "not done here" (`StepNotDone`): a misbehaving child is killed and
  the units run on the writer thread instead. A step that did commit before its child died
  is then seen as duplicates by that second run (dedupe), never written twice.
- The child exits when the gateway closes the socket (or dies), so it never outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("gateway.store")

# Seconds to wait for the child to open the database, and for one step.
START_TIMEOUT = 30.0
REPLY_TIMEOUT = 60.0
# After a child failed to start, steps run on the writer thread this long before the
# next attempt.
RESTART_BACKOFF = 30.0
FRAME_HEADER = struct.Struct(">I")

# A unit may carry `unit.remote = RemoteStep(...)` beside its `together` runner
# (gateway/store/group_commit.py): a writer with a process runs the step there.
REMOTE = "remote"


class RemoteStep(NamedTuple):
    """How a unit's set-based step runs in the child: `target(tx, encode(units))` there,
    `decode(units, answer)` back on the loop; together they must equal the unit's
    `together` runner."""
    target: str                                  # "package.module:function"
    encode: Callable[[list[Any]], Any]
    decode: Callable[[list[Any], Any], list[tuple[bool, Any]]]


class StepNotDone(Exception):
    """The child did not commit the step; its units run on the writer thread instead."""


def frame(message: Any) -> bytes:
    """One message on the socket, either way: its pickle's length (4 bytes, big-endian),
    then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


class _Channel(asyncio.Protocol):
    """The loop's end of the socket: length-prefixed pickles, one answer awaited at a
    time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport    # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self._buffer)
            if len(self._buffer) < FRAME_HEADER.size + size:
                return
            message = bytes(self._buffer[FRAME_HEADER.size:FRAME_HEADER.size + size])
            del self._buffer[:FRAME_HEADER.size + size]
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(EOFError("the writer process closed its socket"))

    async def ask(self, message: Any, timeout: float) -> Any:
        if self.lost or self.transport is None:
            raise EOFError("the writer process is gone")
        # A timer, not asyncio.wait_for: every batch pays this, and wait_for's extra task
        # and callbacks cost more than the rest of the hand-off.
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        self.transport.write(frame(message))
        try:
            return pickle.loads(await waiter)
        finally:
            timer.cancel()
            self._waiter = None


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the writer process did not answer in time"))


class WriterProcess:
    """The child process and the loop's channel to it."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self.path = Path(path)
        self.pragmas = list(pragmas)
        self._proc: subprocess.Popen | None = None
        self._channel: _Channel | None = None
        self._next_start = 0.0
        self.steps = 0
        self.failures = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child and wait until it has opened the database; StepNotDone (named
        by the cause's class only) when it did not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The child imports this checkout's code, wherever the gateway was started from.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.store.writer_child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise StepNotDone(type(exc).__name__) from exc
        finally:
            theirs.close()
        try:
            _, self._channel = await asyncio.get_running_loop().create_unix_connection(
                _Channel, sock=ours)
            ready = await self._channel.ask((str(self.path), self.pragmas), START_TIMEOUT)
        except (OSError, EOFError, TimeoutError, pickle.PickleError) as exc:
            self._kill()
            raise StepNotDone(type(exc).__name__) from exc
        if ready != "ready":
            self._kill()
            raise StepNotDone("unexpected answer")
        log.info("sqlite writer process started", extra={"pid": self._proc.pid})

    async def run(self, step: RemoteStep, units: list[Any]) -> list[tuple[bool, Any]]:
        """The units' outcomes once the child has committed their step; StepNotDone when
        it did not (the caller then runs them on the writer thread)."""
        if self._channel is None:
            if time.monotonic() < self._next_start:
                raise StepNotDone("the writer process is not running")
            try:
                await self.start()
            except StepNotDone as exc:
                self._next_start = time.monotonic() + RESTART_BACKOFF
                log.error("sqlite writer process did not start; batches run on the writer"
                          " thread", extra={"error": str(exc)})
                raise StepNotDone("the writer process is not running") from exc
        assert self._channel is not None
        try:
            ok, answer = await self._channel.ask((step.target, step.encode(units)),
                                                 REPLY_TIMEOUT)
        except (OSError, EOFError, TimeoutError, pickle.PickleError, ValueError,
                TypeError) as exc:
            # Dead, hung or confused: never trusted again; the next step starts a new one.
            self.failures += 1
            log.error("sqlite writer process failed; its step runs on the writer thread",
                      extra={"error": type(exc).__name__})
            self._kill()
            raise StepNotDone(type(exc).__name__) from None
        if not ok:
            self.failures += 1
            log.debug("set-based step refused in the writer process: %s", answer)
            raise StepNotDone(answer)
        self.steps += 1
        return step.decode(units, answer)

    async def stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()     # the child sees EOF and exits
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _kill(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.abort()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
