"""Tenants, their API keys, and operator staff accounts.

Tokens are `vgw_<key id>_<secret>` (tenants) and `vgws_<staff id>_<secret>` (staff). Only
SHA-256 of the secret is stored: the secret is 256 random bits, so a fast hash is enough,
and the comparison is constant-time. The key id selects the row without touching the
secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from dataclasses import dataclass

from gateway.core.clock import Clock, isoformat
from gateway.errors import DomainError, invalid
from gateway.store.database import Database, IntegrityError, WriteTx
from gateway.tenants.keyring import KeyRing

TENANT_TOKEN_PREFIX = "vgw"
STAFF_TOKEN_PREFIX = "vgws"
_TOKEN_RE = re.compile(r"^(vgws?)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME_MAX = 100
_LONG_DIGITS_RE = re.compile(r"[0-9][0-9 .()-]{5,}[0-9]")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


@dataclass(frozen=True)
class TenantPrincipal:
    tenant_id: str
    key_id: str


@dataclass(frozen=True)
class StaffPrincipal:
    staff_id: str
    pseudonym: str
    employer: str
    country: str


def _new_token(prefix: str) -> tuple[str, str, bytes]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{prefix}_{key_id}_{secret}", hashlib.sha256(secret.encode()).digest()


def _split_token(token: str, prefix: str) -> tuple[str, bytes] | None:
    match = _TOKEN_RE.match(token)
    if not match or match.group(1) != prefix:
        return None
    return match.group(2), hashlib.sha256(match.group(3).encode()).digest()


def validate_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise invalid(field, "1-100 letters, digits, space, dot, dash or underscore")
    # Names end up in audit entries, which refuse anything that looks like a phone number.
    if _LONG_DIGITS_RE.search(name):
        raise invalid(field, "must not contain a run of 7 or more digits")
    return name


async def create_tenant(db: Database, keyring: KeyRing, clock: Clock, name: str
                        ) -> tuple[str, str]:
    """Create a tenant with fresh keys and a first API key. Returns (tenant_id, api_key)."""
    validate_name(name)
    tenant_id = str(uuid.uuid4())
    key_id, token, secret_hash = _new_token(TENANT_TOKEN_PREFIX)
    now = isoformat(clock.now())

    wrapped_keys = await keyring.new_tenant_keys(tenant_id)

    def unit(tx: WriteTx) -> None:
        try:
            tx.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                             (tenant_id, name, now))
        except IntegrityError as exc:
            raise DomainError(409, "conflict", "a tenant with this name exists") from exc
        keyring.store_new_tenant_keys(tx, tenant_id, wrapped_keys)
        tx.execute("INSERT INTO tenant_api_keys (id, tenant_id, secret_hash, created_at)"
                         " VALUES (?, ?, ?, ?)", (key_id, tenant_id, secret_hash, now))

    await db.write(unit)
    return tenant_id, token


async def create_api_key(db: Database, clock: Clock, tenant_id: str) -> str:
    key_id, token, secret_hash = _new_token(TENANT_TOKEN_PREFIX)
    await db.write(lambda tx: tx.execute(
        "INSERT INTO tenant_api_keys (id, tenant_id, secret_hash, created_at)"
        " VALUES (?, ?, ?, ?)", (key_id, tenant_id, secret_hash, isoformat(clock.now()))))
    return token


async def authenticate_tenant(db: Database, token: str) -> TenantPrincipal | None:
    parts = _split_token(token, TENANT_TOKEN_PREFIX)
    if parts is None:
        return None
    key_id, presented = parts
    row = await db.fetchone(
        "SELECT k.tenant_id, k.secret_hash FROM tenant_api_keys k JOIN tenants t"
        " ON t.id = k.tenant_id WHERE k.id = ? AND k.revoked_at IS NULL AND t.state = 'active'",
        (key_id,))
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), presented):
        return None
    return TenantPrincipal(row["tenant_id"], key_id)


async def tenant_exists(db: Database, tenant_id: str) -> bool:
    return await db.fetchone("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)) is not None


async def create_staff(db: Database, clock: Clock, *, name: str, employer: str, country: str
                       ) -> tuple[str, str, str]:
    """Create a staff account. Returns (staff_id, pseudonym, token)."""
    validate_name(name)
    validate_name(employer, "employer")
    if not re.fullmatch(r"[A-Z]{2}", country or ""):
        raise invalid("country", "ISO 3166-1 alpha-2 code, e.g. DE")
    staff_id, token, secret_hash = _new_token(STAFF_TOKEN_PREFIX)
    # A pseudonym for audit entries: stable, meaningless outside the operator.
    # Letters only: audit entries refuse anything shaped like a phone number, and random
    # hex sometimes holds a run of seven digits.
    pseudonym = "staff-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
    await db.write(lambda tx: tx.execute(
        "INSERT INTO staff (id, pseudonym, name, employer, country, secret_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (staff_id, pseudonym, name, employer, country, secret_hash, isoformat(clock.now()))))
    return staff_id, pseudonym, token


async def authenticate_staff(db: Database, token: str) -> StaffPrincipal | None:
    parts = _split_token(token, STAFF_TOKEN_PREFIX)
    if parts is None:
        return None
    staff_id, presented = parts
    row = await db.fetchone(
        "SELECT pseudonym, employer, country, secret_hash FROM staff"
        " WHERE id = ? AND disabled_at IS NULL", (staff_id,))
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), presented):
        return None
    return StaffPrincipal(staff_id, row["pseudonym"], row["employer"], row["country"])
