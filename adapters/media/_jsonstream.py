"""The JSON media-stream protocol Twilio and Telnyx share, as a state machine.

    connected? -> start -> (media | mark | dtmf | ...)* -> stop

Fed one text frame at a time (`receive_text`), it returns one event or raises one
MediaProtocolError. Rules, in order of checking:
1. A frame is at most MAX_FRAME_BYTES, is JSON, and is an object with a string `event`
   (1008 oversized; else 1007).
2. `connected` only before `start`; `start` exactly once; `media` only between `start` and
   `stop`; nothing after `stop` (1008 wrong order).
3. A frame naming a stream id names the one `start` announced (1008).
4. `media.payload` is strict base64 (1007); `media.track` is inbound or outbound and, when
   `start` listed tracks, one of them (1008); `chunk` and `timestamp` are decimal counters.
5. Unknown event types are notices: platforms add events, and a recording should not end
   because one did.
A binary frame is not part of these protocols (1007).
"""

from __future__ import annotations

import re
from binascii import Error as BinasciiError
from binascii import a2b_base64
from typing import Any

from . import _common as c
from ._events import (
    MediaChunk,
    MediaEvent,
    StreamNotice,
    StreamStart,
    StreamStop,
    invalid,
    policy,
)

_BEFORE_START, _STREAMING, _STOPPED = 0, 1, 2


class JsonStreamParser:
    """Subclasses name the fields and read the `start` payload."""

    platform = ""
    stream_id_key = ""
    # Events that are valid but carry nothing recorded; anything else unknown is "other".
    notices: frozenset[str] = frozenset()
    # The documented layout of a media frame, byte for byte (see fast_media_pattern): such
    # frames skip the general JSON parse (the hot path: 50 frames a second per stream).
    fast_media: re.Pattern | None = None

    def __init__(self) -> None:
        self._state = _BEFORE_START
        self._stream_id: str | None = None
        self._tracks: tuple[str, ...] | None = None

    @property
    def started(self) -> bool:
        return self._state != _BEFORE_START

    def receive_bytes(self, data: bytes) -> MediaEvent:
        raise invalid("binary_frame", f"{self.platform} media frames are JSON text")

    def receive_text(self, data: str) -> MediaEvent:
        if self._state == _STREAMING and self.fast_media is not None \
                and len(data) <= c.MAX_FRAME_BYTES:
            match = self.fast_media.match(data)
            if match is not None:
                # Inline on purpose (hot path); same checks as _media.
                track, chunk, stamp, raw, sid = match.groups()
                if sid != self._stream_id:
                    raise policy("wrong_stream", f"{self.stream_id_key}: not this stream")
                if self._tracks is not None and track not in self._tracks:
                    raise policy("bad_track", "track: not announced in start")
                try:
                    payload = a2b_base64(raw, strict_mode=True)
                except (BinasciiError, ValueError):
                    raise invalid("bad_base64", "payload: not base64") from None
                return MediaChunk(track, payload, int(chunk), int(stamp))
        doc = c.load_frame(data)
        event = doc.get("event")
        state = self._state
        if event == "media":
            if state != _STREAMING:
                raise policy("bad_order", "media outside start..stop")
            return self._media(doc)
        if type(event) is not str:
            raise invalid("bad_field", "event: missing or not a string")
        if state == _STOPPED:
            raise policy("bad_order", "frame after stop")
        if event == "start":
            if state != _BEFORE_START:
                raise policy("bad_order", "second start")
            start = self._start(doc)
            self._state = _STREAMING
            self._stream_id = start.stream_id
            self._tracks = start.tracks
            return start
        if event == "connected":
            if state != _BEFORE_START:
                raise policy("bad_order", "connected after start")
            return StreamNotice("connected")
        if event == "stop":
            if state != _STREAMING:
                raise policy("bad_order", "stop before start")
            self._check_stream(doc)
            self._state = _STOPPED
            return StreamStop()
        if state == _STREAMING:
            self._check_stream(doc)
        return StreamNotice(event if event in self.notices else "other")

    def _check_stream(self, doc: dict[str, Any]) -> None:
        sid = doc.get(self.stream_id_key)
        if sid is not None and sid != self._stream_id:
            raise policy("wrong_stream", f"{self.stream_id_key}: not this stream")

    def _media(self, doc: dict[str, Any]) -> MediaChunk:
        # The hot path (50 frames a second per stream): the common, well-formed case is
        # checked inline; anything unusual goes through the general readers.
        sid = doc.get(self.stream_id_key)
        if sid is not None and sid != self._stream_id:
            raise policy("wrong_stream", f"{self.stream_id_key}: not this stream")
        media = doc.get("media")
        if type(media) is not dict:
            raise invalid("bad_field", "media: missing or not an object")
        track = media.get("track", "inbound")
        if track != "inbound" and track != "outbound":
            track = c.track_name(track)
        if self._tracks is not None and track not in self._tracks:
            raise policy("bad_track", "track: not announced in start")
        raw = media.get("payload")
        if type(raw) is not str:
            raise invalid("bad_field", "payload: missing or not a string")
        try:
            payload = a2b_base64(raw, strict_mode=True)
        except (BinasciiError, ValueError):
            raise invalid("bad_base64", "payload: not base64") from None
        chunk = media.get("chunk")
        if type(chunk) is str and 0 < len(chunk) < 16 and chunk.isdigit() and chunk.isascii():
            chunk = int(chunk)
        else:
            chunk = c.counter(media, "chunk")
        stamp = media.get("timestamp")
        if type(stamp) is str and 0 < len(stamp) < 16 and stamp.isdigit() and stamp.isascii():
            stamp = int(stamp)
        else:
            stamp = c.counter(media, "timestamp")
        return MediaChunk(track, payload, chunk, stamp)

    def _start(self, doc: dict[str, Any]) -> StreamStart:  # pragma: no cover - abstract
        raise NotImplementedError


def fast_media_pattern(sequence_key: str, stream_key: str) -> re.Pattern:
    """`{"event":"media","<seq>":"N","media":{"track":"T","chunk":"N","timestamp":"N",
    "payload":"B64"},"<stream>":"ID"}` with no whitespace: how both platforms document (and
    send) their media frames. Groups: track, chunk, timestamp, payload, stream id."""
    number = r'"([0-9]{1,15})"'
    return re.compile(
        r'\{"event":"media","' + sequence_key + r'":"[0-9]{1,15}","media":\{"track":'
        r'"(inbound|outbound)","chunk":' + number + r',"timestamp":' + number +
        r',"payload":"([A-Za-z0-9+/]*={0,2})"\},"' + stream_key +
        r'":"([A-Za-z0-9_.:-]{1,256})"\}\Z')


def read_tracks(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise invalid("bad_field", "tracks: not a list of one or two tracks")
    tracks = tuple(dict.fromkeys(c.track_name(t) for t in value))
    # Channel order is fixed (inbound first) whatever order the platform listed them in.
    return tuple(t for t in ("inbound", "outbound") if t in tracks)
