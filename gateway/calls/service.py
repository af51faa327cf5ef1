"""Reading calls back: the tenant's view, with parties decrypted."""

from __future__ import annotations

import base64
import json
from typing import Any

import keys
from adapters.events import CALL_STATUSES
from gateway.core.clock import isoformat, parse_time_field
from gateway.errors import invalid, not_found
from gateway.ingest.pipeline import PARTIES_RECORD
from gateway.store import Database
from gateway.store.columns import micros_text
from gateway.tenants.keyring import KeyRing

MAX_PAGE = 200
DEFAULT_PAGE = 50
# Recordings in these states are visible to the tenant; 'writing' never is.
VISIBLE_RECORDING_STATES = ("available", "incomplete")

_CALL_COLUMNS = ("id, integration_id, platform, platform_call_id, status, direction,"
                 " started_at, ended_at, duration_seconds, sort_time, parties, created_at,"
                 " updated_at")


def encode_cursor(sort_time: str, call_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort_time, call_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (sort key, id) pair `encode_cursor` wrote. Anything else, including nested or
    non-text JSON a client crafted, is a 422 naming the cursor (never a 500)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str)
                                                                for v in value):
            value[0].encode()       # a lone surrogate cannot reach the database
            value[1].encode()
            return value[0], value[1]
    except (ValueError, UnicodeError, RecursionError):
        pass
    raise invalid("cursor", "not a cursor this API issued")


def parse_time_param(name: str, value: str | None) -> str | None:
    """A query-string time filter as stored text (UTC, `Z`); None when absent."""
    return None if value is None else isoformat(parse_time_field(name, value))


class CallService:
    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self.db = db
        self.keyring = keyring

    async def list(self, tenant_id: str, *, status: str | None = None,
                   since: str | None = None, until: str | None = None,
                   cursor: str | None = None, limit: int = DEFAULT_PAGE) -> dict[str, Any]:
        if status is not None and status not in CALL_STATUSES:
            raise invalid("status", "must be one of " + ", ".join(CALL_STATUSES))
        if not 1 <= limit <= MAX_PAGE:
            raise invalid("limit", f"must be between 1 and {MAX_PAGE}")
        where, params = ["tenant_id = ?"], [tenant_id]
        if status:
            where.append("status = ?")
            params.append(status)
        if since:
            where.append("sort_time >= ?")
            params.append(since)
        if until:
            where.append("sort_time < ?")
            params.append(until)
        if cursor:
            where.append("(sort_time, id) < (?, ?)")
            params.extend(decode_cursor(cursor))
        rows = await self.db.fetchall(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(where)}"
            " ORDER BY sort_time DESC, id DESC LIMIT ?", (*params, limit + 1))
        ring = await self.keyring.for_tenant(tenant_id)
        await self.keyring.prefetch_units(tenant_id, [row["parties"] for row in rows[:limit]])
        items = [self._render(ring, row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["sort_time"], last["id"])
        return {"items": items, "next_cursor": next_cursor}

    async def get(self, tenant_id: str, call_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ? AND tenant_id = ?",
            (call_id, tenant_id))
        if row is None:
            raise not_found("call")
        ring = await self.keyring.for_tenant(tenant_id)
        await self.keyring.prefetch_units(tenant_id, [row["parties"]])
        call = self._render(ring, row)
        events = await self.db.fetchall(
            "SELECT kind, status, received_at, occurred_at FROM call_events WHERE call_id = ?"
            " ORDER BY received_at, id", (call_id,))
        # Times are stored as microseconds (migration 0013), served as text.
        call["events"] = [{"kind": e["kind"], "status": e["status"],
                           "received_at": micros_text(e["received_at"]),
                           "occurred_at": micros_text(e["occurred_at"])} for e in events]
        recordings = await self.db.fetchall(
            "SELECT id, state, source, created_at, stats FROM recordings WHERE call_id = ? AND"
            f" state IN ({','.join('?' * len(VISIBLE_RECORDING_STATES))}) ORDER BY created_at",
            (call_id, *VISIBLE_RECORDING_STATES))
        # `stats`: what was measured at ingest (gateway/calls/recordings.technical_stats).
        call["recordings"] = [{**dict(r), "stats": json.loads(r["stats"]) if r["stats"] else None}
                              for r in recordings]
        return call

    async def exists(self, tenant_id: str, call_id: str) -> bool:
        return await self.db.fetchone("SELECT 1 FROM calls WHERE id = ? AND tenant_id = ?",
                                      (call_id, tenant_id)) is not None

    @staticmethod
    def _render(ring: Any, row: Any) -> dict[str, Any]:
        parties = {"from": None, "to": None}
        erased = False
        if row["parties"] is not None:
            try:
                parties = json.loads(ring.open_record(PARTIES_RECORD, row["id"],
                                                      bytes(row["parties"])))
            except keys.DecryptionError:
                if keys.unit_ref(bytes(row["parties"])) is None:
                    raise
                # Its unit key left the key store: a row a restored backup brought back
                # before the deletion ledger's replay removes it. Never a 500, never data.
                erased = True
        return {"id": row["id"], "integration_id": row["integration_id"],
                "platform": row["platform"], "platform_call_id": row["platform_call_id"],
                "status": row["status"], "direction": row["direction"],
                "from": parties.get("from"), "to": parties.get("to"),
                "started_at": row["started_at"], "ended_at": row["ended_at"],
                "duration_seconds": row["duration_seconds"],
                "created_at": row["created_at"], "updated_at": row["updated_at"],
                **({"state": "erased"} if erased else {})}
