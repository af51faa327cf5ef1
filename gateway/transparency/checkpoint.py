"""Checkpoints (C2SP tlog-checkpoint) wrapped in signed notes (C2SP signed-note). Pure.

A checkpoint body is three lines and optional extension lines::

    <origin>\n
    <tree size, ASCII decimal>\n
    <root hash, standard base64>\n
    [<extension line>\n ...]

A signed note is the body, one blank line, then one or more signature lines::

    — <key name> <base64(key hash (4 bytes) || signature)>\n

with an em dash (U+2014). For Ed25519 keys (signature type 0x01) the key hash is the first
four bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key) and the signature is
Ed25519 over the body bytes, final newline included. The verifier key string that a tenant
pins is ``<name>+<8 hex digits of key hash>+<base64(0x01 || public key)>``.

The operator's signing key lives in ``keys/``; this module only receives its ``sign``
function and public key, and verifies with pyca/cryptography's ``Ed25519PublicKey``.
Every parse or signature failure raises the one ``CheckpointError``, whose message never
says which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.transparency.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "format_checkpoint",
    "key_hash",
    "open_note",
    "parse_and_verify_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verifier_key_string",
]

ALG_ED25519 = 0x01
"""Signature type byte for Ed25519 in C2SP signed-note (as in golang.org/x/mod/sumdb/note)."""

_ED25519_PUBLIC_KEY_SIZE = 32  # RFC 8032 §5.1.5
_ED25519_SIGNATURE_SIZE = 64  # RFC 8032 §5.1.6
_KEY_HASH_SIZE = 4  # C2SP signed-note: "the first four bytes of the SHA-256 hash"

# A checkpoint note is three short lines plus a signature line or a few (one per
# witness cosignature, ~100 bytes each). 64 KiB leaves room for thousands of lines and
# keeps a hostile "checkpoint" from costing more than a memcpy.
MAX_NOTE_SIZE = 64 * 1024

# golang.org/x/mod/sumdb/note refuses notes with more than 100 signature lines to bound
# verification work; we take the same number.
MAX_SIGNATURES = 100

# Origin and key name: non-empty, no Unicode whitespace, no "+" (the vkey separator).
# C2SP signed-note requires this of key names; tlog-checkpoint recommends it for the
# origin, and since our key name *is* the origin by convention we require it of both.
_MAX_NAME = 1024

_SIG_PREFIX = "\u2014 "  # em dash, space


class CheckpointError(Exception):
    """A note or checkpoint failed to parse or to verify. Deliberately uninformative."""

    def __init__(self, message: str = "invalid checkpoint") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


# --------------------------------------------------------------------------- keys

def _valid_name(name: object) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= _MAX_NAME and "+" not in name
            and not any(ch.isspace() for ch in name) and not _has_control(name))


def _has_control(text: str) -> bool:
    # Signed-note text is lines of UTF-8 ending in newlines; we refuse every other
    # control character (C0, DEL, C1) so that what a tenant sees is what was signed.
    return any((ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _check_public_key(public_key: object) -> bytes:
    if not isinstance(public_key, bytes) or len(public_key) != _ED25519_PUBLIC_KEY_SIZE:
        raise ValueError("public_key must be 32 bytes (raw Ed25519)")
    return public_key


def key_hash(key_name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || public key)[:4] (C2SP signed-note, Ed25519)."""
    if not _valid_name(key_name):
        raise ValueError("key_name must be non-empty, without spaces, '+' or controls")
    _check_public_key(public_key)
    digest = hashlib.sha256(key_name.encode("utf-8") + b"\n" + bytes([ALG_ED25519])
                            + public_key).digest()
    return digest[:_KEY_HASH_SIZE]


def verifier_key_string(key_name: str, public_key: bytes) -> str:
    """``<name>+<hex key hash>+<base64(0x01 || public key)>``: what a tenant pins."""
    kh = key_hash(key_name, public_key)
    return f"{key_name}+{kh.hex()}+" + base64.b64encode(bytes([ALG_ED25519]) + public_key
                                                         ).decode("ascii")


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """Inverse of ``verifier_key_string``: returns (key name, raw public key)."""
    if not isinstance(vkey, str):
        raise CheckpointError("invalid verifier key")
    parts = vkey.split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3 or not _valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}",
                                                                          parts[1]):
        raise CheckpointError("invalid verifier key")
    raw = _b64decode(parts[2])
    if raw is None or len(raw) != 1 + _ED25519_PUBLIC_KEY_SIZE or raw[0] != ALG_ED25519:
        raise CheckpointError("invalid verifier key")
    name, public_key = parts[0], raw[1:]
    if key_hash(name, public_key).hex() != parts[1]:
        raise CheckpointError("invalid verifier key")
    return name, public_key


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 with padding; None unless ``text`` is the canonical form."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None  # non-canonical padding bits: one value, one encoding
    return raw


# --------------------------------------------------------------------------- body

def format_checkpoint(origin: str, size: int, root: bytes,
                      extensions: Sequence[str] = ()) -> bytes:
    """The checkpoint body (C2SP tlog-checkpoint), ready to be signed."""
    if not _valid_name(origin):
        raise ValueError("origin must be non-empty, without spaces, '+' or controls")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError("size must be an int between 0 and 2**64 - 1")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise ValueError(f"root must be {HASH_SIZE} bytes")
    for ext in extensions:
        if not isinstance(ext, str) or not ext or "\n" in ext or _has_control(ext):
            raise ValueError("each extension must be a non-empty line without controls")
    lines = [origin, str(size), base64.b64encode(root).decode("ascii"), *extensions]
    return ("\n".join(lines) + "\n").encode("utf-8")


_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII decimal, no sign, no leading zeros


def parse_checkpoint(body: bytes) -> Checkpoint:
    """Parse a checkpoint body (no signature check: use ``parse_and_verify_note``)."""
    try:
        text = body.decode("utf-8")
    except (UnicodeDecodeError, AttributeError):
        raise CheckpointError() from None
    if not text.endswith("\n") or _has_control(text):
        raise CheckpointError()
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise CheckpointError()
    origin, size_text, root_text, *extensions = lines
    if not _valid_name(origin) or not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError()
    size = int(size_text)
    root = _b64decode(root_text)
    if size > MAX_TREE_SIZE or root is None or len(root) != HASH_SIZE:
        raise CheckpointError()
    return Checkpoint(origin, size, root, tuple(extensions))


# --------------------------------------------------------------------------- notes

def sign_note(body: bytes, key_name: str, sign: Callable[[bytes], bytes],
              public_key: bytes) -> str:
    """Body + blank line + one signature line. ``sign(message) -> 64-byte Ed25519 sig``.

    The signature is checked against ``public_key`` before the note is returned, so a
    signer that does not match the advertised key fails here and not at every tenant.
    """
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body must be UTF-8") from None
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n") or _has_control(
            text):
        raise ValueError("body must be non-empty lines, each ending in a newline")
    kh = key_hash(key_name, public_key)
    signature = sign(body)
    if not isinstance(signature, bytes) or len(signature) != _ED25519_SIGNATURE_SIZE:
        raise ValueError("sign() must return a 64-byte Ed25519 signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, body)
    except InvalidSignature:
        raise ValueError("sign() does not match public_key") from None
    encoded = base64.b64encode(kh + signature).decode("ascii")
    note = f"{text}\n{_SIG_PREFIX}{key_name} {encoded}\n"
    if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
        raise ValueError("note too large")
    return note


def sign_checkpoint(checkpoint: Checkpoint, key_name: str, sign: Callable[[bytes], bytes],
                    public_key: bytes) -> str:
    """``sign_note(format_checkpoint(...))`` for a ``Checkpoint``."""
    body = format_checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root,
                             checkpoint.extensions)
    return sign_note(body, key_name, sign, public_key)


def open_note(note: str, key_name: str, public_key: bytes) -> bytes:
    """Verify a signed note with the one key the caller trusts; return its text (bytes).

    Follows C2SP signed-note: the text is everything up to and including the newline
    before the last blank line; each following line is a signature; signatures by other
    keys (witness cosignatures, say) are ignored; at least one must be from
    (``key_name``, ``public_key``) and every signature claiming that key must verify.
    """
    if not isinstance(note, str) or len(note) > MAX_NOTE_SIZE:
        raise CheckpointError()
    if not note.endswith("\n") or _has_control(note):
        raise CheckpointError()
    try:
        expected_hash = key_hash(key_name, public_key)
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise CheckpointError() from None
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError()
    text, sig_block = note[: split + 1], note[split + 2:]
    sig_lines = sig_block[:-1].split("\n") if sig_block else []
    if not sig_lines or len(sig_lines) > MAX_SIGNATURES:
        raise CheckpointError()
    body = text.encode("utf-8")
    verified = False
    for line in sig_lines:
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError()
        fields = line[len(_SIG_PREFIX):].split(" ")
        if len(fields) != 2 or not _valid_name(fields[0]):
            raise CheckpointError()
        name, encoded = fields
        raw = _b64decode(encoded)
        if raw is None or len(raw) <= _KEY_HASH_SIZE:
            raise CheckpointError()
        if name != key_name or raw[:_KEY_HASH_SIZE] != expected_hash:
            continue  # someone else's signature: not ours to judge
        signature = raw[_KEY_HASH_SIZE:]
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            raise CheckpointError()
        try:
            verifier.verify(signature, body)
        except InvalidSignature:
            raise CheckpointError() from None
        verified = True
    if not verified:
        raise CheckpointError()
    return body


def parse_and_verify_note(note: str, key_name: str, public_key: bytes, *,
                          origin: str | None = None) -> Checkpoint:
    """``open_note`` then ``parse_checkpoint``; with ``origin`` the origin line must match.

    Raises ``CheckpointError`` for every failure: format, signature, key, origin.
    """
    checkpoint = parse_checkpoint(open_note(note, key_name, public_key))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError()
    return checkpoint
