"""Background tasks: the one way to stop one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has finished unwinding (its finally blocks ran)."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def start_for_app_lifetime(app: Any, service: Any) -> None:
    """Start a feature's background `service` now and stop it when the app cleans up: the
    one way a feature's `startup` hook runs a long-lived job."""
    await service.start()

    async def stop(_app: Any) -> None:
        await service.stop()

    app.on_cleanup.append(stop)
