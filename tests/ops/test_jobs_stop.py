"""A background job always stops when asked (gateway/core/jobs.py). On Python 3.11,
asyncio.wait_for returns normally when the awaited thing completes in the same loop
iteration as the cancel: a job woken (`wake()`) just as it was stopped swallowed the
cancel, ran on, and shutdown (or a test's teardown) waited for it forever."""

from __future__ import annotations

import asyncio

from gateway.core.jobs import PeriodicJob


async def test_a_job_woken_as_it_is_stopped_still_stops():
    async def tick() -> None:
        return None

    job = PeriodicJob("woken", tick, interval=60.0, jitter=0.0)
    await job.start()
    for _ in range(3):
        await asyncio.sleep(0)      # the job is now waiting for its next tick
    task = job._task
    # The wake and the cancel land in the same loop iteration (what `stop()` does, right
    # after a delivery woke the job).
    job.wake()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()               # leave nothing running behind the test
        raise AssertionError("a job woken as it was cancelled ran on")
    assert task.cancelled()
