"""Row ids (gateway/store/ids.py): UUID version 7 text, unique, in creation order within a
process even many to a millisecond, and a forked child never repeats its parent's."""

from __future__ import annotations

import os
import uuid

from gateway.store.ids import new_id


def test_ids_are_uuid7_unique_and_in_creation_order():
    ids = [new_id() for _ in range(50_000)]      # far more than one per millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for text in ids[:100] + ids[-100:]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_the_timestamp_is_creation_time_in_milliseconds():
    import time
    before = time.time_ns() // 1_000_000
    made = int(new_id().replace("-", "")[:12], 16)
    after = time.time_ns() // 1_000_000
    # Monotonic bumps may move it at most a millisecond or two past the clock.
    assert before <= made <= after + 2


def test_a_forked_child_makes_ids_its_parent_never_does():
    new_id()                  # the parent's random pool is filled before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:              # child: report its ids and leave at once
        try:
            os.write(write_end, "\n".join(new_id() for _ in range(200)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = set()
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {new_id() for _ in range(200)}
    assert len(child) == 200 and not child & parent
    # The random parts (all but the 48-bit time) differ too, not just the timestamps.
    assert not {c[14:] for c in child} & {p[14:] for p in parent}
