"""The live-audio area's feature hooks (gateway/features.py): `register` (the media service,
the recovery handler for source "stream", the WhatsApp ingest subscriber), `startup`
(WebRTC service, the watchdog and recovery-sweep jobs, shutdown) and `routes`.

Kept apart from gateway/media/__init__.py so that importing the leaf `gateway.media.settings`
(as gateway.config does) loads no handler, aiohttp route or service.
aiortc is imported only when a WebRTC session starts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.media import api, websocket, whip
from gateway.media.live import MediaService
from gateway.media.settings import media_config

__all__ = ["FEATURE", "register", "routes", "startup"]

FEATURE = "media"

# One table of the three areas' route definitions (app.add_routes takes any iterable).
routes = [*websocket.routes, *whip.routes, *api.routes]


def register(services: Any) -> None:
    media = MediaService(services, media_config(services.config))
    services.features[FEATURE] = media
    services.recordings.recovery_handlers["stream"] = media.recover_stream
    from gateway.media.whatsapp import on_ingested_events

    async def subscriber(integration, events):
        await on_ingested_events(media, integration, events)

    services.ingest.on_events.append(subscriber)


async def startup(app: web.Application, services: Any) -> None:
    media: MediaService = services.features[FEATURE]
    from gateway.media.webrtc import WebRtcService
    media.webrtc = WebRtcService(media)
    await media.start_jobs()

    async def stop(_app: web.Application) -> None:
        await media.shutdown()

    app.on_shutdown.append(stop)
