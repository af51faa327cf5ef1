"""Fixtures for staff access: the shared `gateway` fixture with http:// notification
endpoints allowed (the tests' tenant endpoint is a local aiohttp server), plus helpers that
act as a platform, a tenant admin and a support engineer over real HTTP."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.services import init_storage
from tests.support.server import make_config
from tests.support.signers import call_updated, new_whsec, standard_delivery


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data")
    config.section("staff_access").notify_allow_http = True
    config.section("staff_access").notify_allow_private_addresses = True   # 127.0.0.1
    init_storage(config)
    return config


async def make_call(gateway, tenant, *, platform_call_id: str = "pc-1",
                    status: str = "completed", from_number: str = "+14155550100",
                    to_number: str = "+442071838750", started_at: str | None = None) -> str:
    """Deliver one signed Standard Webhooks event for a new integration; the call's id."""
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    event = call_updated(platform_call_id, status, from_number=from_number,
                         to_number=to_number,
                         started_at=started_at or "2026-03-01T10:00:00Z",
                         ended_at="2026-03-01T10:00:42Z", duration=42)
    raw, headers = standard_delivery(secret, event, gateway.clock.now())
    status_code, body, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert status_code == 200, body
    _, page, _ = await gateway.request("GET", "/v1/calls", headers=tenant.auth)
    return next(c["id"] for c in page["items"] if c["platform_call_id"] == platform_call_id)


async def request_access(gateway, staff, tenant, *, calls=None, window=None,
                         purpose="fault_diagnostics", level="technical", reference="OPS-4711",
                         expect: int = 201, **extra: Any) -> dict[str, Any]:
    scope = {"calls": calls} if calls is not None else {"window": window}
    status, body, _ = await gateway.request(
        "POST", "/v1/staff/access-requests", headers=staff["auth"],
        json={"tenant": tenant.id, "scope": scope, "purpose": purpose, "level": level,
              "reference": reference, **extra})
    assert status == expect, body
    return body


async def approve(gateway, tenant, request_id: str, expect: int = 200) -> dict[str, Any]:
    status, body, _ = await gateway.request(
        "POST", f"/v1/access-requests/{request_id}/approve", headers=tenant.auth)
    assert status == expect, body
    return body


async def set_policy(gateway, tenant, policy: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await gateway.request("PUT", "/v1/access-policy", headers=tenant.auth,
                                            json=policy)
    assert status == 200, body
    return body


def log_entries(gateway, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's log straight from the database file (a second connection, as another
    process would see it: only committed entries)."""
    from gateway.transparency.entries import decode_entry

    conn = sqlite3.connect(gateway.config.database_path)
    try:
        rows = conn.execute("SELECT entry FROM audit_entries WHERE tenant_id = ? ORDER BY seq",
                            (tenant_id,)).fetchall()
    finally:
        conn.close()
    return [decode_entry(bytes(r[0])) for r in rows]


def raw_sql(gateway, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(gateway.config.database_path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.executescript(sql) if not params else conn.execute(sql, params)
    finally:
        conn.close()
