"""Issue 15 end to end through real HTTP: each tenant's objects stay in its region's
stores (listed straight from every store), `move-region` leaves nothing behind, an unknown
region is refused with the configured ones listed, and a region dropped from the config
stops the gateway from starting, naming the tenants."""

from __future__ import annotations

import os
import uuid

import pytest

import keys
from gateway.config import ConfigError
from gateway.tenants.accounts import create_tenant, move_region
from gateway.tenants.keyring import tenant_root_key_name
from gateway.transparency.log import get_audit_log
from tests.access.conftest import make_call
from tests.regions.conftest import every_store, stores_holding
from tests.support.server import Tenant, start_gateway

AUDIO = os.urandom(200_000)   # any bytes: uploads are stored as received


async def pinned_tenant(gateway, name: str, region: str | None) -> Tenant:
    svc = gateway.services
    tenant_id, key = await create_tenant(svc.db, svc.keyring, gateway.clock, name,
                                         region=region, directory=svc.regions)
    return Tenant(tenant_id, key)


async def upload(gateway, tenant: Tenant, call_id: str, expect: int = 201):
    status, body, _ = await gateway.request(
        "POST", f"/v1/calls/{call_id}/recordings", headers={
            **tenant.auth, "Content-Type": "audio/wav"}, data=AUDIO)
    assert status == expect, body
    return body


async def tenant_with_recording(gateway, name: str, region: str | None):
    tenant = await pinned_tenant(gateway, name, region)
    call = await make_call(gateway, tenant, platform_call_id=f"pc-{name}")
    recording = await upload(gateway, tenant, call)
    return tenant, call, recording["id"]


def seaweed(request):
    return request.getfixturevalue("seaweedfs") if "s3" in request.node.name else None


async def test_every_object_of_a_tenant_stays_in_its_region(gateway, config, request):
    tenants = {region: await tenant_with_recording(gateway, f"acme-{region or 'none'}",
                                                   region)
               for region in ("eu", "us", None)}
    listing = every_store(config, seaweed(request))
    for region, (tenant, _, recording_id) in tenants.items():
        home = region or "default"
        # Its recording and its key material, and nothing of it anywhere else.
        assert stores_holding(listing, tenant.id) == {f"{home}/blobs", f"{home}/keys"}
        assert any(recording_id in name for name in listing[f"{home}/blobs"])
        status, body, _ = await gateway.request("GET", "/v1/tenant", headers=tenant.auth)
        assert status == 200 and body["id"] == tenant.id and body["region"] == region
        status, audio, _ = await gateway.request(
            "GET", f"/v1/recordings/{recording_id}/audio", headers=tenant.auth)
        assert status == 200 and audio == AUDIO
    # Objects written are counted per region.
    metrics = (await gateway.services.metrics.exposition()).decode()
    for region in ("eu", "us"):
        assert f'gateway_region_objects_written_total{{region="{region}",store="blobs"}} 1.0' \
            in metrics
    status, body, _ = await gateway.request("GET", "/readyz")
    assert status == 200 and body["degraded_regions"] == []
    assert body["regions"]["eu"] == {"blob_store": True, "key_store": True}


async def test_move_region_leaves_nothing_behind(gateway, config, request):
    tenant, call, recording_id = await tenant_with_recording(gateway, "mover", "eu")
    bystander, _, _ = await tenant_with_recording(gateway, "stayer", "eu")
    svc = gateway.services
    key_name = tenant_root_key_name(tenant.id)
    old_key = await svc.key_store.get(key_name)
    backup_rows = await svc.db.fetchall("SELECT kind, version, wrapped FROM tenant_keys"
                                        " WHERE tenant_id = ?", (tenant.id,))
    status, call_before, _ = await gateway.request("GET", f"/v1/calls/{call}",
                                                   headers=tenant.auth)
    result = await move_region(svc, get_audit_log(svc), tenant.id, "us", settle_seconds=0.05)
    assert (result["from"], result["to"], result["blobs"]) == ("eu", "us", 1)
    assert result["key_objects"] >= 1 and result["segments_rewrapped"] >= 1
    # Re-encrypted, not copied: a new tenant root key in us, the old one nowhere, and the
    # key rows as a database backup taken before the move hold them open under neither.
    svc.keyring.forget(tenant.id)
    svc.keyring.units._cache.clear()
    new_key = await svc.key_store.store_named("us").get(key_name)
    assert new_key is not None and new_key != old_key
    for region in ("eu", "us"):
        store = svc.key_store.store_named(region)
        for name in await store.list(tenant.id):
            assert await store.get(name) != old_key
    with pytest.raises(keys.DecryptionError):
        keys.open_tenant_keys(
            keys.TenantRootKey.from_bytes(new_key, svc.keyring.root, uuid.UUID(tenant.id)),
            uuid.UUID(tenant.id),
            [keys.WrappedKey(r["kind"], r["version"], bytes(r["wrapped"]))
             for r in backup_rows])
    status, call_after, _ = await gateway.request("GET", f"/v1/calls/{call}",
                                                  headers=tenant.auth)
    assert status == 200 and call_after == call_before

    listing = every_store(config, seaweed(request))
    assert stores_holding(listing, tenant.id) == {"us/blobs", "us/keys"}
    assert stores_holding(listing, bystander.id) == {"eu/blobs", "eu/keys"}
    status, body, _ = await gateway.request("GET", "/v1/tenant", headers=tenant.auth)
    assert body["region"] == "us" and body["moving_to"] is None
    # Still readable (the same ciphertext, the same keys), and still writable, in us.
    status, audio, _ = await gateway.request(
        "GET", f"/v1/recordings/{recording_id}/audio", headers=tenant.auth)
    assert status == 200 and audio == AUDIO
    await upload(gateway, tenant, call)
    assert stores_holding(every_store(config, seaweed(request)), tenant.id) == {
        "us/blobs", "us/keys"}
    # The move is in the tenant's log, at the index the command reported.
    status, page, _ = await gateway.request(
        "GET", f"/v1/transparency/entries?start={result['log_index']}"
        f"&end={result['log_index'] + 1}", headers=tenant.auth)
    import base64
    import json
    moved = json.loads(base64.b64decode(page["entries"][0]["data"]))
    assert moved["kind"] == "key_event" and moved["details"]["to"] == "us"
    # Moving again to where it is, or to nowhere known, is refused.
    with pytest.raises(Exception, match="already in this region"):
        await move_region(svc, get_audit_log(svc), tenant.id, "us", settle_seconds=0)


@pytest.mark.parametrize("region_stores", ["files"], indirect=True)
async def test_unknown_region_is_refused_listing_the_configured_ones(gateway):
    svc = gateway.services
    with pytest.raises(Exception) as refused:
        await create_tenant(svc.db, svc.keyring, gateway.clock, "lost", region="mars",
                            directory=svc.regions)
    assert refused.value.status_hint == 422
    assert "configured regions: eu, us" in refused.value.detail


@pytest.mark.parametrize("region_stores", ["files"], indirect=True)
async def test_dropping_a_region_in_use_refuses_to_start(config, clock):
    async with start_gateway(config, clock) as gateway:
        tenant = await pinned_tenant(gateway, "pinned", "us")
    del config.extra["regions"]["us"]
    with pytest.raises(ConfigError) as refused:
        async with start_gateway(config, clock):
            pass
    assert tenant.id in str(refused.value) and "'us'" in str(refused.value)
