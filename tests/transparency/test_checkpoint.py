"""Checkpoints and signed notes: round trips, tampering, and the Go note package's own
published example as a known answer for the key-hash, vkey and signature-line formats."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.transparency.checkpoint import (
    Checkpoint,
    CheckpointError,
    format_checkpoint,
    key_hash,
    open_note,
    parse_and_verify_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key_string,
)

ORIGIN = "gateway.example.com/tenants/6f1c1f3e-6a55-4a4b-9d0e-3b8f6d2b1a10"
ROOT = hashlib.sha256(b"root").digest()


class Signer:
    """Stands in for the keys/ signer: sign(message) -> 64 bytes, public_key_raw()."""

    def __init__(self, seed: int = 1) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key_raw(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


SIGNER = Signer()
PUB = SIGNER.public_key_raw()


def make_note(size: int = 42, root: bytes = ROOT, origin: str = ORIGIN,
              key_name: str = ORIGIN, signer: Signer = SIGNER) -> str:
    return sign_note(format_checkpoint(origin, size, root), key_name, signer.sign,
                     signer.public_key_raw())


# --------------------------------------------------------------------------- known answer

# From the documentation of golang.org/x/mod/sumdb/note (the reference implementation of
# C2SP signed-note): a verifier key and a note signed by its private key.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_note_package_example() -> None:
    name, pub = parse_verifier_key(GO_VKEY)
    assert name == "PeterNeumann"
    assert key_hash(name, pub).hex() == "c74f20a3"
    assert verifier_key_string(name, pub) == GO_VKEY
    text = open_note(GO_NOTE, name, pub)
    assert text == GO_NOTE.split("\n\n")[0].encode() + b"\n"
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace("cryptography", "Cryptography"), name, pub)
    with pytest.raises(CheckpointError):  # a note, but not a checkpoint
        parse_and_verify_note(GO_NOTE, name, pub)


def test_key_hash_and_vkey_from_the_spec_text() -> None:
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + PUB).digest()[:4]
    assert key_hash(ORIGIN, PUB) == expected
    vkey = verifier_key_string(ORIGIN, PUB)
    assert vkey == f"{ORIGIN}+{expected.hex()}+" + base64.b64encode(b"\x01" + PUB).decode()
    assert parse_verifier_key(vkey) == (ORIGIN, PUB)
    for bad in [vkey.replace("+", "-", 1), vkey + "+x", vkey[:-2] + "AA",
                f"{ORIGIN}+00000000+" + base64.b64encode(b"\x01" + PUB).decode(),
                f"{ORIGIN}+{expected.hex()}+" + base64.b64encode(b"\x02" + PUB).decode()]:
        with pytest.raises(CheckpointError):
            parse_verifier_key(bad)


def test_vkey_whose_base64_contains_plus() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    vkey = verifier_key_string("log.example", pub)
    assert vkey.count("+") > 2  # "AQOhB7/zzhC+HXDd..."
    assert parse_verifier_key(vkey) == ("log.example", pub)


# --------------------------------------------------------------------------- format

def test_checkpoint_body_format() -> None:
    body = format_checkpoint(ORIGIN, 42, ROOT)
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n".encode()
    assert parse_checkpoint(body) == Checkpoint(ORIGIN, 42, ROOT)
    ext = format_checkpoint(ORIGIN, 0, ROOT, ["ext one", "ext two"])
    assert parse_checkpoint(ext).extensions == ("ext one", "ext two")


def test_note_layout() -> None:
    note = make_note()
    body, sigs = note.split("\n\n")
    assert body + "\n" == format_checkpoint(ORIGIN, 42, ROOT).decode()
    assert sigs.startswith(f"\u2014 {ORIGIN} ") and sigs.endswith("\n")
    raw = base64.b64decode(sigs.rstrip("\n").split(" ")[2])
    assert raw[:4] == key_hash(ORIGIN, PUB) and len(raw) == 68
    assert raw[4:] == SIGNER.sign((body + "\n").encode())  # Ed25519 is deterministic


def test_round_trip() -> None:
    cp = parse_and_verify_note(make_note(), ORIGIN, PUB, origin=ORIGIN)
    assert cp == Checkpoint(ORIGIN, 42, ROOT)
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT, ("x",)), ORIGIN, SIGNER.sign, PUB)
    assert parse_and_verify_note(note, ORIGIN, PUB) == Checkpoint(ORIGIN, 7, ROOT, ("x",))
    assert parse_and_verify_note(make_note(size=0), ORIGIN, PUB).size == 0
    assert parse_and_verify_note(make_note(size=2**64 - 1), ORIGIN, PUB).size == 2**64 - 1


def _replace_line(note: str, index: int, value: str) -> str:
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


def tampered_notes() -> dict[str, str]:
    note = make_note()
    sig_line = note.split("\n")[4]
    name, encoded = sig_line[2:].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    bad_sig = f"\u2014 {name} " + base64.b64encode(bytes(raw)).decode()
    other = Signer(2)
    return {
        "origin": _replace_line(note, 0, ORIGIN + "x"),
        "size": _replace_line(note, 1, "43"),
        "size leading zero": _replace_line(note, 1, "042"),
        "root": _replace_line(note, 2, base64.b64encode(b"\x00" * 32).decode()),
        "signature": _replace_line(note, 4, bad_sig),
        "key name": note.replace(f"\u2014 {ORIGIN} ", f"\u2014 {ORIGIN}x "),
        "other key, same name": make_note(signer=other),
        "extension added": note.replace("\n\n", "\nextra\n\n"),
        "no signature": note.split("\n\n")[0] + "\n\n",
        "no blank line": note.replace("\n\n", "\n"),
        "hyphen not em dash": note.replace("\u2014", "-"),
        "crlf": note.replace("\n", "\r\n"),
        "no final newline": note[:-1],
        "truncated signature": note[:-10] + "\n",
        "garbage signature line": note + "not a signature\n",
        "empty": "",
    }


@pytest.mark.parametrize("case", sorted(tampered_notes()))
def test_tampering_raises_checkpoint_error(case: str) -> None:
    note = tampered_notes()[case]
    with pytest.raises(CheckpointError) as info:
        parse_and_verify_note(note, ORIGIN, PUB)
    assert str(info.value) == "invalid checkpoint"  # says nothing about which check


def test_wrong_trust_inputs() -> None:
    note = make_note()
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note, ORIGIN + "x", PUB)  # different key name
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note, ORIGIN, Signer(3).public_key_raw())
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note, ORIGIN, PUB[:31])
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note, ORIGIN, PUB, origin="elsewhere/tenants/1")


def test_malformed_bodies() -> None:
    good = format_checkpoint(ORIGIN, 1, ROOT).decode()
    r = base64.b64encode(ROOT).decode()
    for bad in [f"{ORIGIN}\n1\n", f"{ORIGIN}\n+1\n{r}\n", f"{ORIGIN}\n01\n{r}\n", f"{ORIGIN}\n-1\n{r}\n",
                f"{ORIGIN}\n1_0\n{r}\n", f"{ORIGIN}\n\u0663\n{r}\n",
                f"{ORIGIN}\n{2**64}\n{r}\n", f"{ORIGIN}\n1\n{r[:-1]}\n",
                f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
                f"\n1\n{r}\n", f"a b\n1\n{r}\n", f"{ORIGIN}\n1\n{r}\n\n",
                good[:-1], f"{ORIGIN}\n1\n{r}\nx\x00\n"]:
        with pytest.raises(CheckpointError):
            parse_checkpoint(bad.encode())


def test_validly_signed_but_malformed_checkpoint() -> None:
    body = f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n".encode()
    note = sign_note(body, ORIGIN, SIGNER.sign, PUB)
    assert open_note(note, ORIGIN, PUB) == body
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note, ORIGIN, PUB)


def test_foreign_signatures_are_ignored_but_ours_must_verify() -> None:
    note = make_note()
    witness = Signer(9)
    wline = sign_note(note.split("\n\n")[0].encode() + b"\n", "witness.example",
                      witness.sign, witness.public_key_raw()).split("\n\n")[1]
    cosigned = note + wline
    assert parse_and_verify_note(cosigned, ORIGIN, PUB).size == 42
    assert open_note(cosigned, "witness.example", witness.public_key_raw())
    # only a foreign signature: not enough
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note.split("\n\n")[0] + "\n\n" + wline, ORIGIN, PUB)
    # a second, bad signature under our key spoils the note
    sig_line = note.split("\n")[4]
    raw = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    raw[-1] ^= 1
    bad = f"\u2014 {ORIGIN} " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note + bad, ORIGIN, PUB)
    # too many signature lines
    with pytest.raises(CheckpointError):
        parse_and_verify_note(note + wline * 100, ORIGIN, PUB)


def test_sign_note_checks_its_inputs() -> None:
    body = format_checkpoint(ORIGIN, 1, ROOT)
    with pytest.raises(ValueError):
        sign_note(body, ORIGIN, Signer(5).sign, PUB)  # signer does not match key
    with pytest.raises(ValueError):
        sign_note(body, "has space", SIGNER.sign, PUB)
    with pytest.raises(ValueError):
        sign_note(body, "a+b", SIGNER.sign, PUB)
    with pytest.raises(ValueError):
        sign_note(body[:-1], ORIGIN, SIGNER.sign, PUB)
    with pytest.raises(ValueError):
        sign_note(body + b"\n", ORIGIN, SIGNER.sign, PUB)
    with pytest.raises(ValueError):
        sign_note(body, ORIGIN, lambda m: b"x" * 63, PUB)
    with pytest.raises(ValueError):
        format_checkpoint("origin with space", 1, ROOT)
    with pytest.raises(ValueError):
        format_checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(ValueError):
        format_checkpoint(ORIGIN, 1, ROOT[:31])
    with pytest.raises(ValueError):
        format_checkpoint(ORIGIN, 1, ROOT, ["two\nlines"])
