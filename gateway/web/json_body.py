"""Request JSON, read strictly: RFC 8259 text that every later step can handle.

Invariants:
- The body is UTF-8 without a byte order mark (RFC 8259 §8.1: JSON exchanged between
  systems MUST be UTF-8). UTF-16/32 bodies, which `json.loads(bytes)` would guess at, and
  invalid UTF-8 are refused.
- Only RFC 8259 §6 numbers: `NaN`, `Infinity` and numbers that overflow a double are
  refused; integers must fit in a signed 64-bit column (SQLite's and PostgreSQL's BIGINT),
  so an extreme number is a 4xx here, not an OverflowError at the database.
- Every string (key or value) is valid Unicode: a `\\ud800` escape (a lone surrogate) is
  legal JSON syntax but cannot be encoded as UTF-8, so it would fail later, inside sealing,
  hashing or the database, as a 500.
- Nesting is at most MAX_DEPTH: no request document the API accepts is deeper than 4, and
  recursive code downstream (validation, json.dumps, the audit log) stays far from
  Python's recursion limit. `json.loads` itself recurses, so its RecursionError is caught.
- Errors are 400 `malformed-json` naming the field's path (`scope.window.since`,
  `scope.calls[2]`); they never echo a value.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import DomainError, invalid

# Deepest nesting accepted. The API's deepest documents are 4 levels (an access policy's
# rules); 32 leaves room for any future shape and is 30x below the interpreter's limit.
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def malformed(detail: str, field: str | None = None) -> DomainError:
    extra = {"field": field} if field else {}
    return DomainError(400, "malformed-json", "the body is not valid JSON", detail, **extra)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def parse_json(body: bytes) -> Any:
    """The document in `body`, checked as the module docstring says."""
    if body.startswith(_BOMS):
        raise malformed("JSON must be UTF-8 without a byte order mark (RFC 8259 §8.1)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("JSON must be UTF-8 (RFC 8259 §8.1)") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant,
                              parse_float=_finite_float)
    except RecursionError:
        raise malformed(f"nested too deep (at most {MAX_DEPTH} levels)") from None
    except ValueError:       # json.JSONDecodeError, and the two hooks above
        raise malformed("the body is not valid JSON") from None
    check_document(document)
    return document


def check_document(document: Any) -> None:
    """Walk the parsed document (iteratively: it may be deep) and refuse what the module
    docstring lists, naming the first offending field's path."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise malformed(f"nested too deep (at most {MAX_DEPTH} levels)", path or "body")
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    raise malformed("a key is not valid Unicode text (lone surrogate)",
                                    path or "body")
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}[{index}]", depth + 1))
        elif isinstance(value, str):
            if not _encodable(value):
                raise malformed("not valid Unicode text (lone surrogate)", path or "body")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise invalid(path or "body", "number out of range (64-bit integers only)")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
