"""Live call audio: media WebSockets (Twilio, Telnyx, Vonage), WHIP and WhatsApp calls
terminated with aiortc, recorded live into the encrypted blob format with technical stats
computed at ingest. See docs/live-audio.md.

Feature hooks (gateway/features.py): `register` (recovery handler for source "stream",
WhatsApp ingest subscriber), `startup` (WebRTC service, recovery sweep, shutdown), `routes`.
aiortc is imported only when a WebRTC session starts.
"""

from __future__ import annotations

from aiohttp import web

from gateway.media import api, websocket, whip
from gateway.media.config import MediaConfig, media_config
from gateway.media.live import LiveRecording, MediaService

__all__ = ["LiveRecording", "MediaConfig", "MediaService", "register", "routes", "startup"]

FEATURE = "media"

# One table of the three areas' route definitions (app.add_routes takes any iterable).
routes = [*websocket.routes, *whip.routes, *api.routes]


def register(services) -> None:
    media = MediaService(services, media_config(services.config))
    services.features[FEATURE] = media
    services.recordings.recovery_handlers["stream"] = media.recover_stream
    from gateway.media.whatsapp import on_ingested_events

    async def subscriber(integration, events):
        await on_ingested_events(media, integration, events)

    services.ingest.on_events.append(subscriber)


async def startup(app: web.Application, services) -> None:
    media: MediaService = services.features[FEATURE]
    from gateway.media.webrtc import WebRtcService
    media.webrtc = WebRtcService(media)
    media.start_sweeper()

    async def stop(_app: web.Application) -> None:
        await media.shutdown()

    app.on_shutdown.append(stop)
