"""A per-tenant wrapping key in its own small file: the layer that makes offboarding reach
backups.

Without it, a tenant's KEK rows are wrapped directly under the root key. A backup of the
database taken before offboarding keeps those rows, and the operator keeps the root key,
so deleting the rows from the live database would not make the backup unreadable. With
it, the hierarchy is::

    root key  --wraps-->  tenant root key (this file)  --wraps-->  KEK versions, BIK (DB rows)

The file lives outside the database and the blob store (``[storage] tenant_key_dir``) and
is excluded from their backups. Destroying it (offboarding) leaves every copy of the
tenant's rows, in the live database or any backup of it, wrapped under a key that no
longer exists. The file itself is wrapped under the root key, so a copy of the key
directory alone is useless too.

File layout: ``VGWT`` | version 0x01 | root-wrapped 32-byte key, the root wrap bound to
``"tenant-root-key|" | tenant id (16 bytes)`` so a file copied to another tenant's name
fails to open. Created 0600, never over an existing file (``_keyfile``).

The object is a ``RootKeyProvider`` (``wrap``/``unwrap``, same format as the file
provider's wrap), so ``new_tenant_keys``, ``new_kek_version`` and ``open_tenant_keys``
take it in place of the root.

Rotation (``TenantRootKeySwitch``): while a tenant moves from one tenant root key to the
next, both can open and only the new one wraps, so every row or segment rewritten during
the switch is under the new key and a crash at any point leaves everything openable.
"""

from __future__ import annotations

import os
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._checks import check_uuid
from ._errors import DecryptionError
from ._keyfile import create_key_file, read_key_file
from ._root import RootKeyProvider, unwrap_with, wrap_with

__all__ = ["TenantRootKey", "TenantRootKeySwitch"]

_FILE_MAGIC = b"VGWT"
_FILE_VERSION = 1
_KEY_LEN = 32
# A wrapped key from any root provider: the file provider's is 61 bytes; KMS ciphertext
# blobs for a 32-byte key are a few hundred. 4 KiB bounds what a load reads.
MAX_WRAPPED_LEN = 4096


def _binding(tenant_id: uuid.UUID) -> bytes:
    return b"tenant-root-key|" + tenant_id.bytes


def _check_root(root: object) -> RootKeyProvider:
    if not isinstance(root, RootKeyProvider):
        raise TypeError(f"root must be a RootKeyProvider, not {type(root).__name__}")
    return root


class TenantRootKey:
    """One tenant's wrapping key, loaded from its file. Wraps and unwraps the tenant's key
    rows exactly as a root provider does; no attribute or method returns the key."""

    __slots__ = ("_aead", "_path")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use TenantRootKey.create(path, root, tenant_id) or .load(...)")

    @classmethod
    def _from_key(cls, key: bytes, path: str) -> TenantRootKey:
        self = object.__new__(cls)
        self._aead = AESGCM(key)
        self._path = path
        return self

    @classmethod
    def create(cls, path: str | os.PathLike[str], root: RootKeyProvider,
               tenant_id: uuid.UUID) -> TenantRootKey:
        """Write a new random tenant root key (wrapped under root) to path, mode 0600;
        FileExistsError if path exists."""
        _check_root(root)
        check_uuid(tenant_id, "tenant_id")
        path = os.fspath(path)
        key = os.urandom(_KEY_LEN)
        wrapped = root.wrap(key, _binding(tenant_id))
        if not 0 < len(wrapped) <= MAX_WRAPPED_LEN:
            raise ValueError(f"root provider returned a wrapped key of {len(wrapped)} bytes")
        create_key_file(path, _FILE_MAGIC + bytes([_FILE_VERSION]) + wrapped,
                        "tenant root key")
        return cls._from_key(key, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], root: RootKeyProvider,
             tenant_id: uuid.UUID) -> TenantRootKey:
        """Read and unwrap a tenant root key file. ValueError naming the path if it is
        missing or malformed (see _keyfile); DecryptionError if it does not unwrap under
        root for this tenant."""
        _check_root(root)
        check_uuid(tenant_id, "tenant_id")
        path = os.fspath(path)
        wrapped = read_key_file(path, _FILE_MAGIC, _FILE_VERSION, None, "tenant root key",
                                max_length=MAX_WRAPPED_LEN)
        key = root.unwrap(wrapped, _binding(tenant_id))
        if len(key) != _KEY_LEN:
            raise DecryptionError()
        return cls._from_key(key, path)

    # -- the same, for a key store that holds bytes (gateway/store/keystore.py) -----------
    @classmethod
    def generate(cls, root: RootKeyProvider, tenant_id: uuid.UUID
                 ) -> tuple[TenantRootKey, bytes]:
        """A new random tenant root key and the bytes to store for it (the key wrapped under
        root, in the key-file layout): the caller stores the bytes, never the key."""
        _check_root(root)
        check_uuid(tenant_id, "tenant_id")
        key = os.urandom(_KEY_LEN)
        wrapped = root.wrap(key, _binding(tenant_id))
        if not 0 < len(wrapped) <= MAX_WRAPPED_LEN:
            raise ValueError(f"root provider returned a wrapped key of {len(wrapped)} bytes")
        return cls._from_key(key, "<key store>"), _FILE_MAGIC + bytes([_FILE_VERSION]) + wrapped

    @classmethod
    def from_bytes(cls, data: bytes, root: RootKeyProvider,
                   tenant_id: uuid.UUID) -> TenantRootKey:
        """Open stored bytes made by `generate` (or a key file's content). ValueError if they
        are not a tenant root key; DecryptionError if they do not unwrap for this tenant."""
        _check_root(root)
        check_uuid(tenant_id, "tenant_id")
        header = _FILE_MAGIC + bytes([_FILE_VERSION])
        if not (len(header) < len(data) <= len(header) + MAX_WRAPPED_LEN
                and data.startswith(header)):
            raise ValueError("not a tenant root key")
        key = root.unwrap(bytes(data[len(header):]), _binding(tenant_id))
        if len(key) != _KEY_LEN:
            raise DecryptionError()
        return cls._from_key(key, "<key store>")

    @staticmethod
    def rewrap_stored(data: bytes, old: RootKeyProvider, new: RootKeyProvider,
                      tenant_id: uuid.UUID) -> bytes | None:
        """Stored bytes (`generate`'s layout) with the same tenant root key wrapped under
        the root key `new` instead of `old` (a root key rotation), or None if they already
        open under `new`. ValueError if they are not a tenant root key; DecryptionError if
        they open under neither."""
        _check_root(old)
        _check_root(new)
        check_uuid(tenant_id, "tenant_id")
        header = _FILE_MAGIC + bytes([_FILE_VERSION])
        if not (len(header) < len(data) <= len(header) + MAX_WRAPPED_LEN
                and data.startswith(header)):
            raise ValueError("not a tenant root key")
        wrapped = bytes(data[len(header):])
        try:
            new.unwrap(wrapped, _binding(tenant_id))
            return None
        except DecryptionError:
            pass
        key = old.unwrap(wrapped, _binding(tenant_id))
        if len(key) != _KEY_LEN:
            raise DecryptionError()
        return header + new.wrap(key, _binding(tenant_id))

    @staticmethod
    def destroy(path: str | os.PathLike[str]) -> bool:
        """Crypto-shred: overwrite the file, fsync, unlink it and fsync its directory.
        Returns False if there was no file. Overwriting is best effort (SSDs and
        copy-on-write file systems may keep the old blocks); what makes the data
        unreadable is that no backup holds this file (docs/retention-and-dsr.md)."""
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def __repr__(self) -> str:
        return f"TenantRootKey(path={self._path!r})"

    # The same wrap format as FileRootKeyProvider (keys/_root.py): a tenant's rows look
    # alike whichever layer wrapped them, and only the key differs.
    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        # Random 96-bit nonces: a tenant root key wraps a handful of keys in its life.
        return wrap_with(self._aead, plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return unwrap_with(self._aead, wrapped, aad)


class TenantRootKeySwitch:
    """The wrapping key of a tenant during a tenant root key rotation: wraps under `new`;
    unwraps under `new`, else under `old` (a row or segment not rewrapped yet). Once
    nothing is left under `old`, the old key can be destroyed."""

    __slots__ = ("_old", "_new")

    def __init__(self, old: RootKeyProvider, new: TenantRootKey) -> None:
        self._old = _check_root(old)
        if not isinstance(new, TenantRootKey):
            raise TypeError(f"new must be a TenantRootKey, not {type(new).__name__}")
        self._new = new

    @property
    def new(self) -> TenantRootKey:
        return self._new

    def __repr__(self) -> str:
        return "<TenantRootKeySwitch>"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._new.wrap(plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._new.unwrap(wrapped, aad)
        except DecryptionError:
            return self._old.unwrap(wrapped, aad)

    def is_new(self, wrapped: bytes, aad: bytes) -> bool:
        """True if `wrapped` already opens under the new key (nothing left to rewrap)."""
        try:
            self._new.unwrap(wrapped, aad)
        except DecryptionError:
            return False
        return True
