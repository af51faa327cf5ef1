"""The sans-I/O media parsers and the reorder buffer: documented frames, event order, and
hypothesis garbage (any input yields an event or a MediaProtocolError, nothing else)."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.media import (
    MAX_GAP,
    MediaChunk,
    MediaProtocolError,
    ReorderBuffer,
    StreamNotice,
    StreamStart,
    StreamStop,
    TelnyxMediaParser,
    TwilioMediaParser,
    VonageMediaParser,
)

# Twilio's documented messages (twilio.com/docs/voice/media-streams/websocket-messages).
TWILIO_START = {"event": "start", "sequenceNumber": "1",
                "start": {"accountSid": "AC123", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
                          "callSid": "CA123", "tracks": ["inbound", "outbound"],
                          "customParameters": {"FirstName": "Jane"},
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                          "channels": 1}},
                "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"}
TWILIO_MEDIA = {"event": "media", "sequenceNumber": "3",
                "media": {"track": "outbound", "chunk": "1", "timestamp": "5",
                          "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDBUt"},
                "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"}
TELNYX_START = {"event": "start", "sequence_number": "1",
                "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                          "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9B",
                          "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
                          "media_format": {"encoding": "PCMU", "sample_rate": 8000,
                                           "channels": 1}},
                "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"}


def test_twilio_documented_sequence():
    p = TwilioMediaParser("AC123")
    assert p.receive_text(json.dumps({"event": "connected", "protocol": "Call",
                                      "version": "1.0.0"})) == StreamNotice("connected")
    start = p.receive_text(json.dumps(TWILIO_START))
    assert start == StreamStart("twilio", "MZ18ad3ab5a668481ce02b83e7395059f0", "CA123",
                                "pcmu", 8000, 1, ("inbound", "outbound"))
    chunk = p.receive_text(json.dumps(TWILIO_MEDIA))
    assert chunk == MediaChunk("outbound", base64.b64decode(TWILIO_MEDIA["media"]["payload"]),
                               1, 5)
    assert p.receive_text(json.dumps({"event": "mark", "streamSid": TWILIO_START["streamSid"],
                                      "mark": {"name": "x"}})) == StreamNotice("mark")
    assert p.receive_text(json.dumps({"event": "dtmf", "dtmf": {"digit": "1"}})).kind == "dtmf"
    assert p.receive_text(json.dumps({"event": "stop", "stop": {}})) == StreamStop()
    with pytest.raises(MediaProtocolError) as err:
        p.receive_text(json.dumps(TWILIO_MEDIA))
    assert err.value.close_code == 1008 and err.value.outcome == "bad_order"


@pytest.mark.parametrize("frames,code,outcome", [
    ([TWILIO_MEDIA], 1008, "bad_order"),
    ([TWILIO_START, TWILIO_START], 1008, "bad_order"),
    ([TWILIO_START, {"event": "connected"}], 1008, "bad_order"),
    ([{"event": "stop"}], 1008, "bad_order"),
    ([TWILIO_START, {**TWILIO_MEDIA, "streamSid": "MZother"}], 1008, "wrong_stream"),
    ([TWILIO_START, {**TWILIO_MEDIA, "media": {**TWILIO_MEDIA["media"], "payload": "%%"}}],
     1007, "bad_base64"),
    ([TWILIO_START, {**TWILIO_MEDIA, "media": {**TWILIO_MEDIA["media"], "chunk": "x1"}}],
     1007, "bad_field"),
    ([TWILIO_START, {**TWILIO_MEDIA, "media": {**TWILIO_MEDIA["media"], "track": "both"}}],
     1007, "bad_field"),
    ([{**TWILIO_START, "start": {**TWILIO_START["start"], "accountSid": "ACother"}}],
     1008, "wrong_account"),
    ([{**TWILIO_START, "start": {**TWILIO_START["start"],
                                 "mediaFormat": {"encoding": "audio/opus"}}}], 1008, "unsupported"),
    ([{**TWILIO_START, "start": {**TWILIO_START["start"], "callSid": 5}}], 1007, "bad_field"),
])
def test_twilio_rejections(frames, code, outcome):
    p = TwilioMediaParser("AC123")
    with pytest.raises(MediaProtocolError) as err:
        for frame in frames:
            p.receive_text(json.dumps(frame))
    assert (err.value.close_code, err.value.outcome) == (code, outcome)
    # The message never echoes what was sent.
    assert "ACother" not in str(err.value) and "%%" not in str(err.value)


def test_twilio_single_track_and_limits():
    p = TwilioMediaParser()
    start = {**TWILIO_START, "start": {**TWILIO_START["start"], "tracks": ["inbound_track"]}}
    assert p.receive_text(json.dumps(start)).tracks == ("inbound",)
    with pytest.raises(MediaProtocolError) as err:
        p.receive_text(json.dumps(TWILIO_MEDIA))            # outbound was not announced
    assert err.value.outcome == "bad_track"
    with pytest.raises(MediaProtocolError) as err:
        p.receive_text(" " * (64 * 1024 + 1))
    assert (err.value.close_code, err.value.outcome) == (1008, "oversized")
    with pytest.raises(MediaProtocolError) as err:
        p.receive_bytes(b"\x00")
    assert err.value.close_code == 1007


def test_telnyx_documented_start_and_encodings():
    p = TelnyxMediaParser()
    start = p.receive_text(json.dumps(TELNYX_START))
    assert (start.call_id, start.stream_id, start.encoding, start.tracks) == (
        TELNYX_START["start"]["call_control_id"], TELNYX_START["stream_id"], "pcmu", None)
    for raw, canonical in (("PCMA", "pcma"), ("L16", "l16be"), ("G722", "g722"),
                           ("OPUS", "opus"), ("AMR-WB", "amr-wb")):
        fmt = {**TELNYX_START["start"]["media_format"], "encoding": raw, "sample_rate": 16000}
        doc = {**TELNYX_START, "start": {**TELNYX_START["start"], "media_format": fmt}}
        assert TelnyxMediaParser().receive_text(json.dumps(doc)).encoding == canonical
    doc = {**TELNYX_START, "start": {**TELNYX_START["start"],
                                     "media_format": {"encoding": "SPEEX"}}}
    with pytest.raises(MediaProtocolError):
        TelnyxMediaParser().receive_text(json.dumps(doc))
    assert p.receive_text(json.dumps({"event": "error", "payload": {"code": 1}})).kind == "error"


def test_vonage_first_frame_and_audio():
    p = VonageMediaParser()
    start = p.receive_text(json.dumps({"event": "websocket:connected",
                                       "content-type": "audio/l16;rate=16000", "uuid": "abc"}))
    assert (start.call_id, start.sample_rate, start.encoding) == ("abc", 16000, "l16le")
    assert p.receive_bytes(b"\x00\x01" * 320) == MediaChunk("inbound", b"\x00\x01" * 320)
    assert p.receive_text('{"event": "websocket:dtmf"}') == StreamNotice("other")
    with pytest.raises(MediaProtocolError):
        p.receive_text("nope")
    with pytest.raises(MediaProtocolError):
        VonageMediaParser().receive_text(json.dumps(
            {"event": "websocket:connected", "content-type": "audio/l16;rate=44100", "uuid": "a"}))
    assert VonageMediaParser("hint").receive_text(
        '{"event": "websocket:connected"}').call_id == "hint"


# -- hypothesis: garbage never escapes as anything but MediaProtocolError -----------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=4),
    max_leaves=20)
field_names = st.sampled_from(["event", "start", "media", "stop", "streamSid", "stream_id",
                               "payload", "track", "chunk", "timestamp", "callSid",
                               "call_control_id", "tracks", "mediaFormat", "media_format",
                               "encoding", "sampleRate", "sample_rate", "channels"])
events = st.sampled_from(["connected", "start", "media", "stop", "mark", "dtmf", "error", "x"])
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.dictionaries(field_names, json_values, max_size=6).map(json.dumps),
    st.builds(lambda e, d: json.dumps({"event": e, **d}), events,
              st.dictionaries(field_names, json_values | st.dictionaries(field_names, json_values,
                                                                         max_size=5),
                              max_size=5)),
)


def _feed(parser, sequence):
    for frame in sequence:
        try:
            event = parser.receive_text(frame) if isinstance(frame, str) else \
                parser.receive_bytes(frame)
        except MediaProtocolError as exc:
            assert exc.close_code in (1007, 1008)
            return
        assert isinstance(event, (StreamStart, MediaChunk, StreamStop, StreamNotice))


@settings(max_examples=50, deadline=None)
@given(st.lists(frames | st.binary(max_size=64), max_size=8))
def test_garbage_twilio_telnyx(sequence):
    _feed(TwilioMediaParser("AC1"), [json.dumps(TWILIO_START)] + sequence)
    _feed(TwilioMediaParser(), sequence)
    _feed(TelnyxMediaParser(), [json.dumps(TELNYX_START)] + sequence)
    _feed(TelnyxMediaParser(), sequence)


@settings(max_examples=50, deadline=None)
@given(st.lists(frames | st.binary(max_size=64), max_size=8))
def test_garbage_vonage(sequence):
    _feed(VonageMediaParser(), sequence)
    _feed(VonageMediaParser("u"), ['{"event": "websocket:connected"}'] + sequence)


# -- reorder buffer ---------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200), st.integers(0, 8), st.data())
def test_reorder_within_the_window_restores_order_and_loses_nothing(n, window, data):
    order = list(range(1, n + 1))
    # Displace each chunk by at most `window` places: every one still makes it.
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    keyed = sorted(order, key=lambda s: s + rng.uniform(0, window))
    buf = ReorderBuffer(window)
    out = [item for seq in keyed for _, item in buf.push(seq, seq)] + \
        [item for _, item in buf.flush()]
    assert out == order
    assert buf.lost == buf.late == buf.duplicates == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=300), st.integers(0, 6))
def test_reorder_accounts_for_every_chunk(arrivals, window):
    buf = ReorderBuffer(window)
    released = []
    for seq in arrivals:
        released += buf.push(seq, seq)
    released += buf.flush()
    items = [item for _, item in released]
    assert items == sorted(items) and len(set(items)) == len(items)     # in order, once
    assert buf.received == len(arrivals)
    assert len(items) + buf.late + buf.duplicates == len(arrivals)
    if items:
        # Every hole between 1 and the last released chunk is either lost or was late.
        assert sum(lost for lost, _ in released) == buf.lost
        assert items[-1] - len(items) == buf.lost


def test_reorder_refuses_absurd_jumps():
    buf = ReorderBuffer(5)
    buf.push(1, 1)
    with pytest.raises(MediaProtocolError) as err:
        buf.push(2 + MAX_GAP + 1, 0)
    assert err.value.close_code == 1008


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["inbound", "outbound"]), st.integers(0, 10**15 - 1),
       st.integers(0, 10**15 - 1), st.binary(max_size=400), st.booleans())
def test_fast_path_reads_what_the_full_parse_reads(track, chunk, stamp, audio, telnyx):
    """Frames in the documented byte layout take a regex fast path; the same frame written
    with other spacing takes json.loads. Both must give the same event."""
    if telnyx:
        make, start, seq_key, sid_key = TelnyxMediaParser, TELNYX_START, "sequence_number", \
            "stream_id"
        sid = TELNYX_START["stream_id"]
    else:
        make, start, seq_key, sid_key = lambda: TwilioMediaParser("AC123"), TWILIO_START, \
            "sequenceNumber", "streamSid"
        sid = TWILIO_START["streamSid"]
    doc = {"event": "media", seq_key: "7", "media": {
        "track": track, "chunk": str(chunk), "timestamp": str(stamp),
        "payload": base64.b64encode(audio).decode()}, sid_key: sid}
    compact, spaced = json.dumps(doc, separators=(",", ":")), json.dumps(doc)
    fast, slow = make(), make()
    assert fast.fast_media.match(compact) and not fast.fast_media.match(spaced)
    fast.receive_text(json.dumps(start))
    slow.receive_text(json.dumps(start))
    assert fast.receive_text(compact) == slow.receive_text(spaced) == MediaChunk(
        track, audio, chunk, stamp)
    # A near miss (another stream, bad base64) is refused by both paths alike.
    for bad in (compact.replace(sid, sid[:-1] + "Z"), compact.replace('"payload":"',
                                                                       '"payload":"A')):
        codes = []
        for text in (bad, json.dumps(json.loads(bad))):
            try:
                fast.receive_text(text)
                codes.append(None)
            except MediaProtocolError as exc:
                codes.append(exc.outcome)
        assert codes[0] == codes[1]
