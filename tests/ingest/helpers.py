"""Assertions and drivers shared by the platform end-to-end tests."""

from __future__ import annotations

import os
import random
import string
from datetime import datetime, timedelta
from typing import Any

from gateway.core.clock import parse_iso
from tests.support.server import RunningGateway, Tenant


def audio_bytes(size: int = 300_000) -> bytes:
    """A fake recording: a WAV-ish header and random samples (random, so any 64-byte run
    found at rest can only be a plaintext leak)."""
    return b"RIFF" + size.to_bytes(4, "little") + b"WAVEfmt " + os.urandom(size - 16)


def fetcher(gateway: RunningGateway) -> Any:
    return gateway.services.features["recording_fetch"]


async def settle(gateway: RunningGateway) -> None:
    """Run every due fetch job now and wait until no attempt is in flight (the worker may
    have claimed a job already: idle() waits for it too)."""
    svc = fetcher(gateway)
    await svc.idle()
    await svc.run_due()
    await svc.idle()


async def advance_past_next_attempt(gateway: RunningGateway, call_id: str,
                                    tenant: Tenant) -> None:
    job = (await get_call(gateway, tenant, call_id))["recording_fetches"][0]
    due = parse_iso(job["next_attempt_at"])
    gateway.clock.set(max(gateway.clock.now(), due) + timedelta(seconds=1))
    await settle(gateway)


async def get_call(gateway: RunningGateway, tenant: Tenant, call_id: str) -> dict[str, Any]:
    status, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    assert status == 200, call
    return call


async def only_call(gateway: RunningGateway, tenant: Tenant,
                    platform_call_id: str | None = None) -> dict[str, Any]:
    """The tenant's one call (or the one with this platform id), in full detail."""
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    assert status == 200
    items = [c for c in page["items"]
             if platform_call_id is None or c["platform_call_id"] == platform_call_id]
    assert len(items) == 1, [c["platform_call_id"] for c in page["items"]]
    return await get_call(gateway, tenant, items[0]["id"])


async def call_count(gateway: RunningGateway) -> int:
    row = await gateway.services.db.fetchone("SELECT COUNT(*) AS n FROM calls")
    return row["n"]


async def assert_invisible_to_other_tenant(gateway: RunningGateway, call: dict[str, Any]
                                           ) -> None:
    # Letters only: tenant names may not carry a run of 7+ digits (they look like numbers).
    other = await gateway.new_tenant("other-" + "".join(random.choices(string.ascii_lowercase,
                                                                      k=12)))
    status, problem, headers = await gateway.request("GET", f"/v1/calls/{call['id']}",
                                                     headers=other.auth)
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
    status, page, _ = await gateway.request("GET", "/v1/calls", headers=other.auth)
    assert status == 200 and page["items"] == []
    for recording in call.get("recordings", []):
        status, _, _ = await gateway.request(
            "GET", f"/v1/recordings/{recording['id']}/audio", headers=other.auth)
        assert status == 404


async def download(gateway: RunningGateway, tenant: Tenant, recording_id: str) -> bytes:
    status, body, _ = await gateway.request("GET", f"/v1/recordings/{recording_id}/audio",
                                            headers=tenant.auth)
    assert status == 200
    return body


def sample(gateway: RunningGateway, name: str, **labels: str) -> float:
    value = gateway.services.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def webhooks(gateway: RunningGateway, platform: str, outcome: str) -> float:
    return sample(gateway, "gateway_webhooks_total", platform=platform, outcome=outcome)


def at(text: str | None) -> datetime | None:
    return parse_iso(text)


def needles(audio: bytes, step: int = 4096) -> list[bytes]:
    return [audio[i:i + 64] for i in range(0, len(audio) - 64, step)]
