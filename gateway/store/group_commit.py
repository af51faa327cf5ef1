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
- A run of units that also carries a `remote` step (gateway/store/writer_process.py) goes
  to the backend's writer process instead of the thread, when it has one: one transaction
  per run there, awaited before the next run or batch starts, so the process and the thread
  never write at once, and outcomes keep unit order. A run the process did not commit
  (`StepNotDone`) runs on the thread after all.
- after_commit callbacks run on the event loop, after durability, in unit order.
- The writer thread shares the GIL with the event loop and lets go of it around every
  statement; getting it back waits for the loop to yield it, by default up to 5 ms
  (`sys.getswitchinterval`), each time. `start` lowers the process's switch interval to
  `WRITER_SWITCH_INTERVAL` so a batch is not held up behind a busy loop: measured on the
  ingest benchmark (issue 12), 0.5 ms served 35-45% more webhooks/s than 5 ms.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.core.jobs import cancel_and_wait
from gateway.store.writer_process import REMOTE, StepNotDone, WriterProcess

log = logging.getLogger("gateway.store")
T = TypeVar("T")

# Seconds a thread waiting for the GIL waits before asking its holder to let go (see the
# invariants: the writer thread's statements each end in such a wait).
WRITER_SWITCH_INTERVAL = 0.0005

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


class GroupCommitWriter:
    """The writer thread (which owns the backend's writer connection) and the task that
    feeds it batches. `call` runs setup and teardown on that same thread.

    The hand-off is kept lean because every webhook pays it (issue 12): a unit is a
    (fn, future) pair appended to a list, the feeding task is woken by one future per
    idle period, and a batch reaches the thread through a `queue.SimpleQueue` and comes
    back through one `call_soon_threadsafe`, without concurrent.futures in between."""

    def __init__(self, thread_name: str, commit_batch: CommitBatch, *,
                 max_batch: int = 256,
                 observe_batch: Callable[[int], None] | None = None,
                 process: WriterProcess | None = None) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[bool, Any], None]]
                                      | None] = queue.SimpleQueue()
        # A daemon thread, so a process that never stops its database can still exit; a
        # normal shutdown (`stop`) closes the connection and joins it.
        self._thread = threading.Thread(target=self._serve, name=f"{thread_name}_0",
                                        daemon=True)
        self._thread.start()
        self._commit_batch = commit_batch
        self.max_batch = max_batch
        # Called with each durable batch's unit count (the group-commit size metric).
        self.observe_batch = observe_batch
        self._pending: list[tuple[Unit, asyncio.Future]] = []
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task | None = None
        # Runs of units carrying a remote step go to this process instead of the thread.
        self._process = process
        self.commits = 0
        self.units = 0

    def _serve(self) -> None:
        """The writer thread: runs each job, hands its outcome to the job's callback."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, reply = job
            try:
                outcome = (True, fn())
            except BaseException as exc:     # the waiter re-raises it on the loop
                outcome = (False, exc)
            try:
                reply(*outcome)
            except RuntimeError:
                pass        # the loop that asked is closed: nobody waits any more

    async def _on_thread(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        self._jobs.put((fn, lambda ok, value: loop.call_soon_threadsafe(settle, ok, value)))
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread (open the connection, migrate, close)."""
        return await self._on_thread(fn)

    def start(self) -> None:
        if sys.getswitchinterval() > WRITER_SWITCH_INTERVAL:
            sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, close_connection: Callable[[], None] | None = None) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        # Waited for in place, not awaited: a stop during cancellation still closes.
        finished: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        if close_connection is not None:
            self._jobs.put((close_connection, lambda ok, value: finished.put((ok, value))))
            ok, value = finished.get()
            if not ok:
                raise value
        self._jobs.put(None)
        self._thread.join()

    async def write(self, fn: Callable[[Any], T]) -> T:
        if self._task is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            batch = [unit for unit in self._pending[:self.max_batch]
                     if not unit[1].cancelled()]
            del self._pending[:self.max_batch]
            if not batch:
                continue
            fns = [fn for fn, _ in batch]
            try:
                outcomes, callbacks = await self._commit(fns)
            except Exception as exc:
                # The commit itself failed (disk full, I/O error, server gone): nothing in
                # the batch is durable, so every waiter gets the error and none gets a 2xx.
                log.error("group commit failed: %s", type(exc).__name__)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
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
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)


    async def _commit(self, fns: list[Unit]
                      ) -> tuple[list[tuple[bool, Any]], list[Callable[[], None]]]:
        """The batch's outcomes in unit order, durable: on the thread in one transaction,
        except runs of units with a remote step, which the writer process commits (one
        step each; any step it did not commit runs on the thread after all)."""
        if self._process is None:
            return await self._on_thread(lambda: self._commit_batch(fns))
        outcomes: list[tuple[bool, Any]] = []
        callbacks: list[Callable[[], None]] = []
        here: list[Unit] = []
        for group in together_groups(fns):
            step = getattr(group[0], REMOTE, None)
            if step is None:
                here.extend(group)
                continue
            if here:
                await self._commit_here(here, outcomes, callbacks)
                here = []
            try:
                outcomes.extend(await self._process.run(step, group))
            except StepNotDone:
                await self._commit_here(group, outcomes, callbacks)
        if here:
            await self._commit_here(here, outcomes, callbacks)
        return outcomes, callbacks

    async def _commit_here(self, fns: list[Unit], outcomes: list[tuple[bool, Any]],
                           callbacks: list[Callable[[], None]]) -> None:
        done, after = await self._on_thread(lambda: self._commit_batch(fns))
        outcomes.extend(done)
        callbacks.extend(after)


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
