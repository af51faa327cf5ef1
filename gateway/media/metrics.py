"""Live-audio metrics, on the gateway's registry. Labels are fixed sets: platform names
(twilio, telnyx, vonage, whip, whatsapp), outcomes and close reasons from code."""

from __future__ import annotations

from prometheus_client import Counter, Gauge


class MediaMetrics:
    def __init__(self, registry) -> None:
        self.active = Gauge("gateway_media_streams_active", "Live media streams being recorded",
                            ["platform"], registry=registry)
        self.streams = Counter("gateway_media_streams", "Live media streams by how they ended",
                               ["platform", "end"], registry=registry)
        self.rejected = Counter("gateway_media_rejected",
                                "Media connections refused before any audio (auth, limits)",
                                ["platform", "reason"], registry=registry)
        self.frame_errors = Counter("gateway_media_frame_errors",
                                    "Bad frames that closed a stream (1007/1008)",
                                    ["platform", "outcome"], registry=registry)
        self.frames = Counter("gateway_media_frames", "Media frames received (counted at end)",
                              ["platform"], registry=registry)
        self.frames_lost = Counter("gateway_media_frames_lost",
                                   "Frames missing from sequence numbers (filled with silence)",
                                   ["platform"], registry=registry)
        self.checkpoints = Counter("gateway_media_checkpoints",
                                   "Durability checkpoints of live recordings",
                                   registry=registry)
        self.whatsapp = Counter("gateway_whatsapp_answers", "WhatsApp call answers by outcome",
                                ["outcome"], registry=registry)
