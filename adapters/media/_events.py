"""What a media-stream parser returns: one typed event per WebSocket frame, or one typed
error that names the close code (RFC 6455 section 7.4.1) the gateway answers with.

Nothing here carries content beyond the audio payload itself: custom parameters, DTMF
digits and every field the gateway does not need are dropped at this boundary."""

from __future__ import annotations

from dataclasses import dataclass

# RFC 6455 section 7.4.1: 1007 "received data within a message that was not consistent
# with the type of the message" (not JSON, not base64, not audio of the announced format);
# 1008 "a message that violates its policy" (authentication, event order, size, limits).
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008

# Canonical encodings of the audio payload (what a decoder must be chosen for).
PCMU = "pcmu"        # G.711 mu-law, 8 bits per sample
PCMA = "pcma"        # G.711 A-law
L16BE = "l16be"      # 16-bit linear, network byte order (RTP L16, RFC 3551 section 4.5.11)
L16LE = "l16le"      # 16-bit linear, little-endian (Vonage WebSocket audio)
G722 = "g722"
OPUS = "opus"
AMR_WB = "amr-wb"
ENCODINGS = (PCMU, PCMA, L16BE, L16LE, G722, OPUS, AMR_WB)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The stream's identity and audio format, from its `start` (or first) frame."""

    platform: str
    stream_id: str
    # The platform's id of the call (Twilio CallSid, Telnyx call_control_id, Vonage uuid).
    call_id: str
    encoding: str
    sample_rate: int
    channels: int
    # The tracks the platform announced ("inbound", "outbound"), or None when it does not
    # say (the gateway then learns them from the first frames).
    tracks: tuple[str, ...] | None = None


@dataclass(slots=True)   # not frozen: built 50 times a second per stream, kept by no one
class MediaChunk:
    """One piece of audio of one track. `sequence` is the per-track chunk number where the
    platform numbers chunks, `timestamp_ms` the position since the stream started."""

    track: str
    payload: bytes
    sequence: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StreamStop:
    """The platform ended the stream on purpose."""


@dataclass(frozen=True, slots=True)
class StreamNotice:
    """A frame that is valid but carries nothing the gateway records (connected, mark,
    dtmf, an event type added after this parser was written). `kind` is a fixed label."""

    kind: str


MediaEvent = StreamStart | MediaChunk | StreamStop | StreamNotice


class MediaProtocolError(Exception):
    """A frame the gateway will not accept. `close_code` is what the socket is closed with;
    `outcome` is a fixed metrics label; the message names a field at most, never a value."""

    def __init__(self, close_code: int, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.close_code = close_code
        self.outcome = outcome


def invalid(outcome: str, detail: str) -> MediaProtocolError:
    return MediaProtocolError(CLOSE_INVALID_DATA, outcome, detail)


def policy(outcome: str, detail: str) -> MediaProtocolError:
    return MediaProtocolError(CLOSE_POLICY, outcome, detail)
