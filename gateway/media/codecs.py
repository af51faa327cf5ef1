"""Payload decoders: whatever a platform sends -> 16-bit little-endian mono PCM.

G.711 and linear PCM are decoded with audioop (C, one call per frame). G.722, Opus and
AMR-WB go through PyAV (FFmpeg's decoders, already installed with aiortc), one stateful
codec context per track. Each decoder also says how the audio is *stored*: as decoded PCM
(`store_width` 2) or, for G.711 when configured, as the bytes received (`store_width` 1,
WAV format 6/7; the pipeline then writes the payload itself), and what a stored silent
sample looks like.
"""

from __future__ import annotations

from adapters.media import (
    AMR_WB,
    G722,
    L16BE,
    L16LE,
    OPUS,
    PCMA,
    PCMU,
    MediaProtocolError,
    invalid_data,
    policy_violation,
)
from gateway.media._audioop import audioop
from gateway.media.wav import WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM

# Largest magnitude each codec can produce once decoded: a sample at this level is at the
# codec's full scale, i.e. clipped. G.711 decodes to at most 32124 (mu-law, ITU-T G.711
# table 2) and 32256 (A-law, table 1); linear PCM reaches 32767.
CLIP_PCM16 = 32767
CLIP_MULAW = 32124
CLIP_ALAW = 32256


class Decoder:
    """Linear PCM already: identity (L16 little-endian, WebRTC frames)."""

    name = "pcm16"
    store_width = 2
    wav_format = WAVE_FORMAT_PCM
    silence_byte = 0
    clip_level = CLIP_PCM16

    def __init__(self, rate: int) -> None:
        self.rate = rate

    def decode(self, payload: bytes) -> bytes:
        if len(payload) & 1:
            raise invalid_data("bad_audio", "odd number of bytes for 16-bit audio")
        return payload


class L16BigEndian(Decoder):
    name = "l16"

    def decode(self, payload: bytes) -> bytes:
        if len(payload) & 1:
            raise invalid_data("bad_audio", "odd number of bytes for 16-bit audio")
        return audioop.byteswap(payload, 2)


class G711(Decoder):
    def __init__(self, rate: int, alaw: bool, keep_as_received: bool) -> None:
        super().__init__(rate)
        self.name = "pcma" if alaw else "pcmu"
        self._decode = audioop.alaw2lin if alaw else audioop.ulaw2lin
        self.clip_level = CLIP_ALAW if alaw else CLIP_MULAW
        if keep_as_received:
            self.store_width = 1
            self.wav_format = WAVE_FORMAT_ALAW if alaw else WAVE_FORMAT_MULAW
            # The code for a zero sample: 0xFF in mu-law, 0xD5 in A-law (G.711 tables).
            self.silence_byte = 0xD5 if alaw else 0xFF

    def decode(self, payload: bytes) -> bytes:
        return self._decode(payload, 2)


class AvDecoder(Decoder):
    """An FFmpeg decoder through PyAV, resampled to mono s16 at `rate`."""

    _CODECS = {G722: ("g722", 16000), OPUS: ("libopus", 48000), AMR_WB: ("amrwb", 16000)}

    def __init__(self, encoding: str, rate: int) -> None:
        import av

        codec_name, native_rate = self._CODECS[encoding]
        super().__init__(native_rate if encoding != OPUS else rate)
        self.name = encoding
        self._av = av
        self._ctx = av.CodecContext.create(codec_name, "r")
        if encoding == OPUS:
            self._ctx.sample_rate = self.rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)

    def decode(self, payload: bytes) -> bytes:
        try:
            frames = self._ctx.decode(self._av.Packet(payload))
            out = []
            for frame in frames:
                for resampled in self._resampler.resample(frame):
                    out.append(bytes(resampled.planes[0])[: resampled.samples * 2])
        except self._av.FFmpegError:
            raise invalid_data("bad_audio", "payload does not decode") from None
        return b"".join(out)


def decoder_for(encoding: str, sample_rate: int, *, g711_as_received: bool) -> Decoder:
    if encoding == PCMU or encoding == PCMA:
        if sample_rate != 8000:
            raise policy_violation("unsupported", "G.711 is 8 kHz")
        return G711(8000, encoding == PCMA, g711_as_received)
    if encoding == L16LE:
        return Decoder(sample_rate)
    if encoding == L16BE:
        return L16BigEndian(sample_rate)
    if encoding in (G722, OPUS, AMR_WB):
        return AvDecoder(encoding, sample_rate if encoding == OPUS else 16000)
    raise MediaProtocolError(1008, "unsupported", "encoding not supported")
