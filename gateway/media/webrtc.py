"""WebRTC sessions terminated with aiortc (WHIP publishers, WhatsApp calls).

Each session is one RTCPeerConnection whose first audio track is decoded by aiortc
(Opus through PyAV's libopus, or G.711/G.722) and recorded mono at 48 kHz through the same
`AudioPipeline`/`LiveRecording` as the WebSocket streams: the frames' RTP-derived
timestamps place them on the timeline, so packet loss and DTX gaps become silence. Loss
counts come from aiortc's inbound-rtp stats (RTCP-level packetsLost) at the end.

A session ends when: its owner ends it (WHIP DELETE, WhatsApp terminate), the track ends
or the connection fails, nothing arrives for idle_timeout_seconds, or the gateway stops.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from gateway.media._audioop import audioop
from gateway.media.codecs import Decoder

log = logging.getLogger("gateway.media")

RATE = 48000
# Longest an aiortc teardown step (stats, close) may take before the session is ended
# without it: a stuck peer must never hold up a DELETE, a terminate or a shutdown.
STOP_TIMEOUT = 5.0


def _patch_host_addresses(addresses: list[str]) -> None:
    """Restrict ICE host candidates (aioice looks them up per connection)."""
    import aioice.ice

    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: list(addresses)


class SilenceTrack:
    """An outgoing audio track of silence (WhatsApp expects a two-way call)."""

    def __new__(cls):
        from aiortc.mediastreams import AudioStreamTrack

        return AudioStreamTrack()


class RtcSession:
    """One peer connection and the recording of its audio."""

    def __init__(self, service: WebRtcService, kind: str, pc: Any) -> None:
        self.service = service
        self.kind = kind                      # "whip" | "whatsapp"
        self.id = secrets.token_hex(16)
        self.pc = pc
        self.recording = None                 # LiveRecording
        self.audio_track = None
        self.task: asyncio.Task | None = None
        self.ended = asyncio.Event()
        self.end_reason = "closed"
        self.on_end: list[Any] = []           # async callbacks(session, result)

    def attach_recording(self, recording) -> None:
        self.recording = recording
        recording.closer = self._closer
        if self.audio_track is not None and self.task is None:
            self.task = asyncio.create_task(self._consume(), name=f"{self.kind}-audio")

    async def _closer(self, code: int = 1001, message: bytes = b"") -> None:
        await self.close("shutdown")

    async def _consume(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        track = self.audio_track
        idle = self.service.media.config.idle_timeout_seconds
        resampler = None
        first_pts = None
        reason, complete = "closed", True
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), idle)
                except MediaStreamError:
                    break
                fmt, layout = frame.format.name, frame.layout.name
                if fmt == "s16" and frame.sample_rate == RATE and layout in ("mono", "stereo"):
                    frames = [frame]
                else:
                    if resampler is None:
                        import av
                        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
                    frames = resampler.resample(frame)
                position = None
                if frame.pts is not None and frame.time_base is not None:
                    if first_pts is None:
                        first_pts = frame.pts
                    position = int((frame.pts - first_pts) * frame.time_base * RATE)
                for out in frames:
                    channels = len(out.layout.channels)
                    pcm = bytes(out.planes[0])[: out.samples * 2 * channels]
                    if channels == 2:
                        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
                    await self.recording.push("inbound", pcm, position=position)
                    position = None
        except TimeoutError:
            reason, complete = "idle_timeout", False
        except asyncio.CancelledError:
            reason, complete = self.end_reason, self.end_reason in ("deleted", "terminated")
        except Exception:
            log.exception("webrtc audio failed", extra={"route": self.kind})
            reason, complete = "error", False
        finally:
            await self._finish(reason, complete)

    async def _finish(self, reason: str, complete: bool) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        lost = await self._packets_lost()
        result = None
        if self.recording is not None:
            self.recording.pipeline.external_loss = lost
            result = await self.recording.finish(reason, complete=complete)
        self.service.sessions.pop(self.id, None)
        try:
            await asyncio.wait_for(self.pc.close(), STOP_TIMEOUT)
        except Exception:
            log.warning("a peer connection did not close cleanly", extra={"route": self.kind})
        for callback in self.on_end:
            try:
                await callback(self, result)
            except Exception:
                log.exception("webrtc end callback failed", extra={"route": self.kind})

    async def _packets_lost(self) -> int | None:
        try:
            report = await asyncio.wait_for(self.pc.getStats(), STOP_TIMEOUT)
        except Exception:
            return None
        lost = [getattr(s, "packetsLost", None) for s in report.values()
                if getattr(s, "type", None) == "inbound-rtp"]
        lost = [v for v in lost if isinstance(v, int)]
        return max(0, sum(lost)) if lost else None

    async def close(self, reason: str) -> None:
        """End the session from outside (DELETE, terminate, shutdown)."""
        self.end_reason = reason
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), STOP_TIMEOUT * 3)
            except (asyncio.CancelledError, Exception):
                pass
        await self._finish(reason, reason in ("deleted", "terminated"))


class WebRtcService:
    def __init__(self, media) -> None:
        self.media = media
        self.sessions: dict[str, RtcSession] = {}
        _patch_host_addresses(media.config.webrtc_host_addresses)

    def count(self, kind: str) -> int:
        return sum(1 for s in self.sessions.values() if s.kind == kind)

    def new_peer(self, kind: str) -> RtcSession:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        servers = [RTCIceServer(urls=url) for url in self.media.config.stun_servers]
        # An explicit list (even empty): aiortc's default would contact a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        session = RtcSession(self, kind, pc)

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio" and session.audio_track is None:
                session.audio_track = track
                if session.recording is not None and session.task is None:
                    session.task = asyncio.create_task(session._consume(),
                                                       name=f"{kind}-audio")

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed" and not session.ended.is_set():
                await session.close("connection_failed")

        self.sessions[session.id] = session
        return session

    async def negotiate(self, session: RtcSession, offer_sdp: str) -> None:
        """Apply the remote offer; refuse what cannot be recorded. ValueError if the offer
        is not usable (the caller answers 400)."""
        from aiortc import RTCSessionDescription

        try:
            await session.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:   # aiortc raises ValueError and others on bad SDP
            raise ValueError("offer not usable") from exc
        audio = [t for t in session.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ValueError("offer has no audio")
        for transceiver in session.pc.getTransceivers():
            if transceiver.kind != "audio" or transceiver is not audio[0]:
                # Video and extra audio are not recorded: answered inactive, never decoded.
                transceiver.direction = "inactive"

    async def answer(self, session: RtcSession) -> str:
        pc = session.pc
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def pipeline(self):
        return self.media.pipeline(lambda: Decoder(RATE), tracks=("inbound",), sequenced=False)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.close("shutdown")


__all__ = ["RATE", "RtcSession", "SilenceTrack", "WebRtcService"]
