"""Tenants, their API keys, their region, and operator staff accounts.

Tokens are `vgw_<key id>_<secret>` (tenants) and `vgws_<staff id>_<secret>` (staff). Only
SHA-256 of the secret is stored: the secret is 256 random bits, so a fast hash is enough,
and the comparison is constant-time. The key id selects the row without touching the
secret.

Regions (docs/residency.md): a tenant may be pinned to one of the `[regions.<name>]` at
creation; its region changes only through `move_region`, which re-encrypts the tenant's
keys into the new region (a new tenant root key stored there wraps its key rows and unit
segments: gateway/tenants/root_rotation.py), copies its blob ciphertext and other key-store
objects, checks the copies, destroys the old ones (the old tenant root key with them) and
logs the move in the tenant's transparency log. No record or audio is decrypted on the
way. A crash at any point leaves the move announced (`tenants.moving_to`): running it again
finishes it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import string
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.core.clock import Clock, isoformat
from gateway.errors import DomainError, invalid
from gateway.store.database import Database, IntegrityError, WriteTx
from gateway.store.regions import MOVE_SETTLE_SECONDS, RegionDirectory
from gateway.store.transfer import _copy_blob, _digest
from gateway.tenants.keyring import KeyRing, next_tenant_root_key_name, tenant_root_key_name
from gateway.tenants.root_rotation import rotate_tenant_root_key

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


def unknown_region(region: str, directory: RegionDirectory | None) -> DomainError:
    configured = directory.regions if directory is not None else []
    listed = ", ".join(configured) if configured else "none ([regions] is not configured)"
    return DomainError(422, "unknown-region", "unknown region",
                       f"region: no region named {region!r} is configured; configured"
                       f" regions: {listed}", field="region", regions=list(configured))


async def create_tenant(db: Database, keyring: KeyRing, clock: Clock, name: str, *,
                        region: str | None = None,
                        directory: RegionDirectory | None = None) -> tuple[str, str]:
    """Create a tenant with fresh keys and a first API key, pinned to `region` (one of the
    configured regions; None: the [storage] stores). Returns (tenant_id, api_key)."""
    validate_name(name)
    if region is not None and (directory is None or region not in directory.regions):
        raise unknown_region(region, directory)
    tenant_id = str(uuid.uuid4())
    key_id, token, secret_hash = _new_token(TENANT_TOKEN_PREFIX)
    now = isoformat(clock.now())

    if directory is not None:
        # Its root key is stored before its row exists: tell the router where it goes.
        directory.assign(tenant_id, region)
    wrapped_keys = await keyring.new_tenant_keys(tenant_id)

    def unit(tx: WriteTx) -> None:
        try:
            tx.execute("INSERT INTO tenants (id, name, created_at, region) VALUES (?, ?, ?, ?)",
                       (tenant_id, name, now, region))
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


async def get_tenant(db: Database, tenant_id: str) -> dict[str, Any]:
    """The tenant's own view of itself (GET /v1/tenant): where its data lives."""
    row = await db.fetchone("SELECT id, name, state, created_at, region, moving_to FROM"
                            " tenants WHERE id = ?", (tenant_id,))
    if row is None:
        raise DomainError(404, "not-found", "tenant not found")
    return {"id": row["id"], "name": row["name"], "state": row["state"],
            "created_at": row["created_at"], "region": row["region"],
            "moving_to": row["moving_to"]}


async def move_region(services: Any, audit: Any, tenant_id: str, target: str,
                      settle_seconds: float = MOVE_SETTLE_SECONDS) -> dict[str, Any]:
    """Move the tenant's blobs and key objects into region `target`'s stores, verify the
    copies, destroy the old ones and log the move. Resumable: run it again after a crash.

    Order (each step safe to repeat): announce the move (`moving_to`: new objects are
    written there, reads look there first), wait until every replica's cached placement
    has expired, rotate the tenant root key (the new key and every segment it rewraps are
    written to the new region only), copy the remaining objects that are missing, compare
    every copy, destroy the old copies (the old tenant root key and old-key segments
    included), then commit the new region with its log entry in one write unit."""
    db, directory = services.db, services.regions
    if directory is None or target not in directory.regions:
        raise unknown_region(target, directory)
    row = await db.fetchone("SELECT region, moving_to FROM tenants WHERE id = ?",
                            (tenant_id,))
    if row is None:
        raise DomainError(404, "not-found", "tenant not found")
    source = row["region"]
    if row["moving_to"] not in (None, target):
        raise DomainError(409, "conflict", "another move is under way",
                          f"the tenant is moving to region {row['moving_to']!r}; finish"
                          " that move first", moving_to=row["moving_to"])
    if source == target:
        raise DomainError(409, "conflict", "the tenant is already in this region",
                          f"region {target!r}", region=target)
    await db.write(lambda tx: tx.execute("UPDATE tenants SET moving_to = ? WHERE id = ?",
                                         (target, tenant_id)))
    directory.forget(tenant_id)
    await asyncio.sleep(settle_seconds)
    blobs, keys = services.blobs, services.key_store
    old_blobs, new_blobs = blobs.store_named(source), blobs.store_named(target)
    old_keys, new_keys = keys.store_named(source), keys.store_named(target)

    # Re-encrypt rather than copy the key material: unless a cut-short run already
    # finished it, a new tenant root key is made in the target region (keys.put routes to
    # `moving_to`) and every row and segment the old one wrapped is rewrapped under it.
    rotated = None
    if (await new_keys.get(tenant_root_key_name(tenant_id)) is None
            or await keys.get(next_tenant_root_key_name(tenant_id)) is not None):
        rotated = await rotate_tenant_root_key(services, audit, tenant_id,
                                               settle_seconds=settle_seconds,
                                               reason=f"move to region {target}")
    reencrypted_prefixes = (tenant_root_key_name(tenant_id), f"{tenant_id}/units/")

    objects = await old_blobs.list_objects(tenant_id)
    moved_bytes = 0
    for object_id in objects:
        size, digest = await _digest(old_blobs, tenant_id, object_id)
        if not (await new_blobs.exists(tenant_id, object_id)
                and await _digest(new_blobs, tenant_id, object_id) == (size, digest)):
            await _copy_blob(old_blobs, new_blobs, tenant_id, object_id)
        if await _digest(new_blobs, tenant_id, object_id) != (size, digest):
            raise RuntimeError(f"blob {object_id}: the copy in region {target} differs;"
                               " nothing was deleted, run the move again")
        moved_bytes += size
    names = await old_keys.list(tenant_id)
    for name in names:
        if name.startswith(reencrypted_prefixes):
            continue   # the old-key copies: the new region has its own, rewrapped
        data = await old_keys.get(name)
        if data is None:
            continue
        if await new_keys.get(name) != data:
            await new_keys.put(name, data)
        if await new_keys.get(name) != data:
            raise RuntimeError(f"key object {name}: the copy in region {target} differs;"
                               " nothing was deleted, run the move again")
    # Every object is in the new region and verified: destroy the old copies (key objects
    # by the store's own erasure: overwritten files, every S3 version).
    await old_blobs.delete_tenant(tenant_id)
    for name in names:
        await old_keys.delete(name)
    leftovers = (await old_blobs.list_objects(tenant_id), await old_keys.list(tenant_id))
    if any(leftovers):
        raise RuntimeError("objects are left in the old region; run the move again")

    details = {"event": "region_moved", "from": source or "default", "to": target,
               "blobs": len(objects), "blob_bytes": moved_bytes, "key_objects": len(names),
               "tenant_root_key": "new key in the target region; old key destroyed",
               "segments_rewrapped": rotated["segments_rewrapped"] if rotated else 0}

    def commit(tx: WriteTx) -> int:
        tx.execute("UPDATE tenants SET region = ?, moving_to = NULL WHERE id = ?",
                   (target, tenant_id))
        return audit.append_in_tx(tx, tenant_id, {
            "kind": "key_event", "actor": {"type": "system", "id": "operator-cli"},
            "outcome": "moved", "scope": "tenant", "details": details})

    seq = await db.write(commit)
    directory.forget(tenant_id)
    return {"tenant_id": tenant_id, **details, "log_index": seq}


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
