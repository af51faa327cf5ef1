"""Live call audio: media WebSockets (every platform whose descriptor has a `media_stream`),
WHIP and WhatsApp calls terminated with aiortc, recorded live into the encrypted blob format
with technical stats computed at ingest. See docs/live-audio.md.

Rooms: `settings` (the [media] section, a leaf), `feature` (the area's hooks and routes),
`websocket`/`whip`/`whatsapp`/`webrtc` (transports), `live` (MediaService, LiveRecording),
`pipeline`/`codecs`/`stats`/`wav` (audio), `tokens` and `api` (ingest tokens).

This package's import loads nothing: gateway.config imports `gateway.media.settings`.
"""
