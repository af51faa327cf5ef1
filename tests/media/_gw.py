"""Shared steps of the end-to-end tests: tenants, integrations, streams, downloads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


async def ws_url(gateway, platform: str, integration_id: str, query: str = "") -> str:
    return gateway.url.replace("http://", "ws://") + f"/v1/media/{platform}/{integration_id}" \
        + (f"?{query}" if query else "")


async def send_frames(gateway, url: str, frames: list[str | bytes], headers=None,
                      pause_every: int = 0, pause: float = 0.0, close: bool = False
                      ) -> tuple[int | None, list]:
    """Open the socket, send every frame, wait for the server to close; returns the close
    code and any messages the server sent."""
    received = []
    async with gateway.http.ws_connect(url, headers=headers or {}, autoping=True) as ws:
        for i, frame in enumerate(frames):
            if ws.closed:
                break
            try:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            except (ConnectionResetError, aiohttp.ClientConnectionError, RuntimeError):
                break
            if pause_every and i % pause_every == pause_every - 1:
                await asyncio.sleep(pause)
        if close:
            await ws.close()       # the platform ends the stream (Vonage has no stop frame)
        async for msg in ws:
            received.append(msg)
        return ws.close_code, received


async def recordings_of(gateway, tenant, call_id: str) -> list[dict[str, Any]]:
    status, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    assert status == 200, call
    return call["recordings"]


async def call_by_platform_id(gateway, platform_call_id: str) -> dict[str, Any]:
    row = await gateway.services.db.fetchone(
        "SELECT id, status FROM calls WHERE platform_call_id = ?", (platform_call_id,))
    assert row is not None
    return dict(row)


async def download(gateway, tenant, recording_id: str, headers=None) -> bytes:
    status, body, _ = await gateway.request(
        "GET", f"/v1/recordings/{recording_id}/audio", headers=headers or tenant.auth)
    assert status in (200, 206), body
    return body


async def stats_of(gateway, recording_id: str) -> dict[str, Any]:
    row = await gateway.services.db.fetchone(
        "SELECT stats, state FROM recordings WHERE id = ?", (recording_id,))
    return {**json.loads(row["stats"]), "state": row["state"]}


async def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
