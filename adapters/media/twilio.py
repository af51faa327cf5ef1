"""Twilio Media Streams (PROTOCOLS.md, "Twilio"; twilio.com/docs/voice/media-streams).

Frames are JSON text: `connected`, `start` (`start.streamSid, accountSid, callSid, tracks,
mediaFormat{encoding "audio/x-mulaw", sampleRate 8000, channels 1}`), `media`
(`media.track, chunk, timestamp, payload`), `mark`, `dtmf`, `stop`. Numbers are strings.
`customParameters` may carry anything a tenant put in TwiML: they are never read.
The upgrade itself is authenticated by `X-Twilio-Signature` (adapters.twilio.verify over
the wss:// URL with no parameters); the account in `start` must be the integration's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _common as c
from ._events import PCMU, StreamStart, invalid, policy
from ._jsonstream import JsonStreamParser, fast_media_pattern, read_tracks

NAME = "twilio"
# Twilio streams 8 kHz mono mu-law and nothing else (mediaFormat is informative).
ENCODINGS = {"audio/x-mulaw": PCMU}


class TwilioMediaParser(JsonStreamParser):
    platform = NAME
    stream_id_key = "streamSid"
    notices = frozenset({"mark", "dtmf"})
    fast_media = fast_media_pattern("sequenceNumber", "streamSid")

    def __init__(self, account_sid: str | None = None) -> None:
        super().__init__()
        self._account_sid = account_sid

    def _start(self, doc: dict[str, Any]) -> StreamStart:
        start = c.obj(doc, "start")
        stream_id = c.ident(start, "streamSid", required=False) or c.ident(doc, "streamSid")
        call_id = c.ident(start, "callSid")
        account = c.ident(start, "accountSid", required=False)
        if self._account_sid is not None and account is not None and account != self._account_sid:
            raise policy("wrong_account", "accountSid: not this integration's account")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise invalid("bad_field", "mediaFormat: not an object")
        encoding = ENCODINGS.get(fmt.get("encoding", "audio/x-mulaw"))
        if encoding is None:
            raise policy("unsupported", "mediaFormat.encoding: not supported")
        rate = c.positive_int(fmt, "sampleRate", 8000, 8000)
        channels = c.positive_int(fmt, "channels", 1, 1)
        return StreamStart(NAME, stream_id, call_id, encoding, rate, channels,
                           read_tracks(start.get("tracks")) or ("inbound",))


def parser_for(credentials: Mapping[str, Any], query: Mapping[str, str]) -> TwilioMediaParser:
    """The parser for one connection: `start.accountSid` must be the integration's."""
    return TwilioMediaParser(credentials.get("account_sid"))
