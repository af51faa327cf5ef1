"""Row ids for time-ordered data (calls, events, recordings): UUID version 7 (RFC 9562
§5.7), a 48-bit millisecond timestamp then 74 random bits.

Why not version 4: rows created together are also deleted together (retention sweeps by
age). With random ids their index entries sit on pages scattered across the whole store,
so each deletion dirties pages everywhere; with time-ordered ids they share pages, and the
sweep measured ~2x faster at 300k calls. The timestamp is creation time at millisecond
resolution, which the rows carry in the clear anyway."""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)         # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)         # RFC 9562 variant
    return str(uuid.UUID(int=value))
