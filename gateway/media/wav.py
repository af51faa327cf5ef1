"""WAV (RIFF WAVE) headers for recordings written as a stream.

A live recording's length is known only when it ends, and the encrypted blob is
append-only, so the header cannot be written first and fixed later. The gateway stores
the raw sample data as the blob and this header, computed at finish from the true length,
in the recording's sealed metadata (`prefix`); the download serves header + data, so what
a tenant gets is an ordinary WAV with exact sizes (readable by Python's `wave`, sox,
ffmpeg, browsers), and byte ranges work across both.

Formats: WAVE_FORMAT_PCM (1) 16-bit, and G.711 as received: WAVE_FORMAT_MULAW (7) /
WAVE_FORMAT_ALAW (6), 8-bit, whose fmt chunk carries cbSize and which carry a `fact`
chunk (sample frames), as Microsoft's RIFF spec requires for non-PCM formats.
"""

from __future__ import annotations

import struct

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7
# RIFF sizes are uint32: the data chunk of one file is at most this.
MAX_DATA_BYTES = 0xFFFFFFFF - 64


def header(wav_format: int, channels: int, sample_rate: int, data_bytes: int) -> bytes:
    if not 0 <= data_bytes <= MAX_DATA_BYTES:
        raise ValueError("data too large for a RIFF file")
    bits = 16 if wav_format == WAVE_FORMAT_PCM else 8
    block_align = channels * bits // 8
    byte_rate = sample_rate * block_align
    if wav_format == WAVE_FORMAT_PCM:
        fmt = struct.pack("<HHIIHH", wav_format, channels, sample_rate, byte_rate,
                          block_align, bits)
        extra = b""
    else:
        fmt = struct.pack("<HHIIHHH", wav_format, channels, sample_rate, byte_rate,
                          block_align, bits, 0)
        extra = b"fact" + struct.pack("<II", 4, data_bytes // block_align)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    riff_size = len(body) + 8 + data_bytes + (data_bytes & 1)
    return (b"RIFF" + struct.pack("<I", min(riff_size, 0xFFFFFFFF)) + body + b"data"
            + struct.pack("<I", data_bytes))
