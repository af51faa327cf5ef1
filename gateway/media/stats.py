"""Technical stats of a recording, computed on the PCM as it streams (never by re-reading
the audio): per channel RMS and peak level, clipped-sample ratio, DC offset, silence ratio
and a level envelope no finer than one second; per stream duration, one-way-audio flag,
longest gap between frames, and frames lost / reordered / late from sequence numbers.

Cost per frame and channel: three audioop calls (rms, max, avg) and a few additions. No
content is kept: the envelope is one mean-square level per second at most, and when a
call outgrows ENVELOPE_MAX_POINTS the buckets are merged pairwise (2 s, 4 s, ...), so
memory stays bounded whatever the call length.

Levels are dBFS relative to a full-scale square wave (32768): a full-scale sine is about
-3 dBFS. Digital silence has no finite level; it is reported as DB_FLOOR.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.media._audioop import audioop

FULL_SCALE = 32768.0
# 16-bit PCM resolves about 96 dB below full scale; anything lower reads as this floor.
DB_FLOOR = -100.0
# One hour of 1-second points; longer calls get 2 s, 4 s, ... buckets (bounded memory).
ENVELOPE_MAX_POINTS = 3600
# One-way audio: one channel carries (almost) nothing while the other carries speech.
# "Nothing" is under 1% of the time above the silence threshold; "speech" is at least 5%
# (a listener who mostly listens still talks more than that on a real call).
ONE_WAY_QUIET = 0.01
ONE_WAY_ACTIVE = 0.05


def dbfs(linear: float) -> float:
    if linear <= 0:
        return DB_FLOOR
    return max(DB_FLOOR, round(20 * math.log10(linear / FULL_SCALE), 2))


class ChannelStats:
    __slots__ = ("samples", "sum_sq", "peak", "clipped", "total", "silent", "clip_level",
                 "silence_level", "_rate", "_bucket", "_bucket_sq", "_bucket_n", "envelope")

    def __init__(self, rate: int, clip_level: int, silence_level: float) -> None:
        self.samples = 0
        self.sum_sq = 0.0
        self.peak = 0
        self.clipped = 0
        self.total = 0          # sum of samples, for the DC offset
        self.silent = 0         # samples in frames whose RMS is under the silence level
        self.clip_level = clip_level
        self.silence_level = silence_level
        self._rate = rate
        self._bucket = rate     # samples per envelope bucket (doubles on compaction)
        self._bucket_sq = 0.0
        self._bucket_n = 0
        self.envelope: list[float] = []   # mean square per completed bucket

    def add_pcm(self, pcm: bytes) -> None:
        n = len(pcm) >> 1
        if not n:
            return
        rms = audioop.rms(pcm, 2)
        energy = float(rms * rms * n)
        peak = audioop.max(pcm, 2)
        if peak > self.peak:
            self.peak = peak
        if peak >= self.clip_level:
            level = self.clip_level
            self.clipped += sum(1 for s in memoryview(pcm).cast("h") if s >= level or -s >= level)
        self.total += audioop.avg(pcm, 2) * n
        if rms < self.silence_level:
            self.silent += n
        self.sum_sq += energy
        self.samples += n
        if self._bucket_n + n < self._bucket:
            self._bucket_sq += energy
            self._bucket_n += n
        else:
            self._envelope(energy, n)

    def add_silence(self, n: int) -> None:
        if n <= 0:
            return
        self.samples += n
        self.silent += n
        self._envelope(0.0, n)

    def _envelope(self, energy: float, n: int) -> None:
        # A frame is attributed to the bucket it starts in (frames are 20 ms; buckets 1 s).
        self._bucket_sq += energy
        self._bucket_n += n
        while self._bucket_n >= self._bucket:
            # A long fill spans buckets: split its (uniform) energy by sample count.
            over = self._bucket_n - self._bucket
            share = energy * over / n if n and over else 0.0
            self.envelope.append((self._bucket_sq - share) / self._bucket)
            self._bucket_sq = share
            self._bucket_n = over
            if len(self.envelope) > ENVELOPE_MAX_POINTS:
                pairs = self.envelope
                self.envelope = [(pairs[i] + pairs[i + 1]) / 2 if i + 1 < len(pairs)
                                 else pairs[i] for i in range(0, len(pairs), 2)]
                self._bucket *= 2

    def summary(self) -> dict[str, Any]:
        n = self.samples
        return {
            "rms_dbfs": dbfs(math.sqrt(self.sum_sq / n)) if n else DB_FLOOR,
            "peak_dbfs": dbfs(self.peak),
            "clipped_ratio": round(self.clipped / n, 6) if n else 0.0,
            "dc_offset": round(self.total / n / FULL_SCALE, 6) if n else 0.0,
            "silence_ratio": round(self.silent / n, 4) if n else 1.0,
        }

    def envelope_dbfs(self) -> list[float]:
        points = [dbfs(math.sqrt(v)) for v in self.envelope]
        if self._bucket_n:
            points.append(dbfs(math.sqrt(self._bucket_sq / self._bucket_n)))
        return points

    @property
    def resolution_seconds(self) -> float:
        return self._bucket / self._rate


class StreamStats:
    """Everything the recording's `stats` column gets, for one stream."""

    def __init__(self, *, codec: str, sample_rate: int, channel_names: tuple[str, ...],
                 clip_level: int, silence_threshold_dbfs: float) -> None:
        self.codec = codec
        self.sample_rate = sample_rate
        self.channel_names = channel_names
        level = FULL_SCALE * 10 ** (silence_threshold_dbfs / 20)
        self.channels = [ChannelStats(sample_rate, clip_level, level) for _ in channel_names]
        self.frames_received = 0
        self.frames_lost = 0
        self.frames_reordered = 0
        self.frames_late = 0
        self.frames_duplicated = 0
        self.silence_filled_samples = 0
        self.timestamp_jumps = 0
        self.longest_gap_ms = 0.0
        self.frames_lost_known = True   # False when nothing tells (Vonage)
        self.sequenced = True           # chunks carry sequence numbers (reordering visible)

    def one_way_audio(self) -> bool | None:
        if len(self.channels) != 2 or not self.channels[0].samples:
            return None
        active = [1 - ch.silent / ch.samples if ch.samples else 0.0 for ch in self.channels]
        return min(active) < ONE_WAY_QUIET and max(active) >= ONE_WAY_ACTIVE

    def to_dict(self, stored: dict[str, Any] | None = None, *, end_reason: str | None = None
                ) -> dict[str, Any]:
        samples = max((ch.samples for ch in self.channels), default=0)
        resolution = self.channels[0].resolution_seconds if self.channels else 1.0
        out: dict[str, Any] = {
            "duration_seconds": round(samples / self.sample_rate, 3),
            "codec": self.codec,
            "sample_rate": self.sample_rate,
            "channels": len(self.channels),
            "channel_names": list(self.channel_names),
            "per_channel": [ch.summary() for ch in self.channels],
            "one_way_audio": self.one_way_audio(),
            "longest_gap_ms": round(self.longest_gap_ms, 1),
            "frames_received": self.frames_received,
            "frames_lost": self.frames_lost if self.frames_lost_known else None,
            "frames_reordered": self.frames_reordered if self.sequenced else None,
            "frames_late": self.frames_late,
            "frames_duplicated": self.frames_duplicated,
            "silence_filled_seconds": round(self.silence_filled_samples / self.sample_rate, 3),
            "timestamp_jumps": self.timestamp_jumps,
            "envelope": {"resolution_seconds": resolution,
                         "rms_dbfs": [ch.envelope_dbfs() for ch in self.channels]},
        }
        if stored is not None:
            out["stored"] = stored
        if end_reason is not None:
            out["end_reason"] = end_reason
        return out
