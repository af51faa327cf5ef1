"""WhatsApp Business Calling: answer a `connect` offer with aiortc and record the call.

The WhatsApp adapter turns a `connect` webhook into a CallEvent carrying the caller's SDP
offer (`sdp_offer`, transient: never stored). Once the delivery is durable the ingest
pipeline hands the accepted events here (IngestService.on_events); answering runs in the
background so Meta gets its 2xx at once:
1. a peer connection applies the offer, adds an outgoing silent audio track (a call is
   two-way) and answers; the answer keeps only SHA-256 fingerprints
   (adapters.whatsapp.prepare_answer_sdp), which is all WhatsApp accepts;
2. `pre_accept` then `accept` go to the Graph API (`POST /{phone_number_id}/calls`) through
   `CallsClient`; tests replace the base URL with a local fake;
3. the caller's audio is recorded under the call the webhook created.
A `terminate` event (or any terminal status) for the call ends the session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import aiohttp

from adapters.events import TERMINAL_STATUSES, CallEvent
from adapters.whatsapp import prepare_answer_sdp

log = logging.getLogger("gateway.media")


class GraphError(Exception):
    def __init__(self, status: int | None) -> None:
        super().__init__("graph api call failed")
        self.status = status


class CallsClient(Protocol):
    async def call_action(self, *, phone_number_id: str, access_token: str, call_id: str,
                          action: str, sdp: str | None) -> None: ...


class GraphCallsClient:
    """Meta's Graph API: POST {base}/{phone_number_id}/calls with a bearer access token."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def call_action(self, *, phone_number_id: str, access_token: str, call_id: str,
                          action: str, sdp: str | None) -> None:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        body: dict[str, Any] = {"messaging_product": "whatsapp", "call_id": call_id,
                                "action": action}
        if sdp is not None:
            body["session"] = {"sdp_type": "answer", "sdp": sdp}
        try:
            async with self._http.post(f"{self.base_url}/{phone_number_id}/calls", json=body,
                                       headers={"Authorization": f"Bearer {access_token}"},
                                       allow_redirects=False) as response:
                await response.read()
                if response.status >= 300:
                    raise GraphError(response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise GraphError(None) from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class WhatsAppCalls:
    def __init__(self, media, client: CallsClient | None = None) -> None:
        self.media = media
        cfg = media.config
        self.client: CallsClient = client or GraphCallsClient(cfg.whatsapp_graph_base_url,
                                                              cfg.whatsapp_timeout_seconds)
        self.by_call: dict[tuple[str, str], Any] = {}     # (integration, wacid) -> session
        self.tasks: set[asyncio.Task] = set()

    def handle(self, integration, events: list[tuple[str, Any]]) -> None:
        for call_id, event in events:
            if not isinstance(event, CallEvent):
                continue
            key = (integration.id, event.platform_call_id)
            if event.sdp_offer:
                if key in self.by_call:
                    continue     # a second connect for a call already answered
                self.by_call[key] = None
                task = asyncio.create_task(self.answer(integration, call_id, event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif event.status in TERMINAL_STATUSES and key in self.by_call:
                session = self.by_call.pop(key)
                if session is not None:
                    task = asyncio.create_task(session.close("terminated"))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)

    async def answer(self, integration, call_id: str, event: CallEvent) -> None:
        media = self.media
        rtc = media.webrtc
        key = (integration.id, event.platform_call_id)
        if media.at_capacity():
            media.metrics.whatsapp.labels("capacity").inc()
            self.by_call.pop(key, None)
            return
        session = rtc.new_peer("whatsapp")
        try:
            from gateway.media.webrtc import SilenceTrack

            await rtc.negotiate(session, event.sdp_offer)
            for transceiver in session.pc.getTransceivers():
                if transceiver.kind == "audio" and transceiver.direction != "inactive":
                    session.pc.addTrack(SilenceTrack())
                    break
            recording = await media.start(integration, call_id, "whatsapp", rtc.pipeline())
            session.attach_recording(recording)
            sdp = prepare_answer_sdp(await rtc.answer(session))
            if key not in self.by_call:       # terminated while we were answering
                await session.close("terminated")
                return
            self.by_call[key] = session
            creds = integration.credentials
            for action in ("pre_accept", "accept"):
                await self.client.call_action(
                    phone_number_id=creds["phone_number_id"],
                    access_token=creds["access_token"], call_id=event.platform_call_id,
                    action=action, sdp=sdp)
            media.metrics.whatsapp.labels("accepted").inc()
        except Exception as exc:
            outcome = ("graph_error" if isinstance(exc, GraphError) else
                       "bad_offer" if isinstance(exc, ValueError) else "error")
            if outcome == "error":
                log.exception("answering a WhatsApp call failed", extra={"route": "whatsapp"})
            self.by_call.pop(key, None)
            await session.close("error")
            media.metrics.whatsapp.labels(outcome).inc()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        close = getattr(self.client, "close", None)
        if close is not None:
            await close()


async def on_ingested_events(media, integration, events: list[tuple[str, Any]]) -> None:
    """IngestService.on_events subscriber: only WhatsApp calls concern live audio."""
    if integration.platform != "whatsapp" or media.webrtc is None:
        return
    if media.whatsapp is None:
        media.whatsapp = WhatsAppCalls(media)
    media.whatsapp.handle(integration, events)
