"""The `[media]` config section: a leaf module (stdlib and gateway.errors only), listed in
gateway.config.AREA_SECTIONS so load_config knows it without importing the media area.
config.example.toml documents each key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError

SECTION = "media"
G711_STORAGE = ("pcm16", "as_received")


@dataclass
class MediaConfig:
    # Seconds without a frame after which a live stream is finalised as 'incomplete'.
    idle_timeout_seconds: float = 30.0
    # How many chunks of one track may arrive ahead of a missing one before it is declared
    # lost (Telnyx does not guarantee order). 5 chunks = 100 ms of 20 ms frames.
    reorder_window_frames: int = 5
    # Seconds between durability checkpoints of a live recording (fsync + one row); a crash
    # loses at most this much plus one 64 KiB segment. Also bounds buffered ciphertext.
    checkpoint_seconds: float = 10.0
    # G.711 (Twilio, Telnyx PCMU/PCMA) is stored as "pcm16" (16-bit PCM WAV, what every
    # player and Python's `wave` read) or "as_received" (8-bit mu-law/A-law WAV, format 7/6:
    # half the size, but Python's `wave` cannot read it).
    g711_storage: str = "pcm16"
    # A 20 ms frame whose RMS is below this level counts as silence in the stats.
    silence_threshold_dbfs: float = -50.0
    # Live streams (WebSocket + WebRTC) one process accepts at once; more get 1013.
    max_streams: int = 1000
    # WHIP sessions one process accepts at once (each is a full WebRTC stack); more get 503.
    whip_max_sessions: int = 50
    # STUN servers for WebRTC (WHIP, WhatsApp), e.g. ["stun:stun.example.net:3478"]. Empty:
    # host candidates only, right for a gateway with a public address.
    stun_servers: list[str] = field(default_factory=list)
    # Restrict WebRTC host candidates to these local addresses (empty: every interface).
    webrtc_host_addresses: list[str] = field(default_factory=list)
    # Meta Graph API for answering WhatsApp calls (version included).
    whatsapp_graph_base_url: str = "https://graph.facebook.com/v23.0"
    whatsapp_timeout_seconds: float = 10.0


def validate(cfg: MediaConfig) -> MediaConfig:
    if cfg.g711_storage not in G711_STORAGE:
        raise ConfigError("media.g711_storage must be one of " + ", ".join(G711_STORAGE))
    for name in ("idle_timeout_seconds", "checkpoint_seconds", "whatsapp_timeout_seconds"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"media.{name} must be > 0")
    if not 0 <= cfg.reorder_window_frames <= 100:
        raise ConfigError("media.reorder_window_frames must be between 0 and 100")
    if cfg.max_streams < 1 or cfg.whip_max_sessions < 0:
        raise ConfigError("media.max_streams must be >= 1 and whip_max_sessions >= 0")
    for name in ("stun_servers", "webrtc_host_addresses"):
        value = getattr(cfg, name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"media.{name} must be a list of strings")
    if not cfg.whatsapp_graph_base_url.startswith(("https://", "http://")):
        raise ConfigError("media.whatsapp_graph_base_url must be an http(s) URL")
    return cfg


def media_config(config: Any) -> MediaConfig:
    """The checked [media] section of a gateway Config (its defaults if the file had none)."""
    return validate(config.extra.get(SECTION) or MediaConfig())
