"""Audit retention (policy 9.5) end to end, through a real server with a clock the test
moves: old entries lose their contents, the tree keeps verifying (proofs, export, the
stored-log verifier), and an offboarded tenant's log expires after its audit retention."""

from __future__ import annotations

import asyncio
import base64
import sqlite3

import pytest

from gateway.lifecycle.offboarding import get_offboarding
from gateway.transparency.checkpoint import verifier_key_string
from gateway.transparency.log import get_audit_log, verify_stored_log
from gateway.transparency.merkle import verify_consistency, verify_inclusion
from gateway.transparency.verify import verify_bundle
from gateway.web.retention_api import audit_retention
from tests.lifecycle.helpers import make_env, storage_toml
from tests.support.cli import run_cli

# End to end on both storage backends (the expiry trigger has a PostgreSQL form).
pytestmark = pytest.mark.backends("sqlite", "postgres")


def _b(value: str) -> bytes:
    return base64.b64decode(value)


async def _checkpoint(env) -> dict:
    code, body, _ = await env.request("GET", "/v1/transparency/checkpoint")
    assert code == 200, body
    return body


async def _entries(env, start: int, end: int) -> list[dict]:
    code, body, _ = await env.request("GET", f"/v1/transparency/entries?start={start}&end={end}")
    assert code == 200, body
    return body["entries"]


async def _verified_stored(gateway, tenant_id: str):
    audit = get_audit_log(gateway.services)
    trusted = verifier_key_string(await audit.origin(tenant_id), audit.public_key)
    return await verify_stored_log(gateway.services.db, tenant_id, trusted)


async def test_old_entries_expire_and_the_tree_still_verifies(gateway, backend, tmp_path):
    env = await make_env(gateway)
    code, policy, _ = await env.request("PUT", "/v1/retention", json={"audit": 365})
    assert code == 200 and policy["classes"]["audit"]["enforced"] is True, policy
    old = await _checkpoint(env)                       # entries 0.. are logged "now"
    old_entries = await _entries(env, 0, old["size"])
    old_bytes = [_b(e["data"]) for e in old_entries]

    gateway.clock.advance(days=200)
    await _checkpoint(env)                             # newer entries, not yet due
    gateway.clock.advance(days=166)                    # the first ones are 366 days old
    expired = await audit_retention(gateway.services).run()
    assert expired == {env.tenant.id: old["size"] + 1}  # + the read logged with `old`

    new = await _checkpoint(env)
    items = await _entries(env, 0, new["size"])
    states = [e["state"] for e in items]
    n = old["size"] + 1
    assert states[:n] == ["expired"] * n and set(states[n:]) == {"kept"}
    assert all(e["data"] is None and e["entry"] is None for e in items[:n])
    assert [_b(e["leaf_hash"]) for e in items[:old["size"]]] == [
        _b(e["leaf_hash"]) for e in old_entries]
    receipt = [e["entry"] for e in items[n:] if e["entry"]["kind"] == "deletion_receipt"]
    assert receipt[0]["details"]["expired_entries"] == n

    # Proofs: an expired entry is still provably in the tree; the tree only grew.
    code, proof, _ = await env.request(
        "GET", f"/v1/transparency/proofs/inclusion?index=1&size={new['size']}")
    assert code == 200
    assert verify_inclusion(_b(proof["leaf_hash"]), 1, new["size"],
                            [_b(p) for p in proof["proof"]], _b(new["root"]))
    code, cons, _ = await env.request(
        "GET", f"/v1/transparency/proofs/consistency?old={old['size']}&new={new['size']}")
    assert code == 200
    assert verify_consistency(old["size"], new["size"], _b(old["root"]), _b(new["root"]),
                              [_b(p) for p in cons["proof"]])

    # The export verifies against the pinned key and says how many entries expired.
    code, key, _ = await env.request("GET", "/v1/transparency/public-key")
    code, bundle, _ = await env.request("GET", "/v1/transparency/export")
    assert code == 200
    report = verify_bundle(bundle, trusted_key=key["verifier_key"])
    assert report.ok, report.problems
    assert report.expired == n
    stored = await _verified_stored(gateway, env.tenant.id)
    assert stored.ok and stored.expired == n, stored.problems
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[logging]\nlevel = "WARNING"\n')
    verified = await asyncio.to_thread(run_cli, config_file, "audit", "verify", "--tenant",
                                       env.tenant.id)
    assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stdout

    # The contents are gone from the database itself, not only from the answers.
    rows = await gateway.services.db.fetchall(
        "SELECT entry FROM audit_entries WHERE tenant_id = ? AND seq < ?", (env.tenant.id, n))
    assert {bytes(r["entry"]) for r in rows} == {b""}
    if backend == "sqlite":
        files = b"".join(p.read_bytes() for p in gateway.config.data_dir.rglob("*sqlite3*"))
        for data in old_bytes:
            assert data not in files

    # Running again expires nothing more; expired entries cannot be rewritten or deleted.
    assert await audit_retention(gateway.services).run() == {}
    for sql, params in (
            ("UPDATE audit_entries SET entry = ? WHERE tenant_id = ? AND seq = 0",
             (b"{}", env.tenant.id)),
            ("DELETE FROM audit_entries WHERE tenant_id = ? AND seq = 0", (env.tenant.id,))):
        try:
            await gateway.services.db.write(
                lambda tx, sql=sql, params=params: tx.execute(sql, params))
        except Exception as exc:
            assert "append-only" in str(exc)
        else:  # pragma: no cover - the trigger failed
            raise AssertionError("the audit log accepted a rewrite")


async def test_retention_shows_audit_enforced(gateway):
    env = await make_env(gateway)
    code, body, _ = await env.request("GET", "/v1/retention")
    assert code == 200 and body["classes"]["audit"]["enforced"] is True
    code, body, _ = await env.request("GET", "/v1/retention/preview")
    assert code == 200 and body["classes"]["audit"]["enforced"] is True


async def test_an_offboarded_tenants_log_is_kept_for_its_retention_then_expires(gateway):
    env = await make_env(gateway)
    code, _, _ = await env.request("PUT", "/v1/retention", json={"audit": 400})
    assert code == 200
    await _checkpoint(env)
    await get_offboarding(gateway.services).offboard(env.tenant.id)
    size = await get_audit_log(gateway.services).size(env.tenant.id)
    retention = audit_retention(gateway.services)

    gateway.clock.advance(days=399)                    # its 400 days, not the default 2190
    assert await retention.run() == {}
    gateway.clock.advance(days=2)
    assert await retention.run() == {env.tenant.id: size}   # no receipt: nobody reads it
    assert await get_audit_log(gateway.services).size(env.tenant.id) == size
    report = await _verified_stored(gateway, env.tenant.id)
    assert report.ok and report.expired == size, report.problems


async def test_migrated_sqlite_refuses_anything_but_expiry(tmp_path):
    """The trigger itself, on the SQLite file as the gateway migrated it."""
    from gateway.store.sqlite import SqliteDatabase

    await (await SqliteDatabase(tmp_path / "t.sqlite3").open()).close()
    conn = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    conn.execute("INSERT INTO audit_entries (tenant_id, seq, entry) VALUES ('t', 0, X'7b7d')")
    for sql in ("UPDATE audit_entries SET entry = X'00'",
                "UPDATE audit_entries SET entry = X'', seq = 1, expired_at = 'now'",
                "DELETE FROM audit_entries"):
        try:
            conn.execute(sql)
        except sqlite3.DatabaseError as exc:
            assert "append-only" in str(exc)
        else:  # pragma: no cover
            raise AssertionError(sql)
    conn.execute("UPDATE audit_entries SET entry = X'', expired_at = 'now'")
    try:
        conn.execute("UPDATE audit_entries SET expired_at = 'later'")
    except sqlite3.DatabaseError:
        pass
    else:  # pragma: no cover
        raise AssertionError("an expired entry was updated twice")
