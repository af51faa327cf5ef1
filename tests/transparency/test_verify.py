"""The offline bundle verifier: a good bundle passes, each kind of tampering is named."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.transparency.checkpoint import format_checkpoint, sign_note, verifier_key_string
from gateway.transparency.entries import decode_entry, encode_entry
from gateway.transparency.merkle import MemoryNodeStore
from gateway.transparency.verify import build_bundle, verify_bundle

from .test_checkpoint import Signer

ORIGIN = "gateway.example.com/tenants/6f1c1f3e-6a55-4a4b-9d0e-3b8f6d2b1a10"
SIGNER = Signer(4)
PUB = SIGNER.public_key_raw()
N = 40
CHECKPOINT_SIZES = [0, 1, 5, 16, 17, 33, N]


def make_entry(seq: int, **overrides: object) -> bytes:
    e = {
        "seq": seq,
        "time": f"2026-01-01T00:{seq // 60:02d}:{seq % 60:02d}.000000Z",
        "kind": ["access_request", "decision", "diagnostic_read", "log_read"][seq % 4],
        "actor": {"type": "staff", "id": f"staff-{seq:012x}a"},
        "purpose": "fault_diagnostics",
        "reference": f"OPS-{seq}",
        "details": {"n": seq},
    }
    e.update(overrides)
    return encode_entry(e)


def note_for(store: MemoryNodeStore, size: int, signer: Signer = SIGNER,
             origin: str = ORIGIN, root: bytes | None = None) -> str:
    body = format_checkpoint(origin, size, store.root(size) if root is None else root)
    return sign_note(body, ORIGIN, signer.sign, signer.public_key_raw())


@pytest.fixture
def log() -> tuple[list[bytes], MemoryNodeStore]:
    entries = [make_entry(i) for i in range(N)]
    store = MemoryNodeStore()
    store.append_entries(entries)
    return entries, store


def bundle_of(entries: list[bytes], notes: list[str]) -> dict:
    # through JSON, as an exported file would be
    return json.loads(json.dumps(build_bundle(ORIGIN, ORIGIN, PUB, entries, notes)))


def good_bundle(log: tuple[list[bytes], MemoryNodeStore]) -> dict:
    entries, store = log
    return bundle_of(entries, [note_for(store, s) for s in CHECKPOINT_SIZES])


def test_good_bundle(log) -> None:
    report = verify_bundle(good_bundle(log))
    assert report.ok, report.problems
    assert report.problems == [] and report.warnings == []
    assert report.entries == N and report.checkpoints == len(CHECKPOINT_SIZES)
    assert report.verified_size == N and report.root == log[1].root()
    assert report.verifier_key == verifier_key_string(ORIGIN, PUB)
    assert verify_bundle(good_bundle(log), trusted_key=verifier_key_string(ORIGIN, PUB)).ok


def test_empty_log_bundle() -> None:
    store = MemoryNodeStore()
    assert verify_bundle(bundle_of([], [note_for(store, 0)])).ok


def test_entries_after_last_checkpoint_are_a_warning(log) -> None:
    entries, store = log
    report = verify_bundle(bundle_of(entries, [note_for(store, 30)]))
    assert report.ok
    assert report.warnings == ["entries 30..39 are not yet covered by a checkpoint"]


def test_tampered_entry(log) -> None:
    bundle = good_bundle(log)
    bundle["entries"][17] = base64.b64encode(make_entry(17, outcome="denied")).decode()
    report = verify_bundle(bundle)
    assert not report.ok
    # every checkpoint covering entry 17 fails; earlier ones still verify
    assert report.problems == [
        f"checkpoint {i}: root mismatch at size {s} (tampered entry or checkpoint)"
        for i, s in enumerate(CHECKPOINT_SIZES) if s > 17]
    assert report.verified_size == 17


def test_entry_bytes_altered_without_reencoding(log) -> None:
    bundle = good_bundle(log)
    raw = bytearray(base64.b64decode(bundle["entries"][3]))
    raw[raw.index(b"OPS-3") + 4] = ord("4")
    bundle["entries"][3] = base64.b64encode(bytes(raw)).decode()
    report = verify_bundle(bundle)
    assert not report.ok
    assert "checkpoint 2: root mismatch at size 5 (tampered entry or checkpoint)" in \
        report.problems


def test_deleted_entry(log) -> None:
    bundle = good_bundle(log)
    del bundle["entries"][17]
    report = verify_bundle(bundle)
    assert not report.ok
    assert "entry 17: seq 18 expected 17" in report.problems
    assert f"entry {N - 2}: seq {N - 1} expected {N - 2}" in report.problems
    assert f"checkpoint 6: size {N} but the bundle has only {N - 1} entries " \
           "(entries deleted or withheld)" in report.problems


def test_deleted_entry_with_renumbered_seq_is_still_caught(log) -> None:
    # The operator deletes entry 17 and renumbers the rest to hide the gap: seq looks
    # fine, the signed roots do not.
    entries, store = log
    forged = entries[:17]
    for i, data in enumerate(entries[18:], start=17):
        e = decode_entry(data)
        e["seq"] = i
        forged.append(encode_entry(e))
    report = verify_bundle(bundle_of(forged, [note_for(store, s) for s in CHECKPOINT_SIZES]))
    assert report.problems == [
        "checkpoint 5: root mismatch at size 33 (tampered entry or checkpoint)",
        f"checkpoint 6: size {N} but the bundle has only {N - 1} entries "
        "(entries deleted or withheld)"]


def test_truncated_log_behind_latest_checkpoint(log) -> None:
    bundle = good_bundle(log)
    bundle["entries"] = bundle["entries"][:30]
    report = verify_bundle(bundle)
    assert report.problems == [
        "checkpoint 5: size 33 but the bundle has only 30 entries "
        "(entries deleted or withheld)",
        f"checkpoint 6: size {N} but the bundle has only 30 entries "
        "(entries deleted or withheld)"]


def test_forged_checkpoint_other_key(log) -> None:
    entries, store = log
    notes = [note_for(store, s) for s in CHECKPOINT_SIZES]
    notes[3] = note_for(store, 16, signer=Signer(99))
    report = verify_bundle(bundle_of(entries, notes))
    assert report.problems == ["checkpoint 3: bad signature or format (forged or damaged)"]


def test_forged_checkpoint_edited_root(log) -> None:
    entries, store = log
    notes = [note_for(store, s) for s in CHECKPOINT_SIZES]
    lines = notes[4].split("\n")
    lines[2] = base64.b64encode(store.root(16)).decode()
    notes[4] = "\n".join(lines)
    report = verify_bundle(bundle_of(entries, notes))
    assert report.problems == ["checkpoint 4: bad signature or format (forged or damaged)"]


def test_signed_checkpoint_for_a_different_history(log) -> None:
    # The key signed a root these entries do not produce (a split view / fork).
    entries, store = log
    other = MemoryNodeStore()
    other.append_entries([make_entry(i, outcome="x") for i in range(N)])
    notes = [note_for(store, s) for s in CHECKPOINT_SIZES]
    notes.insert(5, note_for(other, 33))
    report = verify_bundle(bundle_of(entries, notes))
    assert "checkpoint 5: root mismatch at size 33 (tampered entry or checkpoint)" in \
        report.problems
    assert "checkpoint 6: same size 33 as checkpoint 5 with a different root (a fork)" in \
        report.problems


def test_checkpoints_out_of_order(log) -> None:
    entries, store = log
    notes = [note_for(store, s) for s in [5, 17, 16, N]]
    report = verify_bundle(bundle_of(entries, notes))
    assert report.problems == [
        "checkpoint 2: size 16 smaller than checkpoint 1's 17 (the log shrank)"]


def test_wrong_origin_and_untrusted_key(log) -> None:
    entries, store = log
    notes = [note_for(store, N, origin="evil.example/tenants/x")]
    report = verify_bundle(bundle_of(entries, notes))
    assert report.problems == [
        "checkpoint 0: origin 'evil.example/tenants/x' is not the bundle's "
        f"{ORIGIN!r}"]
    other = Signer(7)
    report = verify_bundle(good_bundle(log),
                           trusted_key=verifier_key_string(ORIGIN, other.public_key_raw()))
    assert not report.ok and report.problems[0].startswith("bundle: key differs")


def test_no_checkpoints(log) -> None:
    report = verify_bundle(bundle_of(log[0], []))
    assert report.problems == ["bundle: no checkpoint, nothing vouches for these entries"]


@pytest.mark.parametrize("bundle", [
    None, [], {}, {"origin": ORIGIN},
    {"origin": ORIGIN, "key_name": ORIGIN, "public_key": "AAAA", "entries": [],
     "checkpoints": []},
    {"origin": ORIGIN, "key_name": "bad name", "public_key": base64.b64encode(PUB).decode(),
     "entries": [], "checkpoints": []},
])
def test_malformed_bundles_never_raise(bundle) -> None:
    report = verify_bundle(bundle)
    assert not report.ok and report.problems


def test_malformed_entries_are_named(log) -> None:
    bundle = good_bundle(log)
    bundle["entries"][2] = "%%%"
    bundle["entries"][3] = base64.b64encode(b'{"seq":3}').decode()
    report = verify_bundle(bundle)
    assert report.problems[0] == "entry 2: not base64"
    assert report.problems[1].startswith("entry 3: malformed")
    assert report.as_dict()["ok"] is False
