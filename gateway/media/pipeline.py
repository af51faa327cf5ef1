"""From numbered, timestamped chunks of one or two tracks to the bytes of one WAV data
chunk, computing the stats on the way. Pure: no I/O, no clock.

Per track: chunks are put back in order (ReorderBuffer, when numbered), decoded to PCM for
the stats, and placed on the track's timeline: a hole of lost chunks, or a timestamp
further ahead than one frame, becomes silence (counted); a track that starts late starts
with silence. Two tracks are interleaved sample by sample into two channels (inbound
first); when one runs more than MAX_SKEW_MS ahead of the other (it sends, the other does
not), the quiet one is padded with silence so memory stays bounded, and chunks of the
padded track that then arrive behind its timeline are dropped as late (up to the padding).

When the platform does not announce its tracks (Telnyx), the first PREROLL_FRAMES decide:
two tracks seen -> two channels, else one; chunks of a track outside the layout are
counted and dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.media import ReorderBuffer
from gateway.media._audioop import audioop
from gateway.media.codecs import Decoder
from gateway.media.stats import StreamStats

# A track more than this far ahead of the other gets the other padded: platforms send both
# tracks in real time, so 2 s is far beyond jitter while bounding what is held per stream.
MAX_SKEW_MS = 2000
# A single hole or timestamp jump is filled with at most this much silence; beyond it the
# timeline is rebased (counted as a timestamp jump). Pairs with adapters.media.MAX_GAP.
MAX_FILL_MS = 60_000
# Half a second of both_tracks streaming shows both tracks (they start together).
PREROLL_FRAMES = 25
TRACK_ORDER = ("inbound", "outbound")


class _Track:
    __slots__ = ("name", "index", "decoder", "decode", "reorder", "position", "last_n",
                 "ts_base", "pending", "debt", "stats")

    def __init__(self, name: str, index: int, decoder: Decoder, reorder: ReorderBuffer | None,
                 stats) -> None:
        self.name = name
        self.index = index
        self.decoder = decoder
        self.decode = decoder.decode
        self.reorder = reorder
        self.position = 0        # samples placed on this track's timeline
        self.last_n = 0          # samples in the last placed chunk (fills lost chunks)
        self.ts_base = 0         # ms subtracted from timestamps after a rebase
        self.pending = bytearray()   # stored bytes waiting for the other channel
        self.debt = 0            # samples of mixer padding late chunks may still cover
        self.stats = stats


class AudioPipeline:
    def __init__(self, make_decoder: Callable[[], Decoder], *, tracks: tuple[str, ...] | None,
                 sequenced: bool, reorder_window: int, silence_threshold_dbfs: float) -> None:
        self._make_decoder = make_decoder
        probe = make_decoder()
        self.rate = probe.rate
        self.width = probe.store_width
        self.wav_format = probe.wav_format
        self.codec = probe.name
        self._silence = bytes([probe.silence_byte])
        self._clip = probe.clip_level
        self._first_decoder: Decoder | None = probe
        self._sequenced = sequenced
        self._window = reorder_window
        self._threshold = silence_threshold_dbfs
        self._max_skew = MAX_SKEW_MS * self.rate // 1000 * self.width
        self._max_fill = MAX_FILL_MS * self.rate // 1000
        self._tracks: dict[str, _Track] = {}
        self._order: list[_Track] = []
        self._mono = True
        self._preroll: list[tuple] | None = [] if tracks is None else None
        self.frames_ignored = 0
        self.frames_received = 0
        self._late_padded = 0
        # Loss known from outside (WebRTC: RTCP packetsLost) when chunks are not numbered.
        self.external_loss: int | None = None
        self.out = bytearray()   # stored bytes ready to be written, in order
        self.stats: StreamStats | None = None
        if tracks is not None:
            self._layout(tracks)

    # -- layout -------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return len(self._order) or 1

    def _layout(self, tracks: tuple[str, ...]) -> None:
        names = tuple(t for t in TRACK_ORDER if t in tracks) + tuple(
            t for t in tracks if t not in TRACK_ORDER)
        names = names[:2] or ("inbound",)
        self.stats = StreamStats(codec=self.codec, sample_rate=self.rate, channel_names=names,
                                 clip_level=self._clip, silence_threshold_dbfs=self._threshold)
        for i, name in enumerate(names):
            decoder = self._first_decoder or self._make_decoder()
            self._first_decoder = None
            reorder = ReorderBuffer(self._window) if self._sequenced else None
            track = _Track(name, i, decoder, reorder, self.stats.channels[i])
            self._tracks[name] = track
            self._order.append(track)
        self._mono = len(self._order) == 1

    def _decide(self) -> None:
        frames, self._preroll = self._preroll or [], None
        seen = tuple(dict.fromkeys(f[0] for f in frames))
        self._layout(seen or ("inbound",))
        for frame in frames:
            self._push(*frame)

    # -- input --------------------------------------------------------------------------
    def push(self, track: str, payload: bytes, sequence: int | None = None,
             timestamp_ms: int | None = None, position: int | None = None) -> None:
        """Add one chunk. `position` (samples) may stand in for `timestamp_ms`."""
        self.frames_received += 1
        if self._preroll is not None:
            self._preroll.append((track, payload, sequence, timestamp_ms, position))
            if len(self._preroll) >= PREROLL_FRAMES or len({f[0] for f in self._preroll}) > 1:
                self._decide()
            return
        self._push(track, payload, sequence, timestamp_ms, position)

    def _push(self, track: str, payload: bytes, sequence: int | None,
              timestamp_ms: int | None, position: int | None) -> None:
        t = self._tracks.get(track)
        if t is None:
            self.frames_ignored += 1
            return
        if timestamp_ms is not None and position is None:
            position = (timestamp_ms - t.ts_base) * self.rate // 1000
        reorder = t.reorder
        if reorder is not None and sequence is not None:
            if reorder.next_in_order(sequence):
                self._place(t, payload, position, timestamp_ms, 0)
                return
            for lost, (p, pos, ts) in reorder.push(sequence, (payload, position, timestamp_ms)):
                self._place(t, p, pos, ts, lost)
        else:
            self._place(t, payload, position, timestamp_ms, 0)

    def _place(self, t: _Track, payload: bytes, target: int | None, ts: int | None,
               lost: int) -> None:
        pcm = t.decode(payload)
        n = len(pcm) >> 1
        if not n:
            return
        fill = lost * t.last_n if lost else 0
        if target is not None:
            gap = target - (t.position + fill)
            if gap > n:
                fill += gap
            elif gap < -n and t.debt > 0:
                # Behind the timeline because the mixer padded this track: late, dropped.
                t.debt -= n
                self._late_padded += 1
                return
        if fill:
            if fill > self._max_fill:
                # A jump no loss explains: fill the cap, rebase the rest of the timeline.
                if ts is not None:
                    t.ts_base += (fill - self._max_fill) * 1000 // self.rate
                fill = self._max_fill
                self.stats.timestamp_jumps += 1
            self._silence_fill(t, fill)
        t.last_n = n
        t.position += n
        t.stats.add_pcm(pcm)
        stored = payload if self.width == 1 else pcm
        if self._mono:
            self.out += stored
        else:
            t.pending += stored
            self._drain()

    def _silence_fill(self, t: _Track, n: int) -> None:
        t.position += n
        t.stats.add_silence(n)
        self.stats.silence_filled_samples += n
        if len(self._order) == 1:
            self.out += self._silence * (n * self.width)
        else:
            t.pending += self._silence * (n * self.width)
            self._drain()

    def _drain(self) -> None:
        a, b = self._order[0], self._order[1]
        n = min(len(a.pending), len(b.pending))
        if n:
            self.out += self._interleave(a.pending[:n], b.pending[:n])
            del a.pending[:n]
            del b.pending[:n]
        ahead = len(a.pending) - len(b.pending)
        if ahead > self._max_skew or -ahead > self._max_skew:
            quiet = b if ahead > 0 else a
            pad = abs(ahead) // self.width
            quiet.debt += pad
            self._silence_fill(quiet, pad)

    def _interleave(self, left: bytes | bytearray, right: bytes | bytearray) -> bytes:
        if self.width == 2:
            return audioop.add(audioop.tostereo(bytes(left), 2, 1, 0),
                               audioop.tostereo(bytes(right), 2, 0, 1), 2)
        out = bytearray(len(left) * 2)
        out[0::2] = left
        out[1::2] = right
        return bytes(out)

    # -- end ----------------------------------------------------------------------------
    def finish(self) -> None:
        """The stream ended: release held chunks, even up the channels, count everything."""
        if self._preroll is not None:
            self._decide()
        for t in self._order:
            if t.reorder is not None:
                for lost, (p, pos, ts) in t.reorder.flush():
                    self._place(t, p, pos, ts, lost)
        if len(self._order) == 2:
            a, b = self._order
            if len(a.pending) != len(b.pending):
                quiet = b if len(a.pending) > len(b.pending) else a
                self._silence_fill(quiet, abs(len(a.pending) - len(b.pending)) // self.width)
        self.snapshot_counters()

    def snapshot_counters(self) -> StreamStats:
        if self.stats is None:
            self._layout(("inbound",))
        stats = self.stats
        stats.frames_received = self.frames_received
        reorders = [t.reorder for t in self._order if t.reorder is not None]
        stats.frames_lost_known = bool(reorders) or self.external_loss is not None
        stats.sequenced = bool(reorders)
        stats.frames_lost = sum(r.lost for r in reorders) + (self.external_loss or 0)
        stats.frames_reordered = sum(r.reordered for r in reorders)
        stats.frames_duplicated = sum(r.duplicates for r in reorders)
        stats.frames_late = sum(r.late for r in reorders) + self._late_padded
        return stats

    def format(self) -> dict[str, int]:
        """How the written bytes are laid out (the WAV header's fields)."""
        return {"wav_format": self.wav_format, "channels": self.channels,
                "sample_rate": self.rate, "sample_width": self.width}
