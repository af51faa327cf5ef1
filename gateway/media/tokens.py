"""Per-integration ingest tokens: how senders that sign nothing authenticate.

Telnyx signs no media-stream upgrade and WHIP (RFC 9725 section 4.5) uses bearer tokens, so
the tenant creates a token per integration through the tenant API and puts it in the
stream URL (`?token=`) or the `Authorization: Bearer` header. Tokens are
`vgwi_<id>_<secret>`: 256 random bits, only SHA-256(secret) stored, compared in constant
time, revocable, and good for one integration only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from gateway.core.clock import Clock, isoformat
from gateway.errors import not_found
from gateway.store import Database

PREFIX = "vgwi"
_TOKEN_RE = re.compile(r"^vgwi_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# A tenant rotates tokens by creating a new one before revoking the old; a handful live at
# once. The cap stops a runaway script from filling the table.
MAX_ACTIVE_PER_INTEGRATION = 20


class IngestTokens:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        digest = hashlib.sha256(secret.encode()).digest()
        now = isoformat(self.clock.now())

        def unit(tx) -> None:
            active = tx.fetchone(
                "SELECT COUNT(*) AS n FROM media_ingest_tokens WHERE integration_id = ?"
                " AND revoked_at IS NULL", (integration_id,))["n"]
            if active >= MAX_ACTIVE_PER_INTEGRATION:
                from gateway.errors import DomainError
                raise DomainError(409, "conflict", "too many active ingest tokens",
                              f"revoke one first (limit {MAX_ACTIVE_PER_INTEGRATION})")
            tx.execute("INSERT INTO media_ingest_tokens (id, tenant_id, integration_id,"
                       " secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                       (token_id, tenant_id, integration_id, digest, now))

        await self.db.write(unit)
        return {"id": token_id, "token": f"{PREFIX}_{token_id}_{secret}", "created_at": now,
                "revoked_at": None}

    async def list(self, tenant_id: str, integration_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, created_at, revoked_at FROM media_ingest_tokens WHERE tenant_id = ?"
            " AND integration_id = ? ORDER BY created_at, id", (tenant_id, integration_id))
        return [dict(r) for r in rows]

    async def revoke(self, tenant_id: str, integration_id: str, token_id: str) -> None:
        now = isoformat(self.clock.now())
        changed = await self.db.write(lambda tx: tx.execute(
            "UPDATE media_ingest_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
            " AND tenant_id = ? AND integration_id = ?", (now, token_id, tenant_id,
                                                         integration_id)))
        if not changed:
            raise not_found("ingest token")

    async def check(self, integration_id: str, token: str | None) -> bool:
        if not token:
            return False
        match = _TOKEN_RE.match(token)
        if match is None:
            return False
        row = await self.db.fetchone(
            "SELECT secret_hash FROM media_ingest_tokens WHERE id = ? AND integration_id = ?"
            " AND revoked_at IS NULL", (match.group(1), integration_id))
        digest = hashlib.sha256(match.group(2).encode()).digest()
        return row is not None and hmac.compare_digest(bytes(row["secret_hash"]), digest)
