"""Legal holds: per tenant, call or phone number; while active they suspend deletion (the
sweep, erasure and rectification all skip what a hold covers).

Invariants:
- A hold's number and reason are sealed records bound to the hold id, under the hold's
  own unit key in the key store (gateway/lifecycle/unit_keys.py; their columns stay
  registered for key rotation, which leaves unit-key records as they are). Releasing the
  hold deletes that key (ledger entry first): a released hold shows neither number nor
  reason again, from any copy of the database.
- A number hold is found by blind index, then the call's parties are decrypted and
  compared exactly (a truncated index: by design other numbers share a value). Inside a write unit
  (`active_tx`) the key store cannot be read: a number hold whose number is not yet known
  to this process holds every call in its blind-index bucket (never fewer calls), until
  `active()` (or reading the hold) has loaded its key.
- Writers re-read the holds inside their own write unit (`active_tx`), so a hold committed
  before the unit is always seen by it.
- A hold's sealed number never changes, so decrypted numbers are cached by hold id; a
  released hold is forgotten.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat, parse_time_field
from gateway.core.phone import PartyError, normalise_party
from gateway.errors import invalid, not_found
from gateway.ingest.pipeline import PARTIES_RECORD
from gateway.store import Database, WriteTx, sealed
from gateway.tenants.keyring import KeyRing

HOLD_SCOPES = ("tenant", "call", "phone_number")
# Not a number (no "+"): stands for "every number in this blind-index bucket".
ANY_NUMBER = "*"
HOLD_NUMBER_RECORD = "legal-hold-number"
HOLD_REASON_RECORD = "legal-hold-reason"
MAX_REASON_LENGTH = 500
sealed.register(sealed.SealedColumn("legal_holds", "number_sealed", HOLD_NUMBER_RECORD))
sealed.register(sealed.SealedColumn("legal_holds", "reason", HOLD_REASON_RECORD))

_ACTIVE_HOLDS_SQL = (
    "SELECT id, scope, call_id, number_index, number_sealed FROM legal_holds"
    " WHERE tenant_id = ? AND released_at IS NULL AND (ends_at IS NULL OR ends_at > ?)")
_HOLD_COLUMNS = ("id, scope, call_id, number_sealed, reason, created_by, created_at,"
                 " ends_at, released_at")


def parse_number(raw: Any, name: str, default_region: str = "") -> str:
    """A phone number (or address) written any way a person writes it, as E.164; 422
    naming `name` otherwise (the value is never echoed)."""
    if not isinstance(raw, str):
        raise invalid(name, "must be a phone number (any formatting) or address")
    try:
        return normalise_party(raw, default_region)
    except PartyError as exc:  # the message says what to fix and never echoes the value
        raise invalid(name, str(exc)) from None


@dataclass(frozen=True)
class Holds:
    """A tenant's active holds at one moment, ready to test rows against."""

    tenant: bool = False
    calls: frozenset[str] = frozenset()
    # blind index -> the held E.164 numbers with that index (ANY_NUMBER: a hold whose
    # number could not be opened here; every number with the index counts as held)
    numbers: dict[int, frozenset[str]] = field(default_factory=dict)

    def call_held(self, ring: keys.TenantKeys | None, call_id: str, from_index: int | None,
                  to_index: int | None, parties: bytes | None, *, units: Any = None) -> bool:
        """`units`: where to find the parties' unit key (KeyRing.prefetch_units' mapping),
        if not the ring's shared cache."""
        if self.tenant or call_id in self.calls:
            return True
        if not self.numbers or parties is None:
            return False
        if from_index not in self.numbers and to_index not in self.numbers:
            return False
        # A blind-index hit is only a candidate (the index is truncated: others share it).
        assert ring is not None
        decoded = json.loads(ring.open_record(PARTIES_RECORD, call_id, bytes(parties),
                                              units=units))
        for role, index in (("from", from_index), ("to", to_index)):
            held = self.numbers.get(index)
            if held is not None and (decoded.get(role) in held or ANY_NUMBER in held):
                return True
        return False


class _HoldNumbers:
    """Decrypted held numbers by hold id (a hold's sealed number never changes)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def build(self, rows: Iterable[Any], ring: keys.TenantKeys | None) -> Holds:
        tenant = False
        calls: set[str] = set()
        numbers: dict[int, set[str]] = {}
        for row in rows:
            if row["scope"] == "tenant":
                tenant = True
            elif row["scope"] == "call":
                calls.add(row["call_id"])
            elif row["scope"] == "phone_number":
                number = self._cache.get(row["id"])
                if number is None:
                    assert ring is not None
                    try:
                        number = ring.open_record(HOLD_NUMBER_RECORD, row["id"],
                                                  bytes(row["number_sealed"])).decode()
                        self._cache[row["id"]] = number
                    except keys.DecryptionError:
                        if keys.unit_ref(bytes(row["number_sealed"])) is None:
                            raise
                        # Its key is not loaded in this process: hold the whole bucket.
                        numbers.setdefault(row["number_index"], set()).add(ANY_NUMBER)
                        # Mid-reindex its calls may be under the other index version too:
                        # hold them all rather than fewer.
                        tenant = tenant or len(ring.blind_index_versions) > 1
                        continue
                # Keyed by the number's index under every version in use, so a call
                # indexed under either side of a reindex is still seen as held.
                for index in (ring.blind_indexes(number) if ring is not None
                              else (row["number_index"],)):
                    numbers.setdefault(index, set()).add(number)
        return Holds(tenant, frozenset(calls), {k: frozenset(v) for k, v in numbers.items()})

    def forget(self, hold_id: str) -> None:
        self._cache.pop(hold_id, None)


class LegalHolds:
    def __init__(self, db: Database, keyring: KeyRing, clock: Clock,
                 default_region: str = "") -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.default_region = default_region
        self._numbers = _HoldNumbers()

    # -- reading, for every deleter --------------------------------------------------------
    def active_tx(self, tx: WriteTx, tenant_id: str, ring: keys.TenantKeys | None) -> Holds:
        """The tenant's active holds, read inside a write unit."""
        return self._numbers.build(
            tx.fetchall(_ACTIVE_HOLDS_SQL, (tenant_id, isoformat(self.clock.now()))), ring)

    async def active(self, tenant_id: str, ring: keys.TenantKeys | None) -> Holds:
        rows = await self.db.fetchall(_ACTIVE_HOLDS_SQL, (tenant_id, isoformat(self.clock.now())))
        await self.keyring.prefetch_units(tenant_id, [r["number_sealed"] for r in rows])
        return self._numbers.build(rows, ring)

    # -- the tenant API --------------------------------------------------------------------
    async def create(self, tenant_id: str, actor: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        scope = body.get("scope")
        if scope not in HOLD_SCOPES:
            raise invalid("scope", "must be one of " + ", ".join(HOLD_SCOPES))
        reason = body.get("reason")
        if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= MAX_REASON_LENGTH:
            raise invalid("reason", f"must be 1-{MAX_REASON_LENGTH} characters")
        now = self.clock.now()
        ends_at = None
        if body.get("ends_at") is not None:
            ends = parse_time_field("ends_at", body["ends_at"])
            if ends <= now:
                raise invalid("ends_at", "must be in the future")
            ends_at = isoformat(ends)
        extra = set(body) - {"scope", "reason", "ends_at", "call_id", "phone_number"}
        if extra:
            raise invalid(sorted(extra)[0], "unknown field")
        hold_id = str(uuid.uuid4())
        ring = await self.keyring.for_tenant(tenant_id)
        # The hold's own key (durable in the key store before the row commits).
        unit = (await self.keyring.units.new_keys(tenant_id, 1))[0] \
            if self.keyring.units is not None else None
        call_id = number_index = number_sealed = None
        if scope == "call":
            call_id = body.get("call_id")
            if not isinstance(call_id, str) or await self.db.fetchone(
                    "SELECT 1 FROM calls WHERE id = ? AND tenant_id = ?",
                    (call_id, tenant_id)) is None:
                raise not_found("call")
        elif scope == "phone_number":
            number = parse_number(body.get("phone_number"), "phone_number", self.default_region)
            number_index = ring.blind_index(number)
            number_sealed = ring.seal_record(HOLD_NUMBER_RECORD, hold_id, number.encode(),
                                             unit=unit)
        elif "call_id" in body or "phone_number" in body:
            raise invalid("scope", "a tenant hold takes no call_id or phone_number")
        sealed_reason = ring.seal_record(HOLD_REASON_RECORD, hold_id, reason.strip().encode(),
                                         unit=unit)
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO legal_holds (id, tenant_id, scope, call_id, number_index,"
            " number_sealed, reason, created_by, created_at, ends_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hold_id, tenant_id, scope, call_id, number_index, number_sealed, sealed_reason,
             actor, isoformat(now), ends_at)))
        return await self.get(tenant_id, hold_id)

    @staticmethod
    def _open(ring: keys.TenantKeys, kind: str, hold_id: str, sealed: Any) -> str | None:
        """A sealed field of a hold; None once its key was deleted (the hold released)."""
        if sealed is None:
            return None
        try:
            return ring.open_record(kind, hold_id, bytes(sealed)).decode()
        except keys.DecryptionError:
            if keys.unit_ref(bytes(sealed)) is None:
                raise
            return None

    def _render(self, ring: keys.TenantKeys, row: Any) -> dict[str, Any]:
        now = isoformat(self.clock.now())
        active = row["released_at"] is None and (row["ends_at"] is None or row["ends_at"] > now)
        return {"id": row["id"], "scope": row["scope"], "call_id": row["call_id"],
                "phone_number": self._open(ring, HOLD_NUMBER_RECORD, row["id"],
                                           row["number_sealed"]),
                "reason": self._open(ring, HOLD_REASON_RECORD, row["id"], row["reason"]),
                "created_at": row["created_at"], "ends_at": row["ends_at"],
                "released_at": row["released_at"], "active": active}

    async def get(self, tenant_id: str, hold_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE id = ? AND tenant_id = ?",
            (hold_id, tenant_id))
        if row is None:
            raise not_found("legal hold")
        await self.keyring.prefetch_units(tenant_id, [row["number_sealed"], row["reason"]])
        return self._render(await self.keyring.for_tenant(tenant_id), row)

    async def list(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE tenant_id = ?"
            " ORDER BY created_at, id", (tenant_id,))
        if not rows:
            return []
        await self.keyring.prefetch_units(
            tenant_id, [v for r in rows for v in (r["number_sealed"], r["reason"])])
        ring = await self.keyring.for_tenant(tenant_id)
        return [self._render(ring, r) for r in rows]

    async def release(self, tenant_id: str, hold_id: str) -> None:
        """Release the hold, then delete its key from the key store: its number and reason
        are unreadable from then on, in this database and in every copy of it."""
        now = isoformat(self.clock.now())
        row = await self.db.write(lambda tx: tx.execute(
            "UPDATE legal_holds SET released_at = COALESCE(released_at, ?)"
            " WHERE id = ? AND tenant_id = ?", (now, hold_id, tenant_id)) and tx.fetchone(
            "SELECT number_sealed, reason FROM legal_holds WHERE id = ?", (hold_id,)))
        if not row:
            raise not_found("legal hold")
        self._numbers.forget(hold_id)
        if self.keyring.units is not None:
            await self.keyring.units.erase(tenant_id, [row["number_sealed"], row["reason"]])


def classify(row: Any, holds: Holds, ring: keys.TenantKeys | None, units: Any = None
             ) -> str:
    """What the sweep does with one candidate (a `class_queries` select row): 'delete', or
    why it stays: 'held', 'restricted' (a data-subject restriction, GDPR Art. 18),
    'busy' (a recording being written) or 'unreadable' (a hold candidate whose parties do
    not decrypt: kept, since the sweep cannot tell whether the hold covers it)."""
    try:
        held = holds.call_held(ring, row["call_id"], row["from_index"], row["to_index"],
                               row["parties"], units=units)
    except keys.DecryptionError:
        return "unreadable"
    if held:
        return "held"
    if row["restricted_at"] is not None:
        return "restricted"
    if row["busy"]:
        return "busy"
    return "delete"
