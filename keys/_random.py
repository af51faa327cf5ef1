"""Random bytes that need not stay secret (record salts and nonces, row ids), read from
the kernel 4 KiB at a time.

Why: `os.urandom` lets go of the GIL for its system call, and on the ingest path the
database writer thread is often waiting for it, so each seal cost the event loop a
thread switch (issue 12). Salts and nonces are not secret and only must not repeat;
bytes from a pool read with `os.urandom` are the kernel's random bytes all the same.

Invariants:
- No byte is handed out twice: the pool is consumed under a lock (seals run on the
  event loop and in worker threads).
- A forked child drops the pool it inherited, so parent and child never share bytes.
- Only values that must not repeat but need not stay secret come from here (salts,
  nonces, the random bits of row ids: gateway/store/ids.py); keys are drawn with
  `os.urandom` where they are made, so no future key material waits in memory.
"""

from __future__ import annotations

import os
import threading

__all__ = ["public_random_bytes"]

_POOL_BYTES = 4096
_lock = threading.Lock()
_pool = b""
_offset = 0


def public_random_bytes(n: int) -> bytes:
    """`n` (at most `_POOL_BYTES`) fresh random bytes."""
    global _pool, _offset
    with _lock:
        if _offset + n > len(_pool):
            _pool, _offset = os.urandom(_POOL_BYTES), 0
        chunk = _pool[_offset:_offset + n]
        _offset += n
    return chunk


def _forget_pool() -> None:
    global _pool, _offset, _lock
    _pool, _offset = b"", 0
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
