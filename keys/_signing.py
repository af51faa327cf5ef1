"""The operator's Ed25519 key (RFC 8032) that signs transparency-log checkpoints
(C2SP signed-note format; the note encoding lives with the transparency log).

Key file: ``VGWS`` | version 0x01 | 32-byte Ed25519 private key (the RFC 8032 seed),
mode 0600, never overwritten.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ._checks import as_bytes
from ._keyfile import create_key_file, read_key_file

__all__ = ["OperatorSigningKey", "verify_ed25519", "PUBLIC_KEY_LEN", "SIGNATURE_LEN"]

_FILE_MAGIC = b"VGWS"
_FILE_VERSION = 1
_SEED_LEN = 32
PUBLIC_KEY_LEN = 32  # RFC 8032 section 5.1.5
SIGNATURE_LEN = 64  # RFC 8032 section 5.1.6


class OperatorSigningKey:
    """An Ed25519 signing key loaded from a 0600 file; the private key never leaves it."""

    __slots__ = ("_private", "_public_raw", "_path")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use OperatorSigningKey.create(path) or OperatorSigningKey.load(path)")

    @classmethod
    def _from_seed(cls, seed: bytes, path: str) -> OperatorSigningKey:
        self = object.__new__(cls)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._public_raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._path = path
        return self

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> OperatorSigningKey:
        """Generate a key into a new 0600 file at path; FileExistsError if path exists."""
        path = os.fspath(path)
        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        create_key_file(path, _FILE_MAGIC + bytes([_FILE_VERSION]) + seed, "operator signing key")
        return cls._from_seed(seed, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OperatorSigningKey:
        """Read a key file; ValueError naming the path if missing, malformed or not 0600."""
        path = os.fspath(path)
        seed = read_key_file(path, _FILE_MAGIC, _FILE_VERSION, _SEED_LEN, "operator signing key")
        return cls._from_seed(seed, path)

    def __repr__(self) -> str:
        return f"OperatorSigningKey(path={self._path!r}, public_key={self._public_raw.hex()})"

    def sign(self, message: bytes) -> bytes:
        """64-byte Ed25519 signature over message (pure Ed25519, no prehash)."""
        return self._private.sign(bytes(as_bytes(message, "message")))

    def public_key_raw(self) -> bytes:
        """The 32-byte public key (RFC 8032 encoding), as published to tenants."""
        return self._public_raw


def verify_ed25519(public_key_raw: bytes, message: bytes, signature: bytes) -> bool:
    """True if signature is a valid Ed25519 signature of message under public_key_raw.

    A malformed signature is just an invalid one (False); a public key of the wrong length
    is a configuration error (ValueError).
    """
    public_key_raw = as_bytes(public_key_raw, "public_key_raw")
    message = as_bytes(message, "message")
    signature = as_bytes(signature, "signature")
    if len(public_key_raw) != PUBLIC_KEY_LEN:
        raise ValueError(f"public_key_raw must be {PUBLIC_KEY_LEN} bytes, got {len(public_key_raw)}")
    if len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key_raw)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True
