"""Stats computed at ingest and the pipeline's placement of audio, checked against values
computed independently here (closed-form levels of sines, sample counts)."""

from __future__ import annotations

import array
import io
import math
import wave

import pytest

from gateway.media import wav
from gateway.media._audioop import audioop
from gateway.media.codecs import Decoder, decoder_for
from gateway.media.pipeline import MAX_SKEW_MS, AudioPipeline
from gateway.media.stats import ENVELOPE_MAX_POINTS, ChannelStats

from .helpers import mulaw_frames, sine


def _pipeline(tracks=("inbound",), encoding="l16le", rate=8000, sequenced=True, window=5,
              keep=False):
    return AudioPipeline(lambda: decoder_for(encoding, rate, g711_as_received=keep),
                         tracks=tracks, sequenced=sequenced, reorder_window=window,
                         silence_threshold_dbfs=-50.0)


def test_sine_levels_and_duration():
    p = _pipeline()
    amp = 16384                       # -6.02 dBFS peak; RMS a further 3.01 dB down
    for i in range(100):
        p.push("inbound", sine(1000, 160, 8000, amp, i * 160), i + 1, i * 20)
    p.finish()
    s = p.stats.to_dict()
    ch = s["per_channel"][0]
    assert s["duration_seconds"] == 2.0 and s["channels"] == 1
    assert ch["peak_dbfs"] == pytest.approx(20 * math.log10(amp / 32768), abs=0.01)
    assert ch["rms_dbfs"] == pytest.approx(20 * math.log10(amp / math.sqrt(2) / 32768), abs=0.05)
    assert ch["clipped_ratio"] == 0 and abs(ch["dc_offset"]) < 1e-3
    assert ch["silence_ratio"] == 0
    assert s["envelope"]["resolution_seconds"] == 1.0
    assert len(s["envelope"]["rms_dbfs"][0]) == 2
    assert s["one_way_audio"] is None


def test_clipping_dc_offset_and_silence():
    p = _pipeline()
    clipped = array.array("h", [32767, -32768] * 80).tobytes()            # every sample clipped
    offset = array.array("h", [3277] * 160).tobytes()                      # +0.1 full scale
    for i in range(10):
        p.push("inbound", clipped, 3 * i + 1, None)
        p.push("inbound", offset, 3 * i + 2, None)
        p.push("inbound", bytes(320), 3 * i + 3, None)
    p.finish()
    ch = p.stats.to_dict()["per_channel"][0]
    assert ch["clipped_ratio"] == pytest.approx(1 / 3, abs=1e-4)
    assert ch["dc_offset"] == pytest.approx((0.1 + 0 - 0.5 / 32768) / 3, abs=1e-3)
    assert ch["silence_ratio"] == pytest.approx(1 / 3, abs=1e-4)


def test_mulaw_clip_level_is_the_codec_maximum():
    p = _pipeline(encoding="pcmu")
    p.push("inbound", b"\x80\x00" * 80, 1, 0)        # the two extreme mu-law codes
    p.push("inbound", mulaw_frames(440, 1)[0], 2, 20)
    p.finish()
    assert p.stats.to_dict()["per_channel"][0]["clipped_ratio"] == 0.5


def test_one_way_audio_and_channel_fill():
    p = _pipeline(tracks=("inbound", "outbound"))
    for i in range(150):
        p.push("inbound", sine(440, 160, 8000, 8000, i * 160), i + 1, i * 20)
        p.push("outbound", bytes(320), i + 1, i * 20)
    p.finish()
    s = p.stats.to_dict()
    assert s["one_way_audio"] is True
    w = wave.open(io.BytesIO(wav.header(1, 2, 8000, len(p.out)) + bytes(p.out)))
    assert (w.getnchannels(), w.getnframes()) == (2, 150 * 160)


def test_a_late_starting_track_is_aligned_by_timestamp():
    p = _pipeline(tracks=("inbound", "outbound"))
    for i in range(100):
        p.push("inbound", sine(440, 160, 8000, 8000, i * 160), i + 1, i * 20)
    for i in range(50):                                # starts 1 s in
        p.push("outbound", sine(880, 160, 8000, 4000, i * 160), i + 1, 1000 + i * 20)
    p.finish()
    out = bytes(p.out)
    right = audioop.tomono(out, 2, 0, 1)
    assert len(right) == 100 * 320
    assert right[:8000 * 2] == bytes(8000 * 2)                      # silent first second
    assert right[8000 * 2:8000 * 2 + 320] == sine(880, 160, 8000, 4000)
    assert p.stats.to_dict()["silence_filled_seconds"] == 1.0


def test_a_silent_track_is_padded_within_the_skew_bound():
    p = _pipeline(tracks=("inbound", "outbound"))
    held = []
    for i in range(500):                               # 10 s of inbound, outbound silent
        p.push("inbound", sine(440, 160, 8000, 8000, i * 160), i + 1, i * 20)
        held.append(len(p._order[0].pending))
    assert max(held) <= (MAX_SKEW_MS * 8000 // 1000 + 160) * 2      # bounded, not 10 s
    # The outbound track then sends its (late) first seconds: dropped as late, not skewed.
    for i in range(10):
        p.push("outbound", sine(880, 160, 8000, 4000, i * 160), i + 1, i * 20)
    p.finish()
    assert len(p.out) == 500 * 320 * 2
    assert p.stats.to_dict()["frames_late"] == 10


def test_g711_as_received_keeps_the_bytes_and_fills_with_mulaw_silence():
    p = _pipeline(encoding="pcmu", keep=True)
    frames = mulaw_frames(440, 10)
    for i, frame in enumerate(frames):
        if i != 4:
            p.push("inbound", frame, i + 1, i * 20)
    p.finish()
    assert bytes(p.out) == b"".join(frames[:4]) + b"\xff" * 160 + b"".join(frames[5:])
    assert p.format() == {"wav_format": 7, "channels": 1, "sample_rate": 8000,
                          "sample_width": 1}


def test_timestamp_jumps_are_capped_and_rebased():
    p = _pipeline()
    p.push("inbound", sine(440, 160, 8000), 1, 0)
    p.push("inbound", sine(440, 160, 8000), 2, 10_000_000)        # 2.7 hours later
    p.push("inbound", sine(440, 160, 8000), 3, 10_000_020)
    p.finish()
    s = p.stats.to_dict()
    assert s["timestamp_jumps"] == 1 and s["silence_filled_seconds"] == 60.0
    assert len(p.out) == (3 * 160 + 60 * 8000) * 2


def test_envelope_memory_is_bounded_for_long_calls():
    ch = ChannelStats(8000, 32767, 100)
    frame = sine(440, 160, 8000)
    for _ in range(ENVELOPE_MAX_POINTS * 50 * 2 - 50 * 10):      # just under 2 hours
        ch.add_pcm(frame)
    assert len(ch.envelope) <= ENVELOPE_MAX_POINTS
    assert ch.resolution_seconds == 2.0
    points = ch.envelope_dbfs()
    assert all(abs(v - points[0]) < 0.1 for v in points)


def test_layout_is_learned_from_the_first_frames():
    p = _pipeline(tracks=None)
    for i in range(30):
        p.push("inbound", sine(440, 160, 8000, start=i * 160), i + 1, i * 20)
    p.push("outbound", sine(440, 160, 8000), 1, 0)       # too late to make it stereo
    p.finish()
    assert p.channels == 1 and p.frames_ignored == 1


def test_wav_headers_read_back():
    for fmt, width in ((wav.WAVE_FORMAT_PCM, 2),):
        data = wav.header(fmt, 1, 16000, 3200) + bytes(3200)
        w = wave.open(io.BytesIO(data))
        assert (w.getframerate(), w.getsampwidth(), w.getnframes()) == (16000, width, 1600)
    with pytest.raises(ValueError):
        wav.header(1, 1, 8000, 2**32)


def test_identity_decoder_refuses_odd_lengths():
    from adapters.media import MediaProtocolError
    with pytest.raises(MediaProtocolError):
        Decoder(8000).decode(b"\x00")
