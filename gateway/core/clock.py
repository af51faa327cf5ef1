"""Time is injected so tests control expiry, tolerance windows and TTLs.

Invariants:
- Every time a client sends is read by `parse_rfc3339`, the one strict parser: RFC 3339
  §5.6 `date-time` only (a zone is required), and the instant must lie inside what a
  `datetime` holds in UTC, so no later `astimezone`/arithmetic can overflow into a 500.
- Every time the gateway stores or serves is written by `isoformat` (UTC, `Z`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gateway.errors import invalid


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **kwargs: float) -> None:
        self._now += timedelta(seconds=seconds, **kwargs)

    def set(self, when: datetime) -> None:
        self._now = when


def isoformat(when: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z suffix: the one textual time format stored and served."""
    if when is None:
        return None
    if when.tzinfo is not UTC:      # parsed times are UTC already: no conversion then
        when = when.astimezone(UTC)
    return when.isoformat(timespec="microseconds")[:-6] + "Z"


# RFC 3339 §5.6: full-date "T" partial-time time-offset. "T"/"Z" may be lower case (§5.6
# NOTE); a space for "T" is not accepted (only "applications may" choose it).
_RFC3339 = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))")
# Longer input is refused before the regex runs: the longest form above is 35 characters.
_MAX_RFC3339_LENGTH = 40
# The range every stored time must fit in, with a day of margin on each side so that an
# offset, a retention period or a grant duration added later cannot leave `datetime`'s
# years 1-9999 (where OverflowError would be raised far from the input).
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)


def parse_rfc3339(text: object) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime. Raises ValueError with a reason that
    never echoes the input (callers name the field: `invalid(name, str(err))`)."""
    if not isinstance(text, str):
        raise ValueError("must be an RFC 3339 time (a string)")
    match = _RFC3339.fullmatch(text) if len(text) <= _MAX_RFC3339_LENGTH else None
    if match is None:
        raise ValueError("must be an RFC 3339 time such as 2026-01-31T12:00:00Z "
                         "(with a zone)")
    if match["s"] == "60":
        raise ValueError("leap seconds are not accepted; use :59")
    if match["sign"] and (int(match["oh"]) > 23 or int(match["om"]) > 59):
        raise ValueError("the zone offset must be within -23:59..+23:59")
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(int(match["y"]), int(match["mo"]), int(match["d"]), int(match["h"]),
                         int(match["mi"]), int(match["s"]), micro, tzinfo=UTC)
    except ValueError:
        raise ValueError("not a valid calendar date or time of day") from None
    offset = timedelta(0)
    if match["sign"]:
        offset = timedelta(hours=int(match["oh"]), minutes=int(match["om"]))
        if match["sign"] == "-":
            offset = -offset
    # Compare before subtracting: a year-1 or year-9999 time with an offset would overflow.
    if not EARLIEST + offset <= local <= LATEST + offset:
        raise ValueError("must be between 0001-01-02 and 9999-12-30 (UTC)")
    return local - offset


def parse_time_field(name: str, value: object) -> datetime:
    """`parse_rfc3339` for a request field: a bad value is a 422 naming `name`."""
    try:
        return parse_rfc3339(value)
    except ValueError as err:
        raise invalid(name, str(err)) from None


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
