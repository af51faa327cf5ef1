"""Putting one track's numbered chunks back in order (Telnyx does not guarantee order).

`push(sequence, item)` returns what can be released now, in order, each with the number of
chunks known to be missing just before it. A chunk waits at most `window` chunks for the
ones before it: when more than `window` are held, the oldest is released and the hole
before it is declared lost. A chunk arriving after its turn was given away is late (dropped
and counted); one already held is a duplicate. Memory: at most window + 1 items.

Counters (for the recording's technical stats): received, reordered (arrived after a later
chunk but still placed), late, duplicates, lost.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._events import policy

T = TypeVar("T")

# A jump of more than this many chunks is not loss but a broken or hostile sender: 3000
# chunks of 20 ms is a minute of audio, longer than any jitter buffer or outage a call
# survives. Refusing it bounds the silence a single frame can make the gateway write.
MAX_GAP = 3000


class ReorderBuffer(Generic[T]):
    __slots__ = ("window", "_expected", "_held", "_highest", "received", "reordered",
                 "late", "duplicates", "lost")

    def __init__(self, window: int, first: int | None = 1) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self._expected = first      # the next sequence to release; None: learn it
        self._held: dict[int, T] = {}
        self._highest = -1
        self.received = self.reordered = self.late = self.duplicates = self.lost = 0

    def push(self, sequence: int, item: T) -> list[tuple[int, T]]:
        self.received += 1
        expected = self._expected
        if expected is not None:
            if sequence < expected:
                self.late += 1
                return []
            if sequence == expected and not self._held:
                # In-order fast path: nothing waits, release at once.
                self._expected = sequence + 1
                if sequence > self._highest:
                    self._highest = sequence
                return [(0, item)]
            if sequence - expected > MAX_GAP:
                raise policy("sequence_jump", "chunk: jumps too far ahead")
        elif self._held and abs(sequence - min(self._held)) > MAX_GAP:
            raise policy("sequence_jump", "chunk: jumps too far ahead")
        if sequence in self._held:
            self.duplicates += 1
            return []
        if sequence < self._highest:
            self.reordered += 1
        else:
            self._highest = sequence
        self._held[sequence] = item
        return self._release(force=len(self._held) > self.window)

    def next_in_order(self, sequence: int) -> bool:
        """The common case without allocation: True when `sequence` is the very next one and
        nothing is held; it then counts as received and released, and the caller uses it
        directly. False: use push()."""
        if sequence == self._expected and not self._held:
            self._expected = sequence + 1
            self.received += 1
            if sequence > self._highest:
                self._highest = sequence
            return True
        return False

    def flush(self) -> list[tuple[int, T]]:
        """Release everything held (the stream ended): holes between held chunks are lost."""
        out: list[tuple[int, T]] = []
        while self._held:
            out.extend(self._release(force=True))
        return out

    def _release(self, force: bool) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        held = self._held
        expected = self._expected
        if expected is None or (force and expected not in held):
            if not force:
                return out
            # Give up on the hole: the oldest held chunk is next.
            oldest = min(held)
            gap = oldest - expected if expected is not None else 0
            self.lost += gap
            out.append((gap, held.pop(oldest)))
            expected = oldest + 1
        while expected in held:
            out.append((0, held.pop(expected)))
            expected += 1
        self._expected = expected
        return out
