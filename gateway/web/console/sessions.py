"""Console sessions: a tenant API key or a staff token exchanged for a short-lived cookie.

Invariants:
- The cookie holds a random 256-bit secret; the database keeps only its SHA-256 (the
  secret is random, so a fast hash is enough, as for API keys in tenants/accounts.py).
- A session never outlives what it was made from: every lookup re-checks that the tenant's
  API key is not revoked and the tenant is active, or that the staff account is enabled.
- A session ends at the first of: sign-out (row deleted, so every replica agrees), IDLE
  seconds without a request, MAX seconds after sign-in.
- The CSRF token is HMAC-SHA256(cookie secret, label): the server recomputes it from the
  cookie, so nothing more is stored, and page script (which cannot read the HttpOnly
  cookie) learns it only from an authenticated same-origin response.
- Tenant sessions and staff sessions are different kinds under different cookie names; a
  lookup for one kind never accepts the other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.core.clock import Clock, isoformat, parse_iso
from gateway.store.sqlite import Database
from gateway.tenants.accounts import StaffPrincipal, TenantPrincipal

__all__ = ["IDLE_SECONDS", "MAX_SECONDS", "Session", "csrf_matches", "csrf_token",
           "end_session", "lookup_staff", "lookup_tenant", "start_session"]

# OWASP's Session Management Cheat Sheet suggests 15-30 minutes idle for applications
# handling sensitive data; approving staff access is such an action, so the short end
# plus a working day's absolute cap (re-sign-in at least daily).
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 60 * 60
# last_seen_at is rewritten at most this often per session: one write per minute of
# activity instead of one per request, at the cost of up to a minute's slack on IDLE.
TOUCH_EVERY_SECONDS = 60

_SECRET_PREFIX = "vgwc_"
_SECRET_RE = re.compile(r"^vgwc_[A-Za-z0-9_-]{43}$")
_CSRF_LABEL = b"vgw console csrf v1"


@dataclass(frozen=True)
class Session:
    kind: str
    expires_at: datetime
    principal: TenantPrincipal | StaffPrincipal


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode("ascii"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(secret: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret), presented or "")


async def start_session(db: Database, clock: Clock,
                        principal: TenantPrincipal | StaffPrincipal) -> tuple[str, Session]:
    """A new session for an already authenticated principal: (cookie secret, session)."""
    secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    expires = now + timedelta(seconds=MAX_SECONDS)
    if isinstance(principal, TenantPrincipal):
        kind, row = "tenant", (principal.tenant_id, principal.key_id, None)
    else:
        kind, row = "staff", (None, None, principal.staff_id)

    def unit(tx) -> None:
        # Expired rows go here rather than in a background job: sign-ins are rare, and a
        # row past expires_at is refused by lookups anyway.
        tx.execute("DELETE FROM console_sessions WHERE expires_at < ?", (isoformat(now),))
        tx.execute("INSERT INTO console_sessions (token_hash, kind, tenant_id, key_id,"
                   " staff_id, created_at, last_seen_at, expires_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (_hash(secret), kind, *row, isoformat(now), isoformat(now),
                    isoformat(expires)))

    await db.write(unit)
    return secret, Session(kind, expires, principal)


async def _live_row(db: Database, clock: Clock, kind: str, secret: str | None):
    if not secret or not _SECRET_RE.match(secret):
        return None
    row = await db.fetchone(
        "SELECT token_hash, tenant_id, key_id, staff_id, last_seen_at, expires_at"
        " FROM console_sessions WHERE token_hash = ? AND kind = ?", (_hash(secret), kind))
    if row is None:
        return None
    now = clock.now()
    last_seen = parse_iso(row["last_seen_at"])
    if now >= parse_iso(row["expires_at"]) or (now - last_seen).total_seconds() >= IDLE_SECONDS:
        await db.write(lambda tx: tx.execute(
            "DELETE FROM console_sessions WHERE token_hash = ?", (row["token_hash"],)))
        return None
    if (now - last_seen).total_seconds() >= TOUCH_EVERY_SECONDS:
        await db.write(lambda tx: tx.execute(
            "UPDATE console_sessions SET last_seen_at = ? WHERE token_hash = ?",
            (isoformat(now), row["token_hash"])))
    return row


async def lookup_tenant(db: Database, clock: Clock, secret: str | None) -> Session | None:
    row = await _live_row(db, clock, "tenant", secret)
    if row is None:
        return None
    key = await db.fetchone(
        "SELECT 1 FROM tenant_api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?"
        " AND k.tenant_id = ? AND k.revoked_at IS NULL AND t.state = 'active'",
        (row["key_id"], row["tenant_id"]))
    if key is None:
        return None
    return Session("tenant", parse_iso(row["expires_at"]),
                   TenantPrincipal(row["tenant_id"], row["key_id"]))


async def lookup_staff(db: Database, clock: Clock, secret: str | None) -> Session | None:
    row = await _live_row(db, clock, "staff", secret)
    if row is None:
        return None
    staff = await db.fetchone(
        "SELECT pseudonym, employer, country FROM staff WHERE id = ? AND disabled_at IS NULL",
        (row["staff_id"],))
    if staff is None:
        return None
    return Session("staff", parse_iso(row["expires_at"]),
                   StaffPrincipal(row["staff_id"], staff["pseudonym"], staff["employer"],
                                  staff["country"]))


async def end_session(db: Database, secret: str | None) -> None:
    if secret and _SECRET_RE.match(secret):
        await db.write(lambda tx: tx.execute(
            "DELETE FROM console_sessions WHERE token_hash = ?", (_hash(secret),)))
