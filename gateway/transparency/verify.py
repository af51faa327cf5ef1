"""Offline verification of an exported transparency-log bundle. Pure: no I/O.

A bundle is the JSON object::

    {
      "origin":      "<operator host>/tenants/<tenant uuid>",
      "key_name":    "<signed-note key name>",
      "public_key":  "<base64 raw 32-byte Ed25519 key>",
      "entries":     ["<base64 entry bytes>", ...],      # entry i is leaf i
      "checkpoints": ["<signed note>", ...]              # oldest first
    }

An entry that audit retention expired (docs/transparency.md §7) has no bytes any more; it
is written ``{"state": "expired", "leaf_hash": "<base64 32-byte leaf hash>"}`` in its
place, and its stored leaf hash stands in for it in the tree. Expired entries are always
the oldest ones (times never go backwards in a log, and retention expires by age), so an
expired entry after a kept one is a problem.

``verify_bundle`` recomputes the Merkle tree from the entries and checks that every
checkpoint is signed by the key, names the origin, commits to exactly the recomputed
root at its size, and that the checkpoints only ever grow and are consistent with each
other. It also checks each entry's form and that ``seq`` counts 0, 1, 2, ... A bundle
proves what the operator committed to only if the verifier obtained the key some other
way (the tenant pins it): pass it as ``trusted_key`` (a vkey string) or compare
``report.verifier_key`` against the pinned one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from gateway.transparency.checkpoint import (
    Checkpoint,
    CheckpointError,
    parse_and_verify_note,
    parse_verifier_key,
    verifier_key_string,
)
from gateway.transparency.entries import EntryError, decode_entry
from gateway.transparency.merkle import MemoryNodeStore, hash_leaf, root_hash, verify_consistency

__all__ = ["ExpiredEntry", "VerifyReport", "build_bundle", "verify_bundle"]


@dataclass(frozen=True)
class ExpiredEntry:
    """An entry whose bytes audit retention removed: only its leaf hash is left."""
    leaf_hash: bytes

    def as_dict(self) -> dict[str, str]:
        return {"state": "expired",
                "leaf_hash": base64.b64encode(self.leaf_hash).decode("ascii")}


@dataclass
class VerifyReport:
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entries: int = 0
    expired: int = 0            # leading entries expired by audit retention
    checkpoints: int = 0
    verified_size: int = 0      # largest checkpoint size that verified completely
    root: bytes | None = None   # its root
    verifier_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "problems": list(self.problems), "warnings": list(self.warnings),
            "entries": self.entries, "expired": self.expired,
            "checkpoints": self.checkpoints,
            "verified_size": self.verified_size,
            "root": None if self.root is None else base64.b64encode(self.root).decode(),
            "verifier_key": self.verifier_key,
        }


def build_bundle(origin: str, key_name: str, public_key: bytes,
                 entries: list[bytes | ExpiredEntry], checkpoints: list[str]) -> dict[str, Any]:
    """The export format, from raw entry bytes (or expired entries) and signed notes."""
    return {
        "origin": origin,
        "key_name": key_name,
        "public_key": base64.b64encode(public_key).decode("ascii"),
        "entries": [e.as_dict() if isinstance(e, ExpiredEntry)
                    else base64.b64encode(e).decode("ascii") for e in entries],
        "checkpoints": list(checkpoints),
    }


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def verify_bundle(bundle: Any, *, trusted_key: str | None = None) -> VerifyReport:
    """Check a bundle; never raises on bad input, every finding is a line in ``problems``."""
    report = VerifyReport()
    problems = report.problems

    # ---- the envelope
    if not isinstance(bundle, dict):
        problems.append("bundle: not a JSON object")
        return report
    origin, key_name = bundle.get("origin"), bundle.get("key_name")
    public_key = _b64(bundle.get("public_key"))
    raw_entries, notes = bundle.get("entries"), bundle.get("checkpoints")
    if not isinstance(origin, str) or not origin:
        problems.append("bundle: origin missing")
    if not isinstance(key_name, str) or not key_name:
        problems.append("bundle: key_name missing")
    if public_key is None or len(public_key) != 32:
        problems.append("bundle: public_key is not a base64 32-byte Ed25519 key")
    if not isinstance(raw_entries, list):
        problems.append("bundle: entries is not a list")
    if not isinstance(notes, list):
        problems.append("bundle: checkpoints is not a list")
    if problems:
        return report
    assert isinstance(key_name, str) and isinstance(public_key, bytes)
    assert isinstance(raw_entries, list) and isinstance(notes, list)
    try:
        report.verifier_key = verifier_key_string(key_name, public_key)
    except ValueError:
        problems.append("bundle: key_name is not a valid signed-note key name")
        return report
    if trusted_key is not None:
        try:
            trusted = parse_verifier_key(trusted_key)
        except CheckpointError:
            problems.append("trusted key: not a valid verifier key string")
            return report
        if trusted != (key_name, public_key):
            problems.append("bundle: key differs from the trusted key "
                            f"(bundle has {report.verifier_key})")
            return report

    # ---- entries: form, seq, and the tree they make
    report.entries = len(raw_entries)
    leaf_hashes: list[bytes] = []
    previous_time: str | None = None
    for i, item in enumerate(raw_entries):
        if isinstance(item, dict) and item.get("state") == "expired":
            leaf = _b64(item.get("leaf_hash"))
            if leaf is None or len(leaf) != 32:
                problems.append(f"entry {i}: expired without a 32-byte leaf hash")
                leaf = hash_leaf(b"")
            elif report.expired != i:
                problems.append(f"entry {i}: expired after a kept entry (retention expires"
                                " the oldest entries first)")
            else:
                report.expired += 1
            leaf_hashes.append(leaf)
            continue
        data = _b64(item)
        if data is None:
            problems.append(f"entry {i}: not base64")
            leaf_hashes.append(hash_leaf(b""))  # keeps later leaves at their index
            continue
        leaf_hashes.append(hash_leaf(data))
        try:
            entry = decode_entry(data)
        except EntryError as exc:
            problems.append(f"entry {i}: malformed ({exc})")
            continue
        if entry["seq"] != i:
            problems.append(f"entry {i}: seq {entry['seq']} expected {i}")
        if previous_time is not None and entry["time"] < previous_time:
            report.warnings.append(f"entry {i}: time {entry['time']} earlier than the "
                                   f"previous entry's {previous_time}")
        previous_time = entry["time"]
    store = MemoryNodeStore()
    store.extend(leaf_hashes)
    size = store.size

    # ---- checkpoints: signature, origin, root at size, growth, consistency
    report.checkpoints = len(notes)
    if not notes:
        problems.append("bundle: no checkpoint, nothing vouches for these entries")
    previous: tuple[int, Checkpoint] | None = None  # last checkpoint with a good signature
    matched: tuple[int, Checkpoint] | None = None   # last one whose root matched too
    for i, note in enumerate(notes):
        try:
            cp = parse_and_verify_note(note, key_name, public_key)
        except CheckpointError:
            problems.append(f"checkpoint {i}: bad signature or format (forged or damaged)")
            continue
        if cp.origin != origin:
            problems.append(f"checkpoint {i}: origin {cp.origin!r} is not the bundle's "
                            f"{origin!r}")
            continue
        if previous is not None:
            j, prev = previous
            if cp.size < prev.size:
                problems.append(f"checkpoint {i}: size {cp.size} smaller than checkpoint "
                                f"{j}'s {prev.size} (the log shrank)")
            elif cp.size == prev.size and cp.root != prev.root:
                problems.append(f"checkpoint {i}: same size {cp.size} as checkpoint {j} "
                                f"with a different root (a fork)")
        previous = (i, cp)
        if cp.size > size:
            problems.append(f"checkpoint {i}: size {cp.size} but the bundle has only {size} "
                            f"entries (entries deleted or withheld)")
            continue
        if cp.root != root_hash(cp.size, store.get_node):
            problems.append(f"checkpoint {i}: root mismatch at size {cp.size} "
                            f"(tampered entry or checkpoint)")
            continue
        if matched is not None and matched[1].size <= cp.size:
            # Both roots were recomputed from one sequence of entries, so they are
            # consistent by construction; the proof checks the claim the way a client
            # of the tenant API checks it, against the signed roots themselves.
            j, prev = matched
            proof = store.consistency_proof(prev.size, cp.size)
            if not verify_consistency(prev.size, cp.size, prev.root, cp.root, proof):
                problems.append(f"checkpoint {i}: not consistent with checkpoint {j} "
                                f"(size {prev.size} -> {cp.size})")
        matched = (i, cp)
        if cp.size >= report.verified_size:
            report.verified_size, report.root = cp.size, cp.root

    if not problems and report.verified_size < size:
        report.warnings.append(f"entries {report.verified_size}..{size - 1} are not yet "
                               f"covered by a checkpoint")
    report.ok = not problems
    return report
