"""Platform-side helpers: audio generated with the standard library, frames written as the
platforms document them, upgrades signed with the platforms' own SDK rules (the Twilio SDK's
RequestValidator, PyJWT for Vonage) rather than with the code under test."""

from __future__ import annotations

import array
import base64
import io
import json
import math
import os
import secrets
import struct
import time
import uuid
import wave
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twilio.request_validator import RequestValidator

from gateway.media._audioop import audioop

WS_BASE = "wss://gateway.example.com"     # tests/conftest.py PUBLIC_BASE_URL, https -> wss


def sine(freq: float, samples: int, rate: int, amp: int = 8000, start: int = 0) -> bytes:
    return array.array("h", (int(amp * math.sin(2 * math.pi * freq * (start + i) / rate))
                             for i in range(samples))).tobytes()


def mulaw_frames(freq: float, frames: int, amp: int = 8000) -> list[bytes]:
    """20 ms mu-law frames (160 bytes at 8 kHz), as Twilio and Telnyx PCMU send them."""
    return [audioop.lin2ulaw(sine(freq, 160, 8000, amp, i * 160), 2) for i in range(frames)]


# -- Twilio ---------------------------------------------------------------------------------
def twilio_credentials() -> dict[str, str]:
    return {"account_sid": "AC" + secrets.token_hex(16), "auth_token": secrets.token_hex(16)}


def twilio_upgrade_headers(auth_token: str, integration_id: str) -> dict[str, str]:
    url = f"{WS_BASE}/v1/media/twilio/{integration_id}"
    return {"X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, {})}


def twilio_stream(account_sid: str, call_sid: str, tracks: dict[str, list[bytes]],
                  stream_sid: str | None = None, stop: bool = True) -> list[str]:
    """connected, start, media of each track interleaved frame by frame, stop."""
    sid = stream_sid or "MZ" + secrets.token_hex(16)
    seq = 1
    out = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})]
    out.append(json.dumps({"event": "start", "sequenceNumber": str(seq), "streamSid": sid,
                           "start": {"accountSid": account_sid, "streamSid": sid,
                                     "callSid": call_sid, "tracks": list(tracks),
                                     "customParameters": {"secret": "never stored"},
                                     "mediaFormat": {"encoding": "audio/x-mulaw",
                                                     "sampleRate": 8000, "channels": 1}}}))
    longest = max(len(v) for v in tracks.values())
    for i in range(longest):
        for track, frames in tracks.items():
            if i < len(frames):
                seq += 1
                out.append(json.dumps({
                    "event": "media", "sequenceNumber": str(seq), "streamSid": sid,
                    "media": {"track": track, "chunk": str(i + 1), "timestamp": str(i * 20),
                              "payload": base64.b64encode(frames[i]).decode()}}))
    if stop:
        seq += 1
        out.append(json.dumps({"event": "stop", "sequenceNumber": str(seq), "streamSid": sid,
                               "stop": {"accountSid": account_sid, "callSid": call_sid}}))
    return out


# -- Telnyx ---------------------------------------------------------------------------------
def telnyx_credentials() -> dict[str, str]:
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return {"public_key": base64.b64encode(key).decode()}


def telnyx_start(call_control_id: str, stream_id: str, encoding: str = "PCMU",
                 rate: int = 8000) -> str:
    return json.dumps({"event": "start", "sequence_number": "1", "stream_id": stream_id,
                       "start": {"user_id": str(uuid.uuid4()), "call_control_id": call_control_id,
                                 "client_state": "aGVsbG8=",
                                 "media_format": {"encoding": encoding, "sample_rate": rate,
                                                  "channels": 1}}})


def telnyx_media(stream_id: str, seq: int, track: str, chunk: int, payload: bytes) -> str:
    return json.dumps({"event": "media", "sequence_number": str(seq), "stream_id": stream_id,
                       "media": {"track": track, "chunk": str(chunk),
                                 "timestamp": str((chunk - 1) * 20),
                                 "payload": base64.b64encode(payload).decode()}})


# -- Vonage ---------------------------------------------------------------------------------
_RSA_PEM: str | None = None


def vonage_credentials() -> dict[str, Any]:
    global _RSA_PEM
    if _RSA_PEM is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _RSA_PEM = key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    return {"signature_secret": secrets.token_hex(16), "application_id": str(uuid.uuid4()),
            "private_key": _RSA_PEM}


def vonage_jwt(secret: str, application_id: str, now: float | None = None) -> str:
    iat = int(now if now is not None else time.time())
    return jwt.encode({"iat": iat, "exp": iat + 300, "jti": str(uuid.uuid4()),
                       "application_id": application_id}, secret, algorithm="HS256")


# -- reading results back -------------------------------------------------------------------
def read_wav(data: bytes) -> tuple[wave.Wave_read, bytes]:
    w = wave.open(io.BytesIO(data))
    return w, w.readframes(w.getnframes())


def riff_chunks(data: bytes) -> dict[str, tuple[int, int]]:
    """An independent RIFF walk: chunk id -> (offset of its data, declared size)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] in (len(data) - 8, len(data) - 7)
    pos, chunks = 12, {}
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4].decode(), struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunks[cid] = (pos + 8, size)
        pos += 8 + size + (size & 1)
    return chunks


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# -- WebRTC ---------------------------------------------------------------------------------
def sine_track(freq: float = 440.0, rate: int = 48000, amp: int = 8000):
    """An aiortc audio track producing a sine in real time, 20 ms per frame."""
    import asyncio
    import fractions

    import av
    from aiortc import MediaStreamTrack

    class SineTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.sent = 0
            self._start: float | None = None

        async def recv(self):
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            wait = self._start + self.sent / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            frame = av.AudioFrame(format="s16", layout="mono", samples=rate // 50)
            frame.planes[0].update(sine(freq, rate // 50, rate, amp, self.sent))
            frame.sample_rate = rate
            frame.pts = self.sent
            frame.time_base = fractions.Fraction(1, rate)
            self.sent += rate // 50
            return frame

    return SineTrack()


def loopback_peer():
    from aiortc import RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[]))
