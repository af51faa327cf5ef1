"""Group commit: many concurrent write units, one durable commit.

Why: a 2xx to a platform must mean the event is durable, so every write ends in a durable
commit. One commit per request would cap ingest at the disk's (or the database server's)
commit rate; instead one writer task takes whatever units are queued, hands the whole batch
to the backend's `commit_batch` on the backend's own writer thread (one thread hop per
batch, not per statement), and resolves every unit's future once the batch is durable.
While one commit is under way, new arrivals queue and share the next one.

Invariants:
- A unit's future resolves only after the commit that carried it is durable.
- If the commit itself fails, every unit of the batch gets the error (none gets a 2xx).
- One failing unit does not sink its neighbours: backends run each unit in a savepoint.
- Units that carry the same `together` runner (see `together_groups`) may run as one
  set-based step in one savepoint; if that step raises, the backend rolls it back and runs
  those units one by one as above, so the outcome is the same as running them one by one.
- after_commit callbacks run on the event loop, after durability, in unit order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.core.jobs import cancel_and_wait

log = logging.getLogger("gateway.store")
T = TypeVar("T")

Unit = Callable[[Any], Any]
# (units) -> ([(ok, result_or_exception)], [after-commit callbacks]); runs on the writer thread.
CommitBatch = Callable[[list[Unit]], tuple[list[tuple[bool, Any]], list[Callable[[], None]]]]


# A unit may carry `unit.together = runner`: consecutive units of a batch with the same
# runner are handed to `runner(tx, units)` at once, which returns one (ok, result_or_error)
# per unit (a unit refused without writing anything may get (False, error)). Why: a batch
# of webhook deliveries then costs a few statements instead of several per event (each
# statement is a GIL round trip on the writer thread, shared with the event loop).
TOGETHER = "together"


def together_groups(fns: list[Unit]) -> list[list[Unit]]:
    """The batch cut into runs of consecutive units sharing a `together` runner; a unit
    without one is a run of its own."""
    groups: list[list[Unit]] = []
    previous = None
    for fn in fns:
        runner = getattr(fn, TOGETHER, None)
        if runner is not None and groups and runner == previous:
            groups[-1].append(fn)
        else:
            groups.append([fn])
        previous = runner
    return groups


@dataclass
class _Queued:
    fn: Unit
    future: asyncio.Future = field(repr=False)


class GroupCommitWriter:
    """The writer thread (which owns the backend's writer connection) and the task that
    feeds it batches. `call` runs setup and teardown on that same thread."""

    def __init__(self, thread_name: str, commit_batch: CommitBatch, *,
                 max_batch: int = 256,
                 observe_batch: Callable[[int], None] | None = None) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._commit_batch = commit_batch
        self.max_batch = max_batch
        # Called with each durable batch's unit count (the group-commit size metric).
        self.observe_batch = observe_batch
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.commits = 0
        self.units = 0

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread (open the connection, migrate, close)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, close_connection: Callable[[], None] | None = None) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if close_connection is not None:
            self._thread.submit(close_connection).result()
        self._thread.shutdown(wait=True)

    async def write(self, fn: Callable[[Any], T]) -> T:
        if self._task is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Queued(fn, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [unit for unit in batch if not unit.future.cancelled()]
            if not batch:
                continue
            try:
                outcomes, callbacks = await loop.run_in_executor(
                    self._thread, self._commit_batch, [u.fn for u in batch])
            except Exception as exc:
                # The commit itself failed (disk full, I/O error, server gone): nothing in
                # the batch is durable, so every waiter gets the error and none gets a 2xx.
                log.error("group commit failed: %s", type(exc).__name__)
                for unit in batch:
                    if not unit.future.done():
                        unit.future.set_exception(exc)
                continue
            self.commits += 1
            self.units += len(batch)
            if self.observe_batch is not None:
                self.observe_batch(len(batch))
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("after-commit callback failed")
            for unit, (ok, value) in zip(batch, outcomes, strict=True):
                if unit.future.done():
                    continue
                if ok:
                    unit.future.set_result(value)
                else:
                    unit.future.set_exception(value)


class BatchingDatabase:
    """What both metadata backends share: a GroupCommitWriter behind `write`."""

    _writer: GroupCommitWriter | None = None

    @property
    def commits(self) -> int:
        return self._writer.commits if self._writer else 0

    @property
    def units(self) -> int:
        return self._writer.units if self._writer else 0

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(tx)` on the writer thread inside a group commit; returns its result once
        its effects are durable. If `fn` raises, its effects are rolled back and the
        exception propagates. `fn` must be synchronous and quick (statements and CPU only)."""
        if self._writer is None:
            raise RuntimeError("database is not open")
        return await self._writer.write(fn)
