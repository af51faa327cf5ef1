"""Argument checks shared by the public entry points.

Every public function checks its arguments before touching key material, with a
message that names the argument (pyca/cryptography's style). Type errors are
``TypeError``; values of the right type but out of range are ``ValueError``.
"""

from __future__ import annotations

import uuid

__all__ = ["as_bytes", "check_uuid", "check_int", "check_str"]


def as_bytes(value: object, name: str) -> bytes | memoryview:
    """Accept bytes, bytearray or a C-contiguous byte memoryview; return it unchanged
    for bytes, else a flat byte memoryview (no copy)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        view = memoryview(value)
        if not view.c_contiguous:
            raise ValueError(f"{name} must be a contiguous buffer")
        return view.cast("B") if view.format != "B" or view.ndim != 1 else view
    raise TypeError(f"{name} must be bytes, bytearray or memoryview, not {type(value).__name__}")


def check_uuid(value: object, name: str) -> uuid.UUID:
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"{name} must be a uuid.UUID, not {type(value).__name__}")
    return value


def check_int(value: object, name: str, low: int, high: int) -> int:
    # bool is an int subclass; True as a version or length is always a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_str(value: object, name: str, max_bytes: int) -> bytes:
    """A non-empty str whose UTF-8 encoding is at most max_bytes; returns the encoding."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode (no lone surrogates)") from None
    if not 1 <= len(encoded) <= max_bytes:
        raise ValueError(f"{name} must be 1 to {max_bytes} bytes of UTF-8, got {len(encoded)}")
    return encoded
