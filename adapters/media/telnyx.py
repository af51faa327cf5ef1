"""Telnyx media streaming (PROTOCOLS.md, "Telnyx"; developers.telnyx.com, Media Streaming).

Frames are JSON text: `connected`, `start` (`stream_id`, `start.call_control_id`,
`start.media_format{encoding PCMU|PCMA|G722|OPUS|AMR-WB|L16, sample_rate, channels}`),
`media` (`media.track, chunk, timestamp, payload` = base64 RTP payload), `dtmf`, `mark`,
`error`, `stop`. Order is not guaranteed: chunks are reordered by `chunk` downstream
(adapters.media.ReorderBuffer). `client_state` and `user_id` are never read.
Telnyx signs no upgrade; the gateway authenticates it with a per-integration ingest token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _common as c
from ._events import AMR_WB, G722, L16BE, OPUS, PCMA, PCMU, StreamStart, invalid, policy
from ._jsonstream import JsonStreamParser, fast_media_pattern, read_tracks

NAME = "telnyx"
ENCODINGS = {"PCMU": PCMU, "PCMA": PCMA, "L16": L16BE, "G722": G722, "OPUS": OPUS,
             "AMR-WB": AMR_WB}
# Rates a telephony stream can carry: 8 kHz narrowband up to 48 kHz Opus fullband.
MAX_SAMPLE_RATE = 48000


class TelnyxMediaParser(JsonStreamParser):
    platform = NAME
    stream_id_key = "stream_id"
    notices = frozenset({"mark", "dtmf", "error"})
    fast_media = fast_media_pattern("sequence_number", "stream_id")

    def _start(self, doc: dict[str, Any]) -> StreamStart:
        start = c.obj(doc, "start")
        stream_id = c.ident(doc, "stream_id", required=False) or c.ident(start, "stream_id")
        call_id = c.ident(start, "call_control_id")
        fmt = start.get("media_format") or {}
        if not isinstance(fmt, dict):
            raise invalid("bad_field", "media_format: not an object")
        raw = fmt.get("encoding", "PCMU")
        encoding = ENCODINGS.get(raw.upper()) if isinstance(raw, str) else None
        if encoding is None:
            raise policy("unsupported", "media_format.encoding: not supported")
        rate = c.positive_int(fmt, "sample_rate", 8000, MAX_SAMPLE_RATE)
        channels = c.positive_int(fmt, "channels", 1, 2)
        if channels != 1:
            raise policy("unsupported", "media_format.channels: only mono tracks")
        return StreamStart(NAME, stream_id, call_id, encoding, rate, channels,
                           read_tracks(start.get("tracks")))


def parser_for(credentials: Mapping[str, Any], query: Mapping[str, str]) -> TelnyxMediaParser:
    """The parser for one connection (Telnyx frames name their own call)."""
    return TelnyxMediaParser()
