"""docs/crypto-formats.md is complete for a tenant as the default config creates it: a
tenant made with the real CLI, a webhook delivered to the real server, then the call's
parties and the event body decoded from the raw files alone (the SQLite database, the
key-store directory, the root key file) by tests/keys/spec_decoder.py, which was written
from the document and imports nothing from the gateway or keys/."""

from __future__ import annotations

import ast
import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

from tests.lifecycle.helpers import storage_toml
from tests.support.cli import run_cli
from tests.support.signers import call_updated, new_whsec, standard_delivery

from . import spec_decoder as sd

SPEC_DECODER = Path(sd.__file__)


def test_the_spec_decoder_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(SPEC_DECODER.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    roots = {m.split(".")[0] for m in modules}
    assert roots <= {"__future__", "hashlib", "hmac", "struct", "uuid", "pathlib",
                     "cryptography"}, roots


async def test_a_default_tenant_decodes_from_the_raw_files_by_the_document(gateway, tmp_path):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(f'{storage_toml(gateway)}[logging]\nlevel = "WARNING"\n')
    created = await asyncio.to_thread(run_cli, config_file, "tenant", "create", "--name",
                                      "spec", "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    secret = new_whsec()
    code, integration, _ = await gateway.request(
        "POST", "/v1/integrations", headers=auth,
        json={"platform": "standard", "credentials": {"secret": secret}})
    assert code == 201, integration
    raw, headers = standard_delivery(
        secret, call_updated("pc-spec-1", "completed", from_number="+14155550100",
                             to_number="+442071838750"), gateway.clock.now())
    code, reply, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert code == 200, reply
    code, calls, _ = await gateway.request("GET", "/v1/calls", headers=auth)
    [call] = calls["items"]

    # -- from here on: raw files and the spec decoder only --------------------------------
    config = gateway.config
    tenant_id = uuid.UUID(tenant["tenant_id"])
    conn = sqlite3.connect(config.database_path)
    try:
        rows = conn.execute("SELECT kind, version, wrapped FROM tenant_keys WHERE"
                            " tenant_id = ?", (str(tenant_id),)).fetchall()
        (parties,) = conn.execute("SELECT parties FROM calls WHERE id = ?",
                                  (call["id"],)).fetchone()
        events = conn.execute("SELECT id, status, body FROM call_events WHERE call_id = ?",
                              (call["id"],)).fetchall()
    finally:
        conn.close()
    root_key = sd.root_key_from_file(config.root_key_path.read_bytes())
    key_dir = config.tenant_key_dir            # the default file key store
    tenant_root = sd.tenant_root_key(
        root_key, tenant_id, sd.key_store_path(key_dir, f"{tenant_id}.key").read_bytes())
    # The key rows open under the tenant root key (not the root key).
    for kind, version, wrapped in rows:
        assert len(sd.unwrap_tenant_key(tenant_root, tenant_id, kind, version, bytes(wrapped))) == 32

    def open_unit_record(kind: str, record_id: str, sealed: bytes) -> bytes:
        segment_id, entry_id = sd.record_ref(sealed)
        segment = sd.unit_segment(tenant_root, tenant_id, segment_id, sd.key_store_path(
            key_dir, f"{tenant_id}/units/{segment_id}").read_bytes())
        return sd.open_unit_record(segment["units"][entry_id], tenant_id, kind, record_id,
                                   sealed)["plaintext"]

    assert json.loads(open_unit_record("call-parties", call["id"], bytes(parties))) == {
        "from": "+14155550100", "to": "+442071838750"}
    # The event's id is stored as its UUID's 16 bytes; the record is bound to its text.
    [(event_id, status, body)] = events
    event = json.loads(open_unit_record("call-event", str(uuid.UUID(bytes=event_id)),
                                        bytes(body)))
    # Under its short field names (docs/crypto-formats.md): "d" is the direction.
    assert status == "completed" and event["d"] == "inbound"
