"""A one-line progress bar on a terminal (`gateway retention run` on a TTY).

Invariants:
- Writes only counts and a bar: never a tenant name, id or number.
- Redraws at most every 0.1 s, so a fast sweep is not slowed by its own output.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream or sys.stdout
        self.width = width
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 0.1 or self.done >= self.total:
            self._last = now
            self.render()

    def render(self) -> None:
        total = max(self.total, self.done, 1)
        filled = int(self.width * self.done / total)
        self.stream.write(f"\rretention [{'#' * filled}{'-' * (self.width - filled)}]"
                          f" {100 * self.done // total:3d}% {self.done}/{total} items")
        self.stream.flush()

    def close(self) -> None:
        # The total was an upper bound (held items, classes a call took along): done is 100%.
        self.total = self.done = max(self.done, self.total)
        self.render()
        self.stream.write("\n")
        self.stream.flush()
