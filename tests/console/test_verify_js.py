"""The browser's verifier (gateway/web/console/static/assets/js/verify.js) against the gateway's
own Merkle tree and signed notes, run in Node's WebCrypto (no browser needed): roots,
inclusion and consistency proofs over many tree sizes, the docs' worked example, and the
failures (a flipped bit in a proof, a wrong root, a forged or foreign signature)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.transparency.checkpoint import format_checkpoint, sign_note, verifier_key_string
from gateway.transparency.merkle import (
    MemoryNodeStore,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    root_hash,
)

VERIFY_JS = Path(__file__).parents[2] / "gateway/web/console/static/assets/js/verify.js"
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def vectors() -> dict:
    entries = [f'{{"n":{i}}}'.encode() for i in range(max(SIZES))]
    store = MemoryNodeStore()
    store.extend(hash_leaf(e) for e in entries)
    roots = {n: root_hash(n, store.get_node) for n in SIZES}
    inclusion = [{"index": i, "size": n, "entry": b64(entries[i]), "root": b64(roots[n]),
                  "proof": [b64(p) for p in inclusion_proof(i, n, store.get_node)]}
                 for n in SIZES for i in sorted({0, n // 2, n - 1})]
    consistency = [{"first": m, "second": n, "first_root": b64(roots[m]),
                    "second_root": b64(roots[n]),
                    "proof": [b64(p) for p in consistency_proof(m, n, store.get_node)]}
                   for n in SIZES for m in SIZES if 0 < m <= n]
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    origin = "gateway.example.com/tenants/6f1c1f3e-6a55-4a4b-9d0e-3b8f6d2b1a10"
    note = sign_note(format_checkpoint(origin, 17, roots[17]), origin, key.sign, public)
    other = Ed25519PrivateKey.generate()
    foreign = sign_note(format_checkpoint(origin, 17, roots[17]), origin, other.sign,
                        other.public_key().public_bytes_raw())
    return {"entries": [b64(e) for e in entries], "roots": {n: b64(r) for n, r in roots.items()},
            "inclusion": inclusion, "consistency": consistency,
            "vkey": verifier_key_string(origin, public), "note": note, "foreign_note": foreign,
            "root17": b64(roots[17])}


RUNNER = """
import * as v from './verify.mjs';
import { readFileSync } from 'node:fs';
const t = JSON.parse(readFileSync('vectors.json', 'utf8'));
const d = (x) => v.b64decode(x);
const out = { roots: {}, inclusion: [], inclusion_tampered: [], consistency: [], consistency_tampered: [] };
for (const [n, root] of Object.entries(t.roots)) {
  const b = new v.RootBuilder();
  for (const e of t.entries.slice(0, Number(n))) await b.add(await v.leafHash(d(e)));
  out.roots[n] = v.equal(await b.root(), d(root));
}
for (const c of t.inclusion) {
  const leaf = await v.leafHash(d(c.entry));
  out.inclusion.push(await v.verifyInclusion(c.index, c.size, leaf, c.proof.map(d), d(c.root)));
  const flipped = d(c.entry); flipped[0] ^= 1;
  const bad = await v.leafHash(flipped);
  out.inclusion_tampered.push(await v.verifyInclusion(c.index, c.size, bad, c.proof.map(d), d(c.root)));
}
for (const c of t.consistency) {
  out.consistency.push(await v.verifyConsistency(c.first, c.second, d(c.first_root), d(c.second_root), c.proof.map(d)));
  const proof = c.proof.map(d);
  if (proof.length) proof[proof.length - 1][0] ^= 1;
  const wrongFirst = d(c.first_root); wrongFirst[5] ^= 1;
  out.consistency_tampered.push(await v.verifyConsistency(c.first, c.second, proof.length ? d(c.first_root) : wrongFirst, d(c.second_root), proof));
}
const key = await v.parseVerifierKey(t.vkey);
const cp = await v.verifyCheckpointNote(t.note, key);
out.checkpoint = { origin: cp.origin, size: cp.size, root: v.b64encode(cp.root) };
const fails = async (f) => { try { await f(); return null; } catch (e) { return e.message; } };
const forged = t.note.replace(/ (\\S+)\\n$/, (m, sig) => { const b = d(sig); b[10] ^= 1; return ' ' + v.b64encode(b) + '\\n'; });
out.forged = await fails(() => v.verifyCheckpointNote(forged, key));
out.foreign = await fails(() => v.verifyCheckpointNote(t.foreign_note, key));
out.bad_vkey = await fails(() => v.parseVerifierKey(t.vkey.replace(/\\+([0-9a-f])/, (m, c) => '+' + (c === '0' ? '1' : '0'))));
console.log(JSON.stringify(out));
"""


def test_browser_verifier_agrees_with_the_gateway(tmp_path: Path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the console's verifier outside a browser")
    shutil.copyfile(VERIFY_JS, tmp_path / "verify.mjs")
    data = vectors()
    (tmp_path / "vectors.json").write_text(json.dumps(data))
    (tmp_path / "run.mjs").write_text(RUNNER)
    done = subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert all(out["roots"].values()), out["roots"]
    assert all(out["inclusion"]) and len(out["inclusion"]) == len(data["inclusion"])
    assert not any(out["inclusion_tampered"])
    assert all(out["consistency"]), [c for c, ok in zip(data["consistency"], out["consistency"],
                                                        strict=True) if not ok][:3]
    assert not any(out["consistency_tampered"])
    assert out["checkpoint"] == {"origin": data["vkey"].split("+")[0], "size": 17,
                                 "root": data["root17"]}
    assert "bad signature" in out["forged"]
    assert "not signed by the pinned key" in out["foreign"]
    assert "corrupt" in out["bad_vkey"]
