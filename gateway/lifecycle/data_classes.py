"""The one registry of retention data classes: each has its own clock (days), operator
bounds and a description. Read by the settings (bounds), the policy, the sweep and preview,
the staff view's retention state, the subject-request code and the OpenAPI document.

Adding a data class = one `DataClass` entry here plus its queries in
`gateway/lifecycle/class_queries.py` (how the sweep finds, counts and deletes its items).

| class          | rows                       | age counted from         | on expiry                      |
| -------------- | -------------------------- | ------------------------ | ------------------------------ |
| call_metadata  | calls                      | calls.sort_time (start)  | call deleted with its events,  |
|                |                            |                          | recordings and their keys      |
| call_events    | call_events                | received_at              | event row deleted              |
| recordings     | recordings (+ blob, key)   | created_at               | key, then blob, then row       |
| diagnostics    | recordings.stats           | recording created_at     | stats set to NULL              |
| audit          | the transparency log       | each entry's time        | entry bytes emptied, leaf hash |
|                | (not swept: its own job)   |                          | kept (docs/transparency.md §7) |

Invariants:
- A LEAF module (stdlib only), so `gateway/lifecycle/settings.py` can read the bounds while
  `load_config` runs without importing the lifecycle services.
- The order of `DATA_CLASSES` is the sweep's order: a call first (its children go with
  it), then what is left of each child class by its own days.
- A class with `parent` never outlives its parent's item (a child goes with its call).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataClass:
    name: str
    description: str
    # Days when the tenant chose nothing, and the range a tenant may choose.
    default_days: int
    min_days: int
    max_days: int
    # Where the class's items live and the column their age counts from (None: no rows of
    # its own, e.g. the audit log).
    table: str | None = None
    time_column: str | None = None
    # False: the class has days (shown, bounded) but the sweep deletes nothing of it.
    swept: bool = True
    # The class whose item this one belongs to (its rows go when the parent's item goes).
    parent: str | None = None
    # True: deleting the parent's item deletes this class's rows, counted in the parent's
    # receipts (a column cleared in place, like diagnostics, is not counted apart).
    deleted_with_parent: bool = False
    # A class the sweep does not run but another job enforces (the module that does).
    enforced_by: str | None = None

    def bounds(self) -> dict[str, int]:
        return {"default_days": self.default_days, "min_days": self.min_days,
                "max_days": self.max_days}


DATA_CLASSES: tuple[DataClass, ...] = (
    DataClass("call_metadata", "call ids, platform ids, status, direction, times, duration;"
              " the parties sealed", 365, 0, 3650, table="calls", time_column="sort_time"),
    DataClass("call_events", "each accepted webhook, minimised and sealed", 90, 0, 3650,
              table="call_events", time_column="received_at", parent="call_metadata",
              deleted_with_parent=True),
    DataClass("recordings", "call audio: the encrypted blob and its wrapped data key", 30, 0,
              3650, table="recordings", time_column="created_at", parent="call_metadata",
              deleted_with_parent=True),
    DataClass("diagnostics", "technical stats of a recording (codec, levels, silence, loss);"
              " no content", 30, 0, 365, table="recordings", time_column="created_at",
              parent="call_metadata"),
    # Deletion receipts and access records: at least a year (accountability).
    DataClass("audit", "the transparency log: access records and deletion receipts (older"
              " entries expire: their contents go, their leaf hashes stay verifiable)",
              2190, 365, 3650, swept=False, enforced_by="gateway.transparency.retention"),
)

BY_NAME: dict[str, DataClass] = {c.name: c for c in DATA_CLASSES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# Classes the sweep enforces, in the order it runs them.
SWEPT: tuple[str, ...] = tuple(c.name for c in DATA_CLASSES if c.swept)
# Classes whose retention is enforced (by the sweep, or by their own job).
ENFORCED: tuple[str, ...] = tuple(c.name for c in DATA_CLASSES if c.swept or c.enforced_by)
# The class whose expiry takes every child along (the call).
ROOT = "call_metadata"
# Classes whose rows deleting a call deletes, with the call itself: what erasure counts.
DELETED_WITH_CALL: tuple[str, ...] = (ROOT, *(c.name for c in DATA_CLASSES
                                             if c.parent == ROOT and c.deleted_with_parent))


def default_bounds() -> dict[str, dict[str, int]]:
    """Operator bounds per class as the config section holds them (a fresh copy)."""
    return {c.name: c.bounds() for c in DATA_CLASSES}
