"""Root key providers: the top of the hierarchy, wrapping each tenant's KEKs and BIK.

A provider only ever wraps and unwraps small secrets; it never hands its key out, so
PKCS#11 or a cloud KMS (where the key cannot leave the device) fit the same Protocol.

Wrap format (version 1)::

    0x01 | nonce (12) | AES-256-GCM ciphertext + tag (16)
    GCM AAD = 0x01 | caller's aad

The version byte is part of the AAD so a future format cannot be confused with this one.

Root key rotation (``gateway keys rotate-root``, gateway/tenants/root_rotation.py): the
next root key is written to ``<root key path>.next`` first (``begin_rotation``). While
that file exists the rotation is unfinished and ``load`` returns a provider that wraps
under the next key and unwraps under the next key, else the current one, so a gateway
started mid-rotation reads everything and writes nothing under the old key. Once every
wrapped key is rewrapped, ``finish_rotation`` overwrites the root key file in place with
the next key's bytes (fsync: the old key's bytes are gone from that file), then renames
``.next`` over it (the overwritten file is unlinked; fsync of the directory). At every
instant the root key path holds a loadable key and the next key exists in a file, so a
crash anywhere is finished by running the rotation again.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._checks import as_bytes
from ._errors import DecryptionError
from ._keyfile import create_key_file, read_key_file

__all__ = ["RootKeyProvider", "FileRootKeyProvider", "MAX_WRAP_PLAINTEXT", "MAX_WRAP_AAD"]

_VERSION = 1
_VERSION_BYTE = bytes([_VERSION])
_NONCE_LEN = 12
_TAG_LEN = 16
_KEY_LEN = 32  # AES-256

_FILE_MAGIC = b"VGWR"
_FILE_VERSION = 1

# The Protocol promises what every backend can keep: AWS KMS Encrypt takes at most 4096
# bytes of plaintext (KMS API reference, Encrypt), and tenant keys are 32 bytes. Keeping
# the file provider to the same bound means code tested against it works against KMS.
MAX_WRAP_PLAINTEXT = 4096
# AAD here is a short binding string (tenant, kind, version); 1 KiB is far above need.
MAX_WRAP_AAD = 1024


@runtime_checkable
class RootKeyProvider(Protocol):
    """Anything that can wrap and unwrap small secrets under a key it never reveals."""

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate plaintext (at most MAX_WRAP_PLAINTEXT bytes), bound to aad."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Return the plaintext, or raise DecryptionError (tampering, wrong aad, wrong key)."""
        ...


def _check_wrap_args(plaintext: object, aad: object) -> tuple[bytes | memoryview, bytes | memoryview]:
    plaintext = as_bytes(plaintext, "plaintext")
    aad = as_bytes(aad, "aad")
    if len(plaintext) > MAX_WRAP_PLAINTEXT:
        raise ValueError(f"plaintext must be at most {MAX_WRAP_PLAINTEXT} bytes, got {len(plaintext)}")
    if len(aad) > MAX_WRAP_AAD:
        raise ValueError(f"aad must be at most {MAX_WRAP_AAD} bytes, got {len(aad)}")
    return plaintext, aad


class FileRootKeyProvider:
    """Root key in a local 0600 file: ``VGWR`` | version 0x01 | 32 random key bytes.

    Use ``create`` once at install time and ``load`` at every start. The raw key is held
    only inside an AESGCM object; no attribute or method returns it.
    """

    __slots__ = ("_aead", "_fallback", "_path")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use FileRootKeyProvider.create(path) or FileRootKeyProvider.load(path)")

    @classmethod
    def _from_key(cls, key: bytes, path: str, fallback: bytes | None = None
                  ) -> FileRootKeyProvider:
        self = object.__new__(cls)
        self._aead = AESGCM(key)
        # During a rotation: the current key, still accepted for unwrapping.
        self._fallback = AESGCM(fallback) if fallback is not None else None
        self._path = path
        return self

    @staticmethod
    def next_path(path: str | os.PathLike[str]) -> str:
        """Where a rotation keeps the next root key until it replaces the current one."""
        return os.fspath(path) + ".next"

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> FileRootKeyProvider:
        """Write a new random root key to path (mode 0600); FileExistsError if path exists."""
        path = os.fspath(path)
        key = os.urandom(_KEY_LEN)
        create_key_file(path, _FILE_MAGIC + bytes([_FILE_VERSION]) + key, "root key")
        return cls._from_key(key, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, follow_rotation: bool = True
             ) -> FileRootKeyProvider:
        """Read a root key file; ValueError naming the path if it is missing, the wrong
        size or format, or readable by group or others. With `follow_rotation` and a
        `.next` file beside it (a rotation not finished), the provider wraps under the
        next key and unwraps under either (module docstring)."""
        path = os.fspath(path)
        key = read_key_file(path, _FILE_MAGIC, _FILE_VERSION, _KEY_LEN, "root key")
        nxt = cls.next_path(path)
        if follow_rotation and os.path.lexists(nxt):
            next_key = read_key_file(nxt, _FILE_MAGIC, _FILE_VERSION, _KEY_LEN, "root key")
            return cls._from_key(next_key, nxt, fallback=key if key != next_key else None)
        return cls._from_key(key, path)

    @classmethod
    def begin_rotation(cls, path: str | os.PathLike[str]
                       ) -> tuple[FileRootKeyProvider, FileRootKeyProvider, bool]:
        """(current key alone, next key alone, resumed): the next key file is created
        unless a rotation cut short left one (then it is reused: things may already be
        wrapped under it)."""
        path = os.fspath(path)
        current = cls.load(path, follow_rotation=False)
        nxt = cls.next_path(path)
        resumed = os.path.lexists(nxt)
        new = cls.load(nxt, follow_rotation=False) if resumed else cls.create(nxt)
        return current, new, resumed

    @classmethod
    def finish_rotation(cls, path: str | os.PathLike[str]) -> bool:
        """Make the next key the root key and destroy the old one: overwrite the root key
        file in place with the next key's bytes and fsync (the old key's bytes leave that
        file; best effort on SSDs and copy-on-write file systems, which may keep old
        blocks), then rename `.next` over it and fsync the directory (the overwritten file
        is unlinked). False if no rotation was under way. Call only when nothing is left
        under the old key."""
        path = os.fspath(path)
        nxt = cls.next_path(path)
        if not os.path.lexists(nxt):
            return False
        next_key = read_key_file(nxt, _FILE_MAGIC, _FILE_VERSION, _KEY_LEN, "root key")
        content = _FILE_MAGIC + bytes([_FILE_VERSION]) + next_key
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            view = memoryview(content)
            offset = 0
            while offset < len(content):   # same size: every byte of the old key is hit
                offset += os.pwrite(fd, view[offset:], offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(nxt, path)
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def __repr__(self) -> str:
        return f"FileRootKeyProvider(path={self._path!r})"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        # Random 96-bit nonces: the root key wraps a few keys per tenant, far below the
        # 2**32 invocations NIST SP 800-38D section 8.3 allows with random nonces.
        return wrap_with(self._aead, plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return unwrap_with(self._aead, wrapped, aad)
        except DecryptionError:
            if self._fallback is None:
                raise
            return unwrap_with(self._fallback, wrapped, aad)


# The one wrap format, shared by every key-wrapping layer (root key, tenant root key):
# version byte | 12-byte random nonce | AES-256-GCM ciphertext+tag, the version byte
# prefixed to the caller's AAD.
def wrap_with(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    plaintext, aad = _check_wrap_args(plaintext, aad)
    nonce = os.urandom(_NONCE_LEN)
    return _VERSION_BYTE + nonce + aead.encrypt(nonce, plaintext, _VERSION_BYTE + aad)


def unwrap_with(aead: AESGCM, wrapped: bytes, aad: bytes) -> bytes:
    wrapped = as_bytes(wrapped, "wrapped")
    aad = as_bytes(aad, "aad")
    if len(wrapped) < 1 + _NONCE_LEN + _TAG_LEN or wrapped[0] != _VERSION:
        raise DecryptionError()
    wrapped = bytes(wrapped)
    try:
        return aead.decrypt(wrapped[1 : 1 + _NONCE_LEN], wrapped[1 + _NONCE_LEN :],
                            _VERSION_BYTE + aad)
    except InvalidTag:
        raise DecryptionError() from None
