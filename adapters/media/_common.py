"""Field readers shared by the JSON media protocols (Twilio, Telnyx). Each raises one
MediaProtocolError naming the field, never echoing its value."""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

from ._events import invalid, policy

# Largest frame accepted, in bytes of the WebSocket message. A 20 ms mu-law frame is
# about 300 bytes of JSON, a 20 ms 16 kHz L16 frame 640 bytes binary; platforms document
# no frame above 1 s of audio (Telnyx L16 at 16 kHz: ~43 KiB of base64 JSON). 64 KiB
# bounds what one frame can cost to parse and hold.
MAX_FRAME_BYTES = 64 * 1024
# Stream, call and account identifiers: SIDs are 34 chars, Telnyx call_control_ids ~80,
# UUIDs 36. 256 leaves room without making an id a storage sink.
MAX_ID_CHARS = 256
# Chunk numbers, sequence numbers and millisecond timestamps fit a JSON-safe integer.
MAX_COUNTER = 2**53 - 1
_ID_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_CHARS}}}\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,16}\Z")


_decode = json.JSONDecoder().raw_decode
_WS = re.compile(r"[ \t\n\r]*")


def load_frame(data: str | bytes) -> dict[str, Any]:
    if len(data) > MAX_FRAME_BYTES:
        raise policy("oversized", "frame too large")
    try:
        if type(data) is str and data[:1] == "{":
            # json.loads without its wrapper's type checks (this is the hot path).
            doc, end = _decode(data)
            if end != len(data) and _WS.match(data, end).end() != len(data):
                raise ValueError("trailing data")
        else:
            doc = json.loads(data)
    except (ValueError, RecursionError):
        raise invalid("invalid_json", "frame is not JSON") from None
    if not isinstance(doc, dict):
        raise invalid("invalid_json", "frame is not a JSON object")
    return doc


def obj(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise invalid("bad_field", f"{key}: missing or not an object")
    return value


def ident(container: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = container.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise invalid("bad_field", f"{key}: missing or not an identifier")
    return value


def is_ident(value: str) -> bool:
    """True for a printable, space-free identifier of at most MAX_ID_CHARS."""
    return bool(_ID_RE.match(value))


def counter(container: dict[str, Any], key: str) -> int | None:
    """A chunk/sequence/timestamp the platform writes as a decimal string (or a number)."""
    value = container.get(key)
    if value is None:
        return None
    if type(value) is str:
        if not _DIGITS_RE.match(value):
            raise invalid("bad_field", f"{key}: not a decimal counter")
        number = int(value)
    elif type(value) is int:
        number = value
    else:
        raise invalid("bad_field", f"{key}: not a decimal counter")
    if not 0 <= number <= MAX_COUNTER:
        raise invalid("bad_field", f"{key}: out of range")
    return number


def payload(media: dict[str, Any]) -> bytes:
    value = media.get("payload")
    if type(value) is not str:
        raise invalid("bad_field", "payload: missing or not a string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise invalid("bad_base64", "payload: not base64") from None


def positive_int(container: dict[str, Any], key: str, default: int, maximum: int) -> int:
    value = container.get(key, default)
    if type(value) is str and value.isdigit() and len(value) < 10:
        value = int(value)
    if type(value) is not int or not 1 <= value <= maximum:
        raise invalid("bad_field", f"{key}: not a positive integer")
    return value


def track_name(value: Any) -> str:
    """'inbound'/'outbound' (both platforms also write 'inbound_track'/'outbound_track')."""
    if value == "inbound" or value == "outbound":
        return value
    if value == "inbound_track" or value == "outbound_track":
        return value[:-6]
    raise invalid("bad_field", "track: not inbound or outbound")
