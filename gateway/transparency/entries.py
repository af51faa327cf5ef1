"""Audit entries: the bytes each leaf of a tenant's transparency log commits to. Pure.

An entry is canonical JSON (RFC 8259): UTF-8, object keys sorted, no insignificant
whitespace, non-ASCII characters written as themselves. Every entry has the same ten
top-level fields, in this (sorted) order once encoded::

    actor      {"type": "staff"|"tenant"|"system", "id": pseudonym,
                optional "employer": str, optional "country": ISO 3166-1 alpha-2}
    details    object (kind-specific; may be {})
    grant_id   string or null
    kind       one of KINDS
    outcome    string or null
    purpose    string or null
    reference  string or null (a ticket reference)
    scope      null, string, or JSON (calls, a time window, ...)
    seq        int, the entry's index in the log (0, 1, 2, ...)
    time       RFC 3339 in UTC with "Z", e.g. "2026-01-01T00:00:00.000000Z"

Value rules, all checked by ``encode_entry`` (writers are strict; ``decode_entry`` checks
form and canonical encoding but not content, so a verifier can read every entry ever
written even if the content rules tighten later):

* JSON types only: objects with string keys, arrays, strings, ints, true/false/null.
  No floats: their text form differs between JSON libraries and would break
  byte-for-byte re-encoding; write integers (milliseconds, bytes, basis points).
* Integers within +-(2**53 - 1), the I-JSON interoperable range (RFC 7493 §2.2).
* Object keys match ``[A-Za-z0-9_.-]{1,64}``: ASCII keys sort the same by code point
  (Python) and by UTF-16 unit (RFC 8785, JavaScript), so any JSON library can check the
  canonical form.
* No string (value or key) looks like a phone number; see ``find_phone_like``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ACTOR_TYPES",
    "FIELDS",
    "KINDS",
    "MAX_ENTRY_SIZE",
    "EntryError",
    "decode_entry",
    "encode_entry",
    "find_phone_like",
    "format_time",
]

KINDS = frozenset({
    "access_request",    # staff asked for access (purpose, level, scope, ticket)
    "decision",          # the policy or a tenant admin approved or denied it
    "expiry",            # a grant ran out
    "revocation",        # a grant was revoked
    "diagnostic_read",   # staff read technical data under a grant
    "refused_read",      # a read was refused (no grant, expired, wrong scope, ...)
    "log_read",          # someone read this log (reads of the log are logged)
    "deletion_receipt",  # retention or erasure deleted data (counts, ids as hashes)
    "key_event",         # key created, rotated, destroyed
    "dsr",               # a data-subject request and its receipt
})
"""Kinds ``encode_entry`` accepts. ``decode_entry`` accepts any well-formed kind so that
old verifiers can read logs written by newer gateways."""

ACTOR_TYPES = frozenset({"staff", "tenant", "system"})

FIELDS = ("actor", "details", "grant_id", "kind", "outcome", "purpose", "reference",
          "scope", "seq", "time")

# One entry is one audit event. The largest expected is a deletion receipt for one
# retention batch: 1000 ids as 64-hex-digit hashes is ~70 KB. 256 KiB leaves room and
# still bounds what a verifier or the tenant API must hold per entry.
MAX_ENTRY_SIZE = 256 * 1024

# Nesting deeper than this is a bug, not an audit event (and keeps recursion bounded).
MAX_DEPTH = 16

# I-JSON (RFC 7493 §2.2): integers outside +-(2**53 - 1) lose precision in many parsers.
_MAX_INT = 2**53 - 1

_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
# RFC 3339 §5.6 date-time, restricted to UTC written as "Z"; fraction 1-9 digits.
_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z",
                      re.ASCII)


class EntryError(ValueError):
    """An entry is malformed, not canonical, or carries a phone-number-like value."""


# --------------------------------------------------------------------------- phones

# Strings that are safe by construction and would otherwise trip the digit rule: UUIDs
# (the last group is 12 hex digits, all decimal in ~0.4% of random UUIDs), hex strings
# of 16+ digits with at least one letter (digests, random ids), decimal runs of 20+
# digits (longer than any dialled number: "011" or "00" + 15 E.164 digits is 18), and
# RFC 3339 dates and date-times. They are masked before the scan.
_SAFE_TOKENS = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{16,}"
    r"|\d{20,}"
    r"|\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?"
    r")(?![0-9A-Za-z])",
    re.ASCII)

# Characters that may sit between the digit groups of a written phone number: spaces
# (any Unicode whitespace), hyphen-minus and the Unicode hyphens and dashes, dots,
# parentheses, plus and slash ("+49 (0)30 / 1234-567", "555.123.4567").
_SEPARATORS = frozenset(" -./()+\u2010\u2011\u2012\u2013\u2014\u2015\u2212")

# ITU-T E.164 numbers have at most 15 digits and national significant numbers rarely
# fewer than 7 (short codes and extensions aside); 7 is the rule's threshold.
PHONE_MIN_DIGITS = 7
# At least PHONE_MIN_DIGITS ASCII digits anywhere (the classes are disjoint: linear time).
_ENOUGH_DIGITS = re.compile(rf"(?:[^0-9]*[0-9]){{{PHONE_MIN_DIGITS}}}")


def _is_sep(ch: str) -> bool:
    return ch in _SEPARATORS or ch.isspace()


def find_phone_like(text: str) -> str | None:
    """The first substring of ``text`` that could be a phone number, or None.

    A phone-like run is digit groups joined only by separators (whitespace, dashes,
    dots, parentheses, "+", "/") with 7 or more digits in total, in any script's digits.
    Digit groups glued to a letter are identifier parts and break a run: "v2",
    "INC0012345", "a1234567b" (hex), "staff-123456789012" and "ZD-1234567" (a letter,
    one "-" or "_", digits). UUIDs, 16+ digit hex strings and RFC 3339 dates and times
    are skipped whole. Dotted IPv4 addresses *are* flagged: they are personal data and
    have no place in an audit entry either.
    """
    # Fast path (most strings): ASCII with fewer digits than a run needs, before or after
    # the safe tokens (UUIDs, dates) are masked, cannot hold a phone-like run.
    if text.isascii() and _ENOUGH_DIGITS.match(text) is None:
        return None
    masked = _SAFE_TOKENS.sub(lambda m: "x" * len(m.group()), text)
    if masked.isascii() and _ENOUGH_DIGITS.match(masked) is None:
        return None
    n = len(masked)
    i = 0
    run_start = -1
    run_digits = 0
    last_group_end = -1
    while i < n:
        ch = masked[i]
        if not ch.isdigit():
            if run_start >= 0 and not _is_sep(ch):
                run_start, run_digits = -1, 0  # a letter or other char ends the run
            i += 1
            continue
        j = i
        while j < n and masked[j].isdigit():
            j += 1
        if _glued(masked, i, j):
            run_start, run_digits = -1, 0
        else:
            if run_start < 0 or not all(_is_sep(c) for c in masked[last_group_end:i]):
                run_start, run_digits = i, 0
            run_digits += j - i
            last_group_end = j
            if run_digits >= PHONE_MIN_DIGITS:
                return text[run_start:j]
        i = j
    return None


def _glued(text: str, start: int, end: int) -> bool:
    """Is the digit group text[start:end] part of an identifier?"""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if before.isalpha() or after.isalpha():
        return True
    # "ZD-1234567", "staff-123456789012", "job_1234567": letter, one joiner, digits.
    return before in ("-", "_") and start >= 2 and text[start - 2].isalpha()


# --------------------------------------------------------------------------- encode

def format_time(when: datetime) -> str:
    """RFC 3339 UTC with microseconds and "Z", as ``gateway.clock.isoformat`` writes it."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise EntryError("time must be a timezone-aware datetime")
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _check_time(value: object) -> str:
    if not isinstance(value, str):
        raise EntryError("time must be an RFC 3339 UTC string ending in Z")
    m = _TIME_RE.fullmatch(value)
    if m is None:
        raise EntryError("time must be an RFC 3339 UTC string ending in Z")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        datetime(y, mo, d, h, mi, min(s, 59), tzinfo=UTC)  # 60: RFC 3339 leap second
    except ValueError:
        raise EntryError("time is not a valid date and time") from None
    if s > 60:
        raise EntryError("time is not a valid date and time")
    return value


def _check_value(path: str, value: Any, depth: int, phones: bool) -> None:
    if depth > MAX_DEPTH:
        raise EntryError(f"{path}: nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_MAX_INT <= value <= _MAX_INT:
            raise EntryError(f"{path}: integer outside +-(2**53 - 1)")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EntryError(f"{path}: not encodable as UTF-8 (lone surrogate)") from None
        if phones and find_phone_like(value) is not None:
            raise EntryError(f"{path}: value looks like a phone number")
        return
    if isinstance(value, float):
        raise EntryError(f"{path}: floats are not allowed; use an integer")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, depth + 1, phones)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
                raise EntryError(f"{path}: keys must match [A-Za-z0-9_.-]{{1,64}}")
            if phones and find_phone_like(key) is not None:
                raise EntryError(f"{path}: key looks like a phone number")
            _check_value(f"{path}.{key}", item, depth + 1, phones)
        return
    raise EntryError(f"{path}: {type(value).__name__} is not a JSON value")


def _check_entry(entry: Any, *, strict: bool) -> dict[str, Any]:
    """Schema checks. ``strict`` (writing) adds the kind allow-list and the phone scan."""
    if not isinstance(entry, dict):
        raise EntryError("entry must be an object")
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise EntryError(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    out = {
        "actor": entry.get("actor"), "details": entry.get("details", {}),
        "grant_id": entry.get("grant_id"), "kind": entry.get("kind"),
        "outcome": entry.get("outcome"), "purpose": entry.get("purpose"),
        "reference": entry.get("reference"), "scope": entry.get("scope"),
        "seq": entry.get("seq"), "time": entry.get("time"),
    }
    seq = out["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= _MAX_INT:
        raise EntryError("seq must be a non-negative integer")
    _check_time(out["time"])
    kind = out["kind"]
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise EntryError("kind must be a lower-case identifier")
    if strict and kind not in KINDS:
        raise EntryError(f"kind must be one of {', '.join(sorted(KINDS))}")
    actor = out["actor"]
    if not isinstance(actor, dict) or not {"type", "id"} <= set(actor) or not set(actor) <= {
            "type", "id", "employer", "country"}:
        raise EntryError("actor must have type and id, and only employer and country besides")
    if actor["type"] not in ACTOR_TYPES:
        raise EntryError("actor.type must be staff, tenant or system")
    for key in ("id", "employer"):
        if key in actor and (not isinstance(actor[key], str) or not actor[key]):
            raise EntryError(f"actor.{key} must be a non-empty string")
    if "country" in actor and not (isinstance(actor["country"], str)
                                   and _COUNTRY_RE.fullmatch(actor["country"])):
        raise EntryError("actor.country must be an ISO 3166-1 alpha-2 code")
    for key in ("grant_id", "outcome", "purpose", "reference"):
        if out[key] is not None and not isinstance(out[key], str):
            raise EntryError(f"{key} must be a string or null")
    if not isinstance(out["details"], dict):
        raise EntryError("details must be an object")
    for key in FIELDS:
        if key not in ("seq", "time"):  # seq is an int, time matched its own pattern
            _check_value(key, out[key], 1, strict)
    return out


def _dumps(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def encode_entry(entry: dict[str, Any]) -> bytes:
    """Canonical bytes of an audit entry; ``EntryError`` (a ``ValueError``) if invalid.

    Missing optional fields are written as null (``details`` as {}), so every entry
    carries the same ten fields.
    """
    data = _dumps(_check_entry(entry, strict=True))
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryError(f"entry larger than {MAX_ENTRY_SIZE} bytes")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise EntryError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise EntryError("floats are not allowed")


def _no_constant(text: str) -> Any:
    raise EntryError(f"{text} is not JSON")


def decode_entry(data: bytes) -> dict[str, Any]:
    """Parse entry bytes; ``EntryError`` unless they are a canonical, well-formed entry."""
    if not isinstance(data, (bytes, bytearray)):
        raise EntryError("entry must be bytes")
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryError(f"entry larger than {MAX_ENTRY_SIZE} bytes")
    try:
        text = bytes(data).decode("utf-8")
        entry = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float,
                           parse_constant=_no_constant)
    except EntryError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EntryError("entry is not UTF-8 JSON") from None
    checked = _check_entry(entry, strict=False)
    if set(entry) != set(FIELDS) or _dumps(checked) != bytes(data):
        raise EntryError("entry is not in canonical form")
    return checked
