"""Tenant notifications about staff access: the tenant's endpoint, the durable outbox, and
delivery as Standard Webhooks (https://www.standardwebhooks.com/) with retries.

Invariants:
- A notice is queued in the same write unit as the transition it announces
  (`Outbox.enqueue_in_tx`), so state, log and notice never disagree; delivery happens
  after the commit, from the outbox only.
- Every attempt of one notice carries the same `webhook-id`, so receivers dedupe on it.
- The endpoint secret is a sealed record (registered with gateway.store.sealed, so key
  rotation reseals it); it is written once and never returned by any API.
- A notice is claimed with a lease (its `next_attempt_at` moved past the attempt's
  timeout) before it is sent, so several processes can drain one outbox.
- Payloads carry the rendered grant (pseudonymous staff, ticket, scope ids): no phone
  number, no secret, no content.
- The endpoint follows the recording fetcher's URL rules (`check_endpoint`): https, no
  credentials in the URL, and no private address unless the operator allows it, checked
  when it is set and, through the resolver, at every delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from gateway.access.settings import StaffAccessConfig
from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import PeriodicJob
from gateway.errors import invalid
from gateway.ingest.fetch_policy import PublicAddressResolver, private_literal
from gateway.store import Database, WriteTx, sealed
from gateway.tenants.keyring import KeyRing

WEBHOOK_SECRET_RECORD = "access-webhook-secret"
sealed.register(sealed.SealedColumn("access_webhooks", "secret", WEBHOOK_SECRET_RECORD,
                                    id_column="tenant_id"))

# Standard Webhooks secrets: "whsec_" + base64 of 24..64 random bytes (the spec suggests 24-64).
_WHSEC_RE = re.compile(r"whsec_([A-Za-z0-9+/]{32,88}={0,2})")
# Longest endpoint URL accepted: the de-facto limit browsers and proxies share.
MAX_URL_LENGTH = 2000
# Notices attempted per delivery round; a full round asks for the next one at once.
DELIVERY_BATCH = 50


def sign_standard_webhook(secret_key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature: base64(HMAC-SHA256(key, id "." timestamp "." body))."""
    mac = hmac.new(secret_key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class WebhookEndpoints:
    """Each tenant's notification endpoint: URL plus a sealed signing secret."""

    def __init__(self, db: Database, keyring: KeyRing, clock: Clock,
                 cfg: StaffAccessConfig) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg

    async def get(self, tenant_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT url, updated_at FROM access_webhooks WHERE tenant_id = ?", (tenant_id,))
        return {"url": row["url"], "updated_at": row["updated_at"]} if row else None

    async def put(self, tenant_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"url", "secret"}:
            raise invalid("body", 'must be {"url", "secret"}')
        url = body.get("url")
        check_endpoint(url, self.cfg)
        key = _whsec_key(body.get("secret"))
        if key is None:
            raise invalid("secret", "must be a Standard Webhooks secret: whsec_ + base64 of "
                          "24-64 random bytes")
        ring = await self.keyring.for_tenant(tenant_id)
        sealed_key = ring.seal_record(WEBHOOK_SECRET_RECORD, tenant_id, key)
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO access_webhooks (tenant_id, url, secret, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, secret = excluded.secret,"
            " updated_at = excluded.updated_at", (tenant_id, url, sealed_key, now)))
        return {"url": url, "updated_at": now}

    async def delete(self, tenant_id: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM access_webhooks WHERE tenant_id = ?", (tenant_id,)))


def check_endpoint(url: Any, cfg: StaffAccessConfig) -> None:
    """The recording fetcher's URL rules (gateway/ingest/fetch_policy.py) for a tenant's
    notification endpoint: https (http only if the operator allows it), no `user:pass@`,
    a valid port, and no private, loopback or link-local address unless the operator
    allows them. Names are checked again at each delivery, on the addresses they resolve
    to (`PublicAddressResolver`), so DNS cannot point a checked name inward later."""
    schemes = ("https", "http") if cfg.notify_allow_http else ("https",)
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL_LENGTH else None
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        raise invalid("url", "must be an " + " or ".join(schemes) + " URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise invalid("url", "has an invalid port") from None
    if parts.username is not None or parts.password is not None:
        raise invalid("url", "must not carry credentials (user:password@)")
    host = parts.hostname.lower().rstrip(".")
    if not cfg.notify_allow_private_addresses and (
            private_literal(host) or host == "localhost" or host.endswith(".localhost")):
        raise invalid("url", "must not point at a private, loopback or link-local address")


def _whsec_key(secret: Any) -> bytes | None:
    match = _WHSEC_RE.fullmatch(secret) if isinstance(secret, str) else None
    try:
        key = base64.b64decode(match.group(1), validate=True) if match else b""
    except (binascii.Error, ValueError):
        key = b""
    return key if 24 <= len(key) <= 64 else None


class Outbox:
    """Queues notices inside the caller's write unit (only for tenants with an endpoint)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def enqueue_in_tx(self, tx: WriteTx, tenant_id: str, event_type: str,
                      data: dict[str, Any]) -> None:
        if tx.fetchone("SELECT 1 FROM access_webhooks WHERE tenant_id = ?",
                       (tenant_id,)) is None:
            return
        now = isoformat(self.clock.now())
        notification_id = "msg_" + uuid.uuid4().hex
        payload = {"type": event_type, "timestamp": now, "data": data}
        tx.execute("INSERT INTO access_notifications (id, tenant_id, type, payload, state,"
                   " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                   (notification_id, tenant_id, event_type,
                    json.dumps(payload, separators=(",", ":")), now, now))


class AccessNotifier:
    """Delivers the outbox to each tenant's endpoint: Standard Webhooks headers signed with
    the tenant's secret, the same webhook-id on every retry (receivers dedupe on it),
    exponential backoff, given up (state 'failed') after `notify_max_attempts`.

    Runs as a PeriodicJob every `poll_seconds`; `kick()` (after a commit that queued a
    notice) runs it at once."""

    def __init__(self, db: Database, keyring: KeyRing, clock: Clock, cfg: StaffAccessConfig,
                 registry: CollectorRegistry | None = None, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.cfg = cfg
        self.job = PeriodicJob("access-notifier", self._tick, poll_seconds,
                               on_stop=self._close_session)
        self._session: aiohttp.ClientSession | None = None
        self._outcomes = None
        if registry is not None:
            self._outcomes = Counter("gateway_access_notifications",
                                     "Tenant access notifications by attempt outcome",
                                     ["outcome"], registry=registry)

    def kick(self) -> None:
        self.job.wake()

    def backoff(self, attempts: int) -> float:
        return min(self.cfg.notify_backoff_seconds * (2 ** max(0, attempts - 1)),
                   self.cfg.notify_backoff_max_seconds)

    async def start(self) -> None:
        if self._session is None:
            self._session = self._new_session()
        await self.job.start()

    async def stop(self) -> None:
        await self.job.stop()

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = None
        if not self.cfg.notify_allow_private_addresses:
            connector = aiohttp.TCPConnector(
                resolver=PublicAddressResolver(aiohttp.DefaultResolver()))
        return aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.cfg.notify_timeout_seconds))

    async def _tick(self) -> bool:
        # A full batch means more may be due: the job runs the next round at once.
        return await self.deliver_due(DELIVERY_BATCH) >= DELIVERY_BATCH

    async def deliver_due(self, limit: int = DELIVERY_BATCH) -> int:
        """Attempt every due notification once; returns how many were attempted."""
        now = self.clock.now()
        rows = await self.db.fetchall(
            "SELECT n.*, w.url, w.secret FROM access_notifications n LEFT JOIN access_webhooks w"
            " ON w.tenant_id = n.tenant_id WHERE n.state = 'pending' AND n.next_attempt_at <= ?"
            " ORDER BY n.next_attempt_at, n.created_at LIMIT ?", (isoformat(now), limit))
        attempted = 0
        for row in rows:
            # Claim it (another process may be delivering the same outbox): move its next
            # attempt past this attempt's timeout, only if nobody else did first.
            lease = isoformat(now + timedelta(seconds=self.cfg.notify_timeout_seconds * 2))
            claimed = await self.db.write(lambda tx, r=row, lease=lease: tx.execute(
                "UPDATE access_notifications SET next_attempt_at = ? WHERE id = ? AND"
                " state = 'pending' AND next_attempt_at = ?", (lease, r["id"],
                                                               r["next_attempt_at"])))
            if claimed != 1:
                continue
            attempted += 1
            await self._attempt(row)
        return attempted

    async def _attempt(self, row: Any) -> None:
        if row["url"] is None:
            await self._record(row, "failed", "no_endpoint", final=True)
            return
        ring = await self.keyring.for_tenant(row["tenant_id"])
        key = ring.open_record(WEBHOOK_SECRET_RECORD, row["tenant_id"], bytes(row["secret"]))
        body = row["payload"].encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {"content-type": "application/json", "webhook-id": row["id"],
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign_standard_webhook(key, row["id"], timestamp, body)}
        session = self._session
        own = session is None  # deliver_due called without start() (CLI, tests)
        if own:
            session = self._new_session()
        try:
            async with session.post(row["url"], data=body, headers=headers,
                                    allow_redirects=False) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = None
            code = "timeout" if isinstance(exc, TimeoutError) else "connect_error"
        finally:
            if own:
                await session.close()
        if status is not None and 200 <= status < 300:
            await self._record(row, "delivered", str(status), final=True)
        else:
            await self._record(row, "failed", str(status) if status is not None else code,
                               final=row["attempts"] + 1 >= self.cfg.notify_max_attempts)

    async def _record(self, row: Any, outcome: str, last_status: str, *, final: bool) -> None:
        now = self.clock.now()
        attempts = row["attempts"] + 1
        if outcome == "delivered":
            state, next_at = "delivered", isoformat(now)
        elif final:
            state, next_at = "failed", isoformat(now)
        else:
            state, next_at = "pending", isoformat(now + timedelta(seconds=self.backoff(attempts)))
        await self.db.write(lambda tx: tx.execute(
            "UPDATE access_notifications SET state = ?, attempts = ?, next_attempt_at = ?,"
            " last_status = ?, delivered_at = ? WHERE id = ?",
            (state, attempts, next_at, last_status,
             isoformat(now) if state == "delivered" else None, row["id"])))
        if self._outcomes is not None:
            self._outcomes.labels("delivered" if state == "delivered" else
                                  "gave_up" if state == "failed" else "retry").inc()
