"""Vonage Voice WebSocket audio (PROTOCOLS.md, "Vonage Voice"; developer.vonage.com,
"WebSockets").

The first frame is text JSON: `{"event": "websocket:connected", "content-type":
"audio/l16;rate=16000", ...the headers the NCCO set}`. Then binary frames of 16-bit
little-endian mono PCM, normally 20 ms (640 bytes at 16 kHz). Later text frames are JSON
notices (e.g. `websocket:dtmf`): read for validity, never stored. The call is identified
by the uuid the NCCO passes: a `uuid` header in the NCCO (so in the first frame), or a
`uuid` query parameter of the WebSocket URI (passed in as `call_id_hint`). The stream ends
when Vonage closes the socket: there is no stop frame.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import _common as c
from ._events import L16LE, MediaChunk, MediaEvent, StreamNotice, StreamStart, invalid, policy

NAME = "vonage"
# Vonage offers 8, 16 and 24 kHz linear PCM.
SAMPLE_RATES = (8000, 16000, 24000)
_CONTENT_TYPE_RE = re.compile(r"\s*audio/l16\s*;\s*rate\s*=\s*([0-9]{4,5})\s*\Z", re.IGNORECASE)
# Header names (in the first frame) that carry the call's uuid, in order of preference.
CALL_ID_FIELDS = ("uuid", "call_uuid", "vonage_uuid")


class VonageMediaParser:
    platform = NAME

    def __init__(self, call_id_hint: str | None = None) -> None:
        self._started = False
        self._hint = call_id_hint

    @property
    def started(self) -> bool:
        return self._started

    def receive_text(self, data: str) -> MediaEvent:
        doc = c.load_frame(data)
        if self._started:
            return StreamNotice("other")
        if doc.get("event") != "websocket:connected":
            raise policy("bad_order", "first frame is not websocket:connected")
        self._started = True
        return self._start(doc)

    def receive_bytes(self, data: bytes) -> MediaEvent:
        if not self._started:
            raise policy("bad_order", "audio before websocket:connected")
        if len(data) > c.MAX_FRAME_BYTES:
            raise policy("oversized", "frame too large")
        if len(data) & 1:
            raise invalid("bad_audio", "odd number of bytes for 16-bit audio")
        return MediaChunk("inbound", data)

    def _start(self, doc: dict[str, Any]) -> StreamStart:
        ctype = doc.get("content-type", "audio/l16;rate=16000")
        match = _CONTENT_TYPE_RE.match(ctype) if isinstance(ctype, str) else None
        if match is None or int(match.group(1)) not in SAMPLE_RATES:
            raise policy("unsupported", "content-type: not audio/l16 at 8, 16 or 24 kHz")
        call_id = None
        for key in CALL_ID_FIELDS:
            call_id = c.ident(doc, key, required=False)
            if call_id is not None:
                break
        call_id = call_id or self._hint
        if call_id is None:
            raise policy("no_call_id", "uuid: the NCCO must pass the call uuid")
        return StreamStart(NAME, call_id, call_id, L16LE, int(match.group(1)), 1, ("inbound",))


def parser_for(credentials: Mapping[str, Any], query: Mapping[str, str]) -> VonageMediaParser:
    """The parser for one connection: the upgrade URL's `uuid` query parameter, if it is an
    identifier, names the call when the first frame does not."""
    hint = query.get("uuid")
    return VonageMediaParser(hint if isinstance(hint, str) and c.is_ident(hint) else None)
