"""The tenant hears of every request and decision through its own endpoint: Standard
Webhooks signed with its own secret (checked here with the reference library), retried with
backoff under the same webhook-id, given up after the configured attempts."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from tests.access.conftest import approve, make_call, request_access
from tests.support.signers import new_whsec


class Endpoint:
    """The tenant's webhook receiver: records deliveries, fails the first `fail` attempts."""

    def __init__(self, secret: str, fail: int = 0) -> None:
        self.secret = secret
        self.fail = fail
        self.attempts: list[dict] = []
        self.accepted: list[dict] = []
        app = web.Application()
        app.router.add_post("/hooks/access", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        # Verify as any tenant would, with the reference implementation (raises if bad).
        payload = Webhook(self.secret).verify(body, dict(request.headers))
        self.attempts.append({"id": request.headers["webhook-id"], "payload": payload})
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        self.accepted.append({"id": request.headers["webhook-id"], "payload": payload})
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hooks/access"))


async def wait_for(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_request_and_decision_are_notified_signed_and_retried(gateway):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    secret = new_whsec()
    endpoint = Endpoint(secret, fail=1)
    await endpoint.server.start_server()
    try:
        status, body, _ = await gateway.request(
            "PUT", "/v1/access-policy/webhook", headers=tenant.auth,
            json={"url": endpoint.url, "secret": secret})
        assert status == 200 and "secret" not in body
        _, policy, _ = await gateway.request("GET", "/v1/access-policy", headers=tenant.auth)
        assert policy["webhook"]["url"] == endpoint.url and secret not in json.dumps(policy)

        req = await request_access(gateway, staff, tenant, calls=[call_id])
        # The first attempt fails (500): it is retried after the backoff, same webhook-id.
        await wait_for(lambda: len(endpoint.attempts) == 1)
        assert endpoint.accepted == []
        notifier = gateway.services.features["staff_access"].notifier
        assert await notifier.deliver_due() == 0  # not due yet
        gateway.clock.advance(seconds=notifier.backoff(1) + 1)
        notifier.kick()
        await wait_for(lambda: len(endpoint.accepted) == 1)
        assert endpoint.attempts[0]["id"] == endpoint.attempts[1]["id"]
        created = endpoint.accepted[0]["payload"]
        assert created["type"] == "access_request.created"
        assert created["data"]["id"] == req["id"] and created["data"]["state"] == "pending"
        assert created["data"]["staff"]["id"] == staff["pseudonym"]

        await approve(gateway, tenant, req["id"])
        await wait_for(lambda: len(endpoint.accepted) == 2)
        approved = endpoint.accepted[1]["payload"]
        assert approved["type"] == "access_request.approved"
        assert approved["data"]["state"] == "approved" and approved["data"]["expires_at"]
        await gateway.request("POST", f"/v1/grants/{req['id']}/revoke", headers=tenant.auth)
        await wait_for(lambda: len(endpoint.accepted) == 3)
        assert endpoint.accepted[2]["payload"]["type"] == "grant.revoked"
        for delivery in endpoint.accepted:
            assert "4155550100" not in json.dumps(delivery)
    finally:
        await endpoint.server.close()


async def test_undeliverable_notifications_are_given_up_after_max_attempts(gateway):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    secret = new_whsec()
    endpoint = Endpoint(secret, fail=100)
    await endpoint.server.start_server()
    service = gateway.services.features["staff_access"]
    service.cfg.notify_max_attempts = 3
    try:
        await gateway.request("PUT", "/v1/access-policy/webhook", headers=tenant.auth,
                              json={"url": endpoint.url, "secret": secret})
        await request_access(gateway, staff, tenant, calls=[call_id])
        for attempt in (1, 2, 3):
            await wait_for(lambda a=attempt: len(endpoint.attempts) == a)
            gateway.clock.advance(seconds=service.notifier.backoff(attempt) + 1)
            service.notifier.kick()
        await asyncio.sleep(0.2)
        assert len(endpoint.attempts) == 3
        row = await gateway.services.db.fetchone(
            "SELECT state, attempts, last_status FROM access_notifications")
        assert dict(row) == {"state": "failed", "attempts": 3, "last_status": "500"}
    finally:
        service.cfg.notify_max_attempts = 10
        await endpoint.server.close()


async def test_webhook_settings_are_validated(gateway):
    tenant = await gateway.new_tenant("acme")
    cfg = gateway.services.features["staff_access"].cfg
    for body, field in [({"url": "ftp://x.example", "secret": new_whsec()}, "url"),
                        ({"url": "https://x.example/h", "secret": "hunter2"}, "secret"),
                        ({"url": "https://x.example/h", "secret": "whsec_AAAA"}, "secret"),
                        ({"url": "https://x.example/h"}, "secret")]:
        status, problem, _ = await gateway.request("PUT", "/v1/access-policy/webhook",
                                                   headers=tenant.auth, json=body)
        assert status == 422 and problem["field"] == field, (body, problem)
        assert "hunter2" not in json.dumps(problem)
    cfg.notify_allow_http = False
    try:
        status, problem, _ = await gateway.request(
            "PUT", "/v1/access-policy/webhook", headers=tenant.auth,
            json={"url": "http://127.0.0.1:9/h", "secret": new_whsec()})
        assert status == 422 and problem["field"] == "url"
    finally:
        cfg.notify_allow_http = True
    status, _, _ = await gateway.request("DELETE", "/v1/access-policy/webhook",
                                         headers=tenant.auth)
    assert status == 204
