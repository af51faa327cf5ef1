"""Cross-border access (issue 15, items 3 and 4; docs/residency.md): which staff reads are
transfers out of a tenant's region, under which legal basis, and the tenant's report of
them (`GET /v1/transfers`) read back from its transparency log.

    a staff read of a pinned tenant's data, by a staff member whose country is not one of
    the region's `countries`  ->  a transfer: its `diagnostic_read` log entry carries
    details.transfer = {country, region, legal_basis}

Invariants:
- The log is the record: a transfer is written into the read's own log entry, inside the
  write unit that serves the read (durable before the answer, as every read is), and the
  report is computed from those entries, so report and log cannot disagree. Each item
  carries the entry's index (and leaf hash) for an inclusion proof.
- A tenant without a region, or a staff member inside its region, makes no transfer.
- With `[transfers] require_legal_basis` (the default), a request from a country with no
  configured legal basis is refused at creation (rule `transfers.legal_basis`), so no read
  ever happens without one.
- Pure of HTTP: errors are DomainErrors.
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.config import TransfersConfig
from gateway.errors import invalid
from gateway.store import Database, WriteTx
from gateway.tenants.accounts import StaffPrincipal
from gateway.transparency.entries import decode_entry
from gateway.transparency.merkle import hash_leaf

__all__ = ["Transfers", "LEGAL_BASIS_RULE"]

LEGAL_BASIS_RULE = "transfers.legal_basis"
SECTION = "transfers"
# Entries read per page of the scan, and at most per report request: a report page stops
# early (with a cursor) rather than read a huge log in one request.
SCAN_PAGE = 500
MAX_SCAN = 20_000
MAX_ITEMS = 200


class Transfers:
    def __init__(self, config: Any, db: Database) -> None:
        self.regions = config.regions
        self.cfg: TransfersConfig = config.section(SECTION)
        self.db = db

    # -- classification -------------------------------------------------------------------
    def transfer(self, region: str | None, country: str) -> dict[str, Any] | None:
        """The transfer a read by staff in `country` of data in `region` is, or None."""
        if region is None or region not in self.regions:
            return None
        if country in self.regions[region].countries:
            return None
        return {"country": country, "region": region,
                "legal_basis": self.cfg.basis_for(country)}

    async def tenant_region(self, tenant_id: str) -> str | None:
        row = await self.db.fetchone("SELECT region FROM tenants WHERE id = ?", (tenant_id,))
        return row["region"] if row is not None else None

    async def request_refusal(self, tenant_id: str, staff: StaffPrincipal) -> str | None:
        """LEGAL_BASIS_RULE if this staff member's reads would be transfers without a
        configured legal basis and the operator requires one; else None."""
        if not self.cfg.require_legal_basis:
            return None
        transfer = self.transfer(await self.tenant_region(tenant_id), staff.country)
        if transfer is not None and transfer["legal_basis"] is None:
            return LEGAL_BASIS_RULE
        return None

    def read_details(self, tx: WriteTx, tenant_id: str, staff: StaffPrincipal
                     ) -> dict[str, Any]:
        """Extra details for a served read's log entry (inside its write unit): the
        transfer, if it is one."""
        row = tx.fetchone("SELECT region FROM tenants WHERE id = ?", (tenant_id,))
        transfer = self.transfer(row["region"] if row is not None else None, staff.country)
        return {"transfer": transfer} if transfer is not None else {}

    # -- the report -----------------------------------------------------------------------
    async def report(self, audit: Any, tenant_id: str, *, since: str | None,
                     cursor: str | None, limit: int) -> dict[str, Any]:
        """Transfers recorded in the tenant's log at or after `since` (RFC 3339, UTC as
        the log writes it), oldest first, from entry `cursor` on."""
        if not 1 <= limit <= MAX_ITEMS:
            raise invalid("limit", f"must be between 1 and {MAX_ITEMS}")
        size = await audit.size(tenant_id)
        if cursor is not None:
            if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
                raise invalid("cursor", "must be next_cursor of the previous page")
            start = int(cursor)
        else:
            start = await self._first_at(audit, tenant_id, size, since) if since else 0
        items: list[dict[str, Any]] = []
        seq = start
        scanned_until = min(size, start + MAX_SCAN)
        while seq < scanned_until and len(items) < limit:
            end = min(scanned_until, seq + SCAN_PAGE)
            for offset, data in enumerate(await audit.entries(tenant_id, seq, end)):
                index = seq + offset
                item = _item(index, data)
                if item is not None and (since is None or item["time"] >= since):
                    items.append(item)
                    if len(items) == limit:
                        end = index + 1
                        break
            seq = end
        return {"items": items, "next_cursor": str(seq) if seq < size else None,
                "log_size": size}

    @staticmethod
    async def _first_at(audit: Any, tenant_id: str, size: int, since: str) -> int:
        """The first index whose entry time is >= since: entry times never go backwards
        within a log (AuditLog), so a binary search over O(log n) single-entry reads."""
        low, high = 0, size
        while low < high:
            mid = (low + high) // 2
            data = (await audit.entries(tenant_id, mid, mid + 1))[0]
            if not data or decode_entry(data)["time"] < since:  # empty: expired, older
                low = mid + 1
            else:
                high = mid
        return low


def _item(index: int, data: bytes) -> dict[str, Any] | None:
    if not data:  # expired by audit retention (gateway/transparency/retention.py)
        return None
    entry = decode_entry(data)
    details = entry.get("details") or {}
    transfer = details.get("transfer")
    if entry["kind"] != "diagnostic_read" or not isinstance(transfer, dict):
        return None
    actor = entry["actor"]
    return {"index": index, "time": entry["time"],
            "leaf_hash": base64.b64encode(hash_leaf(data)).decode("ascii"),
            "country": transfer.get("country"), "region": transfer.get("region"),
            "legal_basis": transfer.get("legal_basis"),
            "staff": {"id": actor.get("id"), "employer": actor.get("employer"),
                      "country": actor.get("country")},
            "purpose": entry["purpose"], "reference": entry["reference"],
            "grant_id": entry["grant_id"], "scope": entry["scope"],
            "endpoint": details.get("endpoint")}
