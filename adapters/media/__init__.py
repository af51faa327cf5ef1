"""Media-stream protocols, sans-I/O: one WebSocket frame in, one typed event out.

    parser = TwilioMediaParser(account_sid)      # or TelnyxMediaParser(), VonageMediaParser(uuid)
    event = parser.receive_text(frame)           # or receive_bytes(frame)
    # StreamStart | MediaChunk | StreamStop | StreamNotice, or raises MediaProtocolError
    #   with close_code 1007 (not valid data) or 1008 (policy: order, size, identity);
    #   invalid_data(outcome, detail) / policy_violation(outcome, detail) build one

Which parser serves which platform, and how its upgrade is authenticated, is the platform
descriptor's `media_stream` (adapters/<platform>.py; each parser module's `parser_for`).
`ReorderBuffer` puts numbered chunks of one track back in order within a small window.
Nothing here performs I/O, reads the clock or decodes audio.
"""

from ._common import MAX_FRAME_BYTES
from ._events import (
    AMR_WB,
    CLOSE_INVALID_DATA,
    CLOSE_POLICY,
    ENCODINGS,
    G722,
    L16BE,
    L16LE,
    OPUS,
    PCMA,
    PCMU,
    MediaChunk,
    MediaEvent,
    MediaProtocolError,
    StreamNotice,
    StreamStart,
    StreamStop,
)
from ._events import invalid as invalid_data
from ._events import policy as policy_violation
from ._reorder import MAX_GAP, ReorderBuffer
from .telnyx import TelnyxMediaParser
from .twilio import TwilioMediaParser
from .vonage import VonageMediaParser

__all__ = [
    "AMR_WB", "CLOSE_INVALID_DATA", "CLOSE_POLICY", "ENCODINGS", "G722", "L16BE", "L16LE",
    "MAX_FRAME_BYTES", "MAX_GAP", "OPUS", "PCMA", "PCMU", "MediaChunk",
    "MediaEvent", "MediaProtocolError", "ReorderBuffer", "StreamNotice", "StreamStart",
    "StreamStop", "TelnyxMediaParser", "TwilioMediaParser", "VonageMediaParser",
    "invalid_data", "policy_violation",
]
