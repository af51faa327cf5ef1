"""`gateway audit verify` never vouches for a bundle with the bundle's own key unasked."""

from __future__ import annotations

import json

import keys
from gateway.core.clock import ManualClock
from gateway.store.sqlite import SqliteDatabase
from gateway.transparency.log import AuditLog
from tests.support.cli import run_cli, write_config

ENTRY = {"kind": "key_event", "actor": {"type": "system", "id": "key-rotation"}}


async def _bundle(tmp_path):
    """A real export of a real log, signed by a key this gateway's config does not have."""
    db = await SqliteDatabase(tmp_path / "elsewhere.sqlite3").open()
    key = keys.OperatorSigningKey.create(tmp_path / "elsewhere.key")
    audit = AuditLog(db, key, ManualClock(), origin_prefix="gateway.example.com")
    try:
        for _ in range(3):
            await audit.append("7d1f2c36-5d5e-4b1a-9d6e-1b2c3d4e5f60", ENTRY)
        bundle = await audit.bundle("7d1f2c36-5d5e-4b1a-9d6e-1b2c3d4e5f60")
    finally:
        await db.close()
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    return path


async def test_bundle_without_a_trusted_key_is_refused_unless_asked(tmp_path):
    config = write_config(tmp_path / "gw.toml", tmp_path / "empty")   # no signing key here
    bundle = await _bundle(tmp_path)
    refused = run_cli(config, "audit", "verify", "--bundle", str(bundle))
    assert refused.returncode == 2
    assert "--trusted-key" in refused.stdout and "--trust-bundle-key" in refused.stdout
    anyway = run_cli(config, "audit", "verify", "--bundle", str(bundle), "--trust-bundle-key")
    assert anyway.returncode == 0, anyway.stdout
    assert anyway.stdout.startswith("OK: 3 entries") and "no trusted key" in anyway.stdout
