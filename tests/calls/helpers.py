"""Shared steps of the calls suites."""

from __future__ import annotations

from tests.support.signers import call_updated, new_whsec, standard_delivery


async def one_call(gateway, platform_call_id: str):
    """A new tenant with one completed call made by a signed Standard Webhook delivery:
    (tenant, call id)."""
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    raw, headers = standard_delivery(secret, call_updated(platform_call_id, "completed"),
                                     gateway.clock.now())
    status, _, _ = await gateway.request("POST", f"/v1/hooks/standard/{integration['id']}",
                                         data=raw, headers=headers)
    assert status == 200
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    return tenant, page["items"][0]["id"]
