"""Steps the replica tests share: integrations, signed deliveries to a chosen replica, and
reading calls back through either one. Deliveries are signed with the Standard Webhooks
reference library (tests.support.signers), never with the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.support.signers import call_updated, new_whsec, standard_delivery

from .cluster import Replica, auth, request


async def standard_integration(http: aiohttp.ClientSession, replica: Replica,
                               tenant: dict[str, str]) -> tuple[str, str]:
    """(integration id, signing secret) of a new Standard Webhooks integration."""
    secret = new_whsec()
    status, body, _ = await request(http, replica, "POST", "/v1/integrations",
                                    headers=auth(tenant),
                                    json={"platform": "standard",
                                          "credentials": {"secret": secret}})
    assert status == 201, body
    return body["id"], secret


def delivery(secret: str, platform_call_id: str, status: str, *, msg_id: str | None = None,
             from_number: str = "+14155550100", **extra: Any) -> tuple[bytes, dict[str, str]]:
    return standard_delivery(secret, call_updated(platform_call_id, status,
                                                  from_number=from_number, **extra),
                             datetime.now(UTC), msg_id=msg_id)


async def deliver(http: aiohttp.ClientSession, replica: Replica, integration_id: str,
                  signed: tuple[bytes, dict[str, str]]) -> int:
    body, headers = signed
    async with http.post(f"{replica.url}/v1/hooks/standard/{integration_id}", data=body,
                         headers=headers) as response:
        await response.read()
        return response.status


async def calls(http: aiohttp.ClientSession, replica: Replica, tenant: dict[str, str]
                ) -> list[dict[str, Any]]:
    """Every call of the tenant, newest first, following the cursor."""
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, body, _ = await request(http, replica, "GET",
                                        f"/v1/calls?limit=200{cursor}", headers=auth(tenant))
        assert status == 200, body
        out.extend(body["items"])
        if not body.get("next_cursor"):
            return out
        cursor = f"&cursor={body['next_cursor']}"


async def call(http: aiohttp.ClientSession, replica: Replica, tenant: dict[str, str],
               call_id: str) -> dict[str, Any]:
    status, body, _ = await request(http, replica, "GET", f"/v1/calls/{call_id}",
                                    headers=auth(tenant))
    assert status == 200, body
    return body
