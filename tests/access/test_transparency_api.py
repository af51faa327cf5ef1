"""The tenant's transparency log over HTTP, checked by a verifier written here from RFC 9162
and C2SP signed-note (hashlib and cryptography only; nothing from gateway.transparency),
and `gateway audit verify` catching tampering in the SQLite file, run as a user runs it."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.access.conftest import approve, log_entries, make_call, request_access


# -- an independent RFC 9162 implementation ---------------------------------------------------
def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def split(n: int) -> int:
    """k: the largest power of two smaller than n (RFC 9162 §2.1.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1."""
    n = len(entries)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaf_hash(entries[0])
    k = split(n)
    return node_hash(mth(entries[:k]), mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 §2.1.3.1."""
    n = len(entries)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return path(m, entries[:k]) + [mth(entries[k:])]
    return path(m - k, entries[k:]) + [mth(entries[:k])]


def subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1."""
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = split(n)
    if m <= k:
        return subproof(m, entries[:k], b) + [mth(entries[k:])]
    return subproof(m - k, entries[k:], False) + [mth(entries[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = node_hash(r, p)
        fn, sn = fn // 2, sn // 2
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2 (first > 0, first < second)."""
    if not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_hash] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn // 2, sn // 2
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            sr = node_hash(sr, c)
        fn, sn = fn // 2, sn // 2
    return fr == first_hash and sr == second_hash and sn == 0


def open_signed_note(note: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint, from the specs: (origin, size, root)."""
    name, key_hash_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 0x01
    assert sha256(name.encode() + b"\n" + raw)[:4].hex() == key_hash_hex
    text, sigs = note.rsplit("\n\n", 1)
    text += "\n"
    verified = False
    for line in sigs.rstrip("\n").split("\n"):
        sig_name, sig_b64 = line.removeprefix("\u2014 ").split(" ")
        sig = base64.b64decode(sig_b64)
        if sig_name == name and sig[:4].hex() == key_hash_hex:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            verified = True
    assert verified
    origin, size, root = text.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


# -- helpers --------------------------------------------------------------------------------------
async def get(gateway, tenant, path):
    status, body, _ = await gateway.request("GET", path, headers=tenant.auth)
    assert status == 200, (path, body)
    return body


async def populate(gateway, n_extra=30):
    tenant = await gateway.new_tenant("acme")
    staff = await gateway.new_staff()
    call_id = await make_call(gateway, tenant)
    req = await request_access(gateway, staff, tenant, calls=[call_id])
    await approve(gateway, tenant, req["id"])
    for _ in range(3):
        await gateway.request("GET", f"/v1/staff/diagnostics/calls/{call_id}",
                              headers=staff["auth"])
    audit = gateway.services.features["audit"]
    await audit.append_many(tenant.id, [{"kind": "key_event", "actor": {
        "type": "system", "id": "key-rotation"}, "details": {"version": i}}
        for i in range(n_extra)])
    return tenant, staff, call_id


async def all_entries(gateway, tenant, size):
    out = []
    for start in range(0, size, 1000):
        page = await get(gateway, tenant,
                         f"/v1/transparency/entries?start={start}&end={min(start + 1000, size)}")
        out.extend(base64.b64decode(e["data"]) for e in page["entries"])
    return out[:size]


# -- tests ----------------------------------------------------------------------------------------
async def test_checkpoint_entries_and_proofs_verify_independently(gateway):
    tenant, _, _ = await populate(gateway)
    key = await get(gateway, tenant, "/v1/transparency/public-key")
    assert key["origin"] == f"gateway.example.com/tenants/{tenant.id}"
    cp1 = await get(gateway, tenant, "/v1/transparency/checkpoint")
    origin, size1, root1 = open_signed_note(cp1["note"], key["verifier_key"])
    assert origin == key["origin"] and size1 == cp1["size"] == 36
    entries = await all_entries(gateway, tenant, size1)
    assert mth(entries) == root1
    # The last entry of the checkpointed tree is this very read of the log.
    assert json.loads(entries[-1])["kind"] == "log_read"
    for index in range(size1):
        proof = await get(gateway, tenant,
                          f"/v1/transparency/proofs/inclusion?index={index}&size={size1}")
        hashes = [base64.b64decode(h) for h in proof["proof"]]
        assert hashes == path(index, entries[:size1]), index
        assert verify_inclusion(leaf_hash(entries[index]), index, size1, hashes, root1)
        assert not verify_inclusion(leaf_hash(entries[index] + b" "), index, size1, hashes,
                                    root1)
    # The log grew (every read above was logged); the new tree extends the old one.
    cp2 = await get(gateway, tenant, "/v1/transparency/checkpoint")
    _, size2, root2 = open_signed_note(cp2["note"], key["verifier_key"])
    assert size2 >= size1 + size1
    entries2 = await all_entries(gateway, tenant, size2)
    assert entries2[:size1] == entries and mth(entries2[:size2]) == root2
    for old in (1, 2, 7, size1 - 1, size1):
        body = await get(gateway, tenant,
                         f"/v1/transparency/proofs/consistency?old={old}&new={size2}")
        hashes = [base64.b64decode(h) for h in body["proof"]]
        assert hashes == subproof(old, entries2[:size2], True)
        old_root = mth(entries2[:old])
        assert verify_consistency(old, size2, old_root, root2, hashes)
        assert not verify_consistency(old, size2, old_root, root1, hashes)
    # Bad parameters are 422 problems.
    for bad in ("proofs/inclusion?index=5&size=5", "proofs/inclusion?index=0&size=99999",
                "proofs/consistency?old=9&new=3", "entries?start=5&end=5",
                "entries?start=0&end=5000", "proofs/inclusion?index=-1&size=3"):
        status, body, _ = await gateway.request("GET", f"/v1/transparency/{bad}",
                                                headers=tenant.auth)
        assert status == 422, (bad, body)


async def test_reads_of_the_log_are_logged(gateway):
    tenant = await gateway.new_tenant("acme")
    await get(gateway, tenant, "/v1/transparency/checkpoint")
    await get(gateway, tenant, "/v1/transparency/entries?start=0&end=10")
    await get(gateway, tenant, "/v1/transparency/proofs/inclusion?index=0&size=2")
    await get(gateway, tenant, "/v1/transparency/proofs/consistency?old=1&new=3")
    status, _, _ = await gateway.request("GET", "/v1/transparency/export", headers=tenant.auth)
    assert status == 200
    entries = log_entries(gateway, tenant.id)
    assert [e["details"]["endpoint"] for e in entries] == [
        "checkpoint", "entries", "inclusion_proof", "consistency_proof", "export"]
    assert all(e["kind"] == "log_read" and e["actor"]["type"] == "tenant" for e in entries)
    assert entries[1]["details"] == {"endpoint": "entries", "start": 0, "end": 10}
    # Another tenant's key sees only its own log.
    other = await gateway.new_tenant("other")
    body = await get(gateway, other, "/v1/transparency/entries?start=0&end=10")
    assert [e["entry"]["details"]["endpoint"] for e in body["entries"]] == ["entries"]


def cli(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_path),
                           *args], capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, gateway, name: str, database: Path | None = None) -> Path:
    path = tmp_path / f"{name}.toml"
    lines = ["[server]", 'public_base_url = "https://gateway.example.com"', "[storage]",
             f'data_dir = "{gateway.config.data_dir}"']
    if database is not None:
        lines.append(f'database = "{database}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def copy_db(gateway, dest: Path) -> Path:
    src = sqlite3.connect(gateway.config.database_path)
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()
    return dest


def tamper(db: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    for trigger in ("audit_entries_append_only_u", "audit_entries_append_only_d",
                    "audit_checkpoints_append_only_u", "audit_nodes_append_only_u"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute(sql, params)
    conn.close()


async def test_export_verifies_offline_and_tampering_is_caught(gateway, tmp_path):
    tenant, _, _ = await populate(gateway, n_extra=5)
    await get(gateway, tenant, "/v1/transparency/checkpoint")
    await gateway.services.features["audit"].append(tenant.id, {
        "kind": "key_event", "actor": {"type": "system", "id": "key-rotation"}})
    key = await get(gateway, tenant, "/v1/transparency/public-key")
    status, raw, headers = await gateway.request("GET", "/v1/transparency/export",
                                                 headers=tenant.auth)
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    bundle = raw if isinstance(raw, dict) else json.loads(raw)
    assert len(bundle["checkpoints"]) >= 2
    good = tmp_path / "bundle.json"
    good.write_text(json.dumps(bundle))
    config = write_config(tmp_path, gateway, "gw")

    result = cli(config, "audit", "verify", "--bundle", str(good), "--trusted-key",
                 key["verifier_key"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["verified_size"] == len(bundle["entries"])

    entry = json.loads(base64.b64decode(bundle["entries"][3]))
    entry["reference"] = "OPS-0000"
    bad = dict(bundle, entries=list(bundle["entries"]))
    bad["entries"][3] = base64.b64encode(json.dumps(
        entry, sort_keys=True, separators=(",", ":")).encode()).decode()
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    result = cli(config, "audit", "verify", "--bundle", str(bad_path))
    assert result.returncode == 1 and "root mismatch" in result.stdout, result.stdout

    # The operator key from the gateway's own config is the default trusted key.
    result = cli(config, "audit", "public-key", "--tenant", tenant.id)
    assert result.returncode == 0 and result.stdout.strip() == key["verifier_key"]


async def test_audit_verify_online_detects_tampered_entries_and_checkpoints(gateway, tmp_path):
    tenant, _, _ = await populate(gateway, n_extra=20)
    await get(gateway, tenant, "/v1/transparency/checkpoint")
    audit = gateway.services.features["audit"]
    # A tail no checkpoint covers yet: only the stored tree can vouch for it.
    await audit.append(tenant.id, {"kind": "key_event", "actor": {"type": "system",
                                                                   "id": "key-rotation"}})
    size = await audit.size(tenant.id)
    config = write_config(tmp_path, gateway, "gw")
    result = cli(config, "audit", "verify", "--tenant", tenant.id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"]

    cases = {
        "entry": ("UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT),"
                  " 'OPS-4711', 'OPS-4712') AS BLOB) WHERE tenant_id = ? AND seq = 0",
                  "entry 0"),
        "tail": ("UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT),"
                 " 'key-rotation', 'key-rotatio0') AS BLOB) WHERE tenant_id = ? AND seq = "
                 f"{size - 1}", f"entry {size - 1}"),
        "checkpoint": ("UPDATE audit_checkpoints SET note = replace(note, '\n\n\u2014 ',"
                       " '\nextra\n\n\u2014 ') WHERE tenant_id = ?", "checkpoint 0"),
        "deleted": ("DELETE FROM audit_entries WHERE tenant_id = ? AND seq >= 10", "entries"),
    }
    for name, (sql, expected) in cases.items():
        db = copy_db(gateway, tmp_path / f"{name}.sqlite3")
        tamper(db, sql, (tenant.id,))
        result = cli(write_config(tmp_path, gateway, name, db), "audit", "verify", "--tenant",
                     tenant.id)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert "FAILED" in result.stdout and expected in result.stdout, (name, result.stdout)
