"""Background work: the one periodic loop and the one way to stop a task.

Invariants:
- Every background loop in the gateway is a `PeriodicJob`; none hand-writes `while True`.
- A tick that raises is logged by exception class only (never its message, which may
  carry data) and counted; the job keeps running. Cancellation always propagates, also
  when it lands while the job waits for its next tick.
- Work that must happen once across replicas is protected by the job's own row leases in
  the database (see `gateway/store/`), not by this loop: every replica runs every job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("gateway.jobs")


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has finished unwinding (its finally blocks ran)."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class PeriodicJob:
    """Run `tick()` every `interval` seconds, spread by +-`jitter` (a fraction of the
    interval) so replicas started together do not run in lockstep.

    `tick` may return True to say "there is more to do now": the next tick then runs at
    once instead of after the interval (a queue worker draining a backlog). `wake()` runs
    the next tick now. `on_stop` runs after the loop has ended (hand back leases, close
    sessions). An interval of 0 or less disables the job: `start()` does nothing.
    """

    def __init__(self, name: str, tick: Callable[[], Awaitable[Any]], interval: float, *,
                 jitter: float = 0.1, run_at_start: bool = False,
                 on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.interval = interval
        self.jitter = jitter
        self.run_at_start = run_at_start
        self.failures = 0
        self.runs = 0
        self._tick = tick
        self._on_stop = on_stop
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._on_stop is not None:
            await self._on_stop()

    def wake(self) -> None:
        self._wake.set()

    async def idle(self) -> None:
        """Wait until no tick is running (tests, orderly shutdown)."""
        await self._idle.wait()

    def _delay(self) -> float:
        spread = self.interval * self.jitter
        return max(0.0, self.interval + random.uniform(-spread, spread))

    async def _run(self) -> None:
        more = self.run_at_start
        while True:
            if not more:
                # asyncio.timeout, not wait_for: on Python 3.11, a cancel that lands as the
                # timeout fires comes out of wait_for as TimeoutError, which this loop
                # would swallow, leaving `stop()` waiting for a task that keeps running
                # (seen as a hung shutdown). timeout() tells its own expiry from a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._delay()):
                        await self._wake.wait()
            self._wake.clear()
            self._idle.clear()
            try:
                more = bool(await self._tick())
                self.runs += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                more = False
                self.failures += 1
                log.error("%s failed: %s", self.name, type(exc).__name__)
            finally:
                self._idle.set()


async def start_for_app_lifetime(app: Any, service: Any) -> None:
    """(Transitional, removed with gateway/features.py) start a service's background work
    now and stop it when the app cleans up."""
    await service.start()

    async def stop(_app: Any) -> None:
        await service.stop()

    app.on_cleanup.append(stop)
