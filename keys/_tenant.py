"""A tenant's key ring: versioned KEKs and one blind-index key (BIK), each wrapped under
the root key and stored by the gateway as opaque ``WrappedKey`` rows.

Tenant key AAD (root wrap)::

    "tenant-key|" | tenant id (16) | "|" | kind ("kek" or "bik") | "|" | version (uint32 BE)

Tenant id, kind (two 3-byte values) and version are fixed width, so the AAD is unambiguous;
a row copied to another tenant, kind or version fails to unwrap.

Each KEK is used only through two HKDF-SHA256 subkeys (RFC 5869; IKM = KEK, no salt) so
no key serves two purposes:

    records subkey  = HKDF(KEK, info = "vgw/v1/records")   -> per-record keys (_record.py)
    dek-wrap subkey = HKDF(KEK, info = "vgw/v1/dek-wrap")  -> AES-256-GCM over DEKs (_dek.py)

Blind-index keys are versioned like KEKs (BIK 1 is created with the tenant; a rotation adds
BIK n+1). A ring indexes under one or more (BIK version, bits) pairs: the first is the one
new rows are indexed under, the others are still matched while a reindex moves rows from
them (docs/crypto-formats.md "Blind index").

Tenant root key rotation rewraps (``rewrap_tenant_keys``, ``rewrap_unit_segment``): every
stored key the old wrapping key wraps directly is unwrapped and wrapped again under the
new one inside this package; the keys themselves never change and never leave it, so no
record, DEK or blob is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _blind, _dek, _record, _unit
from ._blob import (
    DEFAULT_SEGMENT_SIZE_LOG2,
    MAX_SEGMENT_SIZE_LOG2,
    MIN_SEGMENT_SIZE_LOG2,
    BlobReader,
    BlobWriter,
)
from ._checks import as_bytes, check_int, check_str, check_uuid
from ._errors import DecryptionError
from ._hkdf import derive32
from ._root import RootKeyProvider

__all__ = [
    "WrappedKey",
    "TenantKeys",
    "new_tenant_keys",
    "new_kek_version",
    "new_bik_version",
    "open_tenant_keys",
    "sealed_version",
    "UnitSealed",
    "KIND_KEK",
    "KIND_BIK",
    "MAX_KEK_VERSION",
    "rewrap_tenant_keys",
    "rewrap_unit_segment",
]

KIND_KEK = "kek"
KIND_BIK = "bik"
_KINDS = (KIND_KEK, KIND_BIK)
_KEY_LEN = 32
# Versions are uint32 in every format that carries one.
MAX_KEK_VERSION = 2**32 - 1
# The BIK a new tenant gets.
_FIRST_BIK_VERSION = 1

_RECORDS_LABEL = b"vgw/v1/records"
_DEK_WRAP_LABEL = b"vgw/v1/dek-wrap"


@dataclass(frozen=True)
class WrappedKey:
    """One row of the gateway's tenant key table; opaque outside keys/."""

    kind: str  # "kek" or "bik"
    version: int  # KEK version 1, 2, ...; BIK version 1, 2, ...
    wrapped: bytes  # root-wrapped key; its AAD binds tenant id, kind and version

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be 'kek' or 'bik', got {self.kind!r}")
        check_int(self.version, "version", 1, MAX_KEK_VERSION)
        if not isinstance(self.wrapped, bytes):
            raise TypeError(f"wrapped must be bytes, not {type(self.wrapped).__name__}")

    def __repr__(self) -> str:
        return f"WrappedKey(kind={self.kind!r}, version={self.version}, wrapped=<{len(self.wrapped)} bytes>)"


def _check_root(root: object) -> RootKeyProvider:
    if not isinstance(root, RootKeyProvider):
        raise TypeError(f"root must be a RootKeyProvider, not {type(root).__name__}")
    return root


def _aad(tenant_id: uuid.UUID, kind: str, version: int) -> bytes:
    return b"tenant-key|" + tenant_id.bytes + b"|" + kind.encode("ascii") + b"|" + version.to_bytes(4, "big")


def _new_wrapped(root: RootKeyProvider, tenant_id: uuid.UUID, kind: str, version: int) -> WrappedKey:
    key = os.urandom(_KEY_LEN)
    return WrappedKey(kind, version, root.wrap(key, _aad(tenant_id, kind, version)))


def new_tenant_keys(root: RootKeyProvider, tenant_id: uuid.UUID) -> list[WrappedKey]:
    """Fresh keys for a new tenant: KEK version 1 and the blind-index key."""
    _check_root(root)
    check_uuid(tenant_id, "tenant_id")
    return [
        _new_wrapped(root, tenant_id, KIND_KEK, 1),
        _new_wrapped(root, tenant_id, KIND_BIK, _FIRST_BIK_VERSION),
    ]


def new_kek_version(root: RootKeyProvider, tenant_id: uuid.UUID, version: int) -> WrappedKey:
    """A new KEK version for rotation; once stored and the ring reopened, the highest
    version present becomes primary."""
    _check_root(root)
    check_uuid(tenant_id, "tenant_id")
    check_int(version, "version", 1, MAX_KEK_VERSION)
    return _new_wrapped(root, tenant_id, KIND_KEK, version)


def new_bik_version(root: RootKeyProvider, tenant_id: uuid.UUID, version: int) -> WrappedKey:
    """A new blind-index key version (blind-index key rotation); the gateway indexes under
    it once its reindex starts and destroys the old version when the reindex completes."""
    _check_root(root)
    check_uuid(tenant_id, "tenant_id")
    check_int(version, "version", 1, MAX_KEK_VERSION)
    return _new_wrapped(root, tenant_id, KIND_BIK, version)


def open_tenant_keys(
    root: RootKeyProvider,
    tenant_id: uuid.UUID,
    wrapped: Iterable[WrappedKey],
    *,
    blind_index_bits: int = 16,
    blind_indexes: Sequence[tuple[int, int]] | None = None,
    units: Mapping[tuple[uuid.UUID, uuid.UUID], _unit.UnitKey] | None = None,
) -> TenantKeys:
    """Unwrap a tenant's key rows into a TenantKeys.

    `blind_indexes` is the (BIK version, bits) pairs the ring indexes under: the first for
    new rows (`blind_index`), all of them for matching (`blind_indexes`); without it, the
    lowest BIK version present at `blind_index_bits`.
    `units` (anything with `.get((segment id, entry id))`) is where format-2 records find
    their unit keys when `open_record` is given none: the gateway passes its key-store
    cache. Needs at least one KEK version and the BIK of every pair (ValueError otherwise);
    raises DecryptionError if any row fails to unwrap (tampered, or another tenant's row).
    """
    _check_root(root)
    check_uuid(tenant_id, "tenant_id")
    check_int(blind_index_bits, "blind_index_bits", _blind.MIN_BITS, _blind.MAX_BITS)
    if isinstance(wrapped, WrappedKey | bytes | str):
        raise TypeError("wrapped must be an iterable of WrappedKey")
    rows = list(wrapped)
    seen: set[tuple[str, int]] = set()
    for row in rows:
        if not isinstance(row, WrappedKey):
            raise TypeError(f"wrapped must contain WrappedKey items, not {type(row).__name__}")
        if (row.kind, row.version) in seen:
            raise ValueError(f"wrapped contains {row.kind} version {row.version} twice")
        seen.add((row.kind, row.version))
    if not any(kind == KIND_KEK for kind, _ in seen):
        raise ValueError("wrapped must contain at least one 'kek' key")
    bik_versions = sorted(v for kind, v in seen if kind == KIND_BIK)
    if not bik_versions:
        raise ValueError("wrapped must contain a 'bik' key")
    if blind_indexes is None:
        pairs = [(bik_versions[0], blind_index_bits)]
    else:
        pairs = []
        for version, bits in blind_indexes:
            check_int(bits, "bits", _blind.MIN_BITS, _blind.MAX_BITS)
            if version not in bik_versions:
                raise ValueError(f"wrapped must contain 'bik' version {version}")
            if (version, bits) not in pairs:
                pairs.append((version, bits))
        if not pairs:
            raise ValueError("blind_indexes must name at least one (version, bits) pair")

    keks: dict[int, _Kek] = {}
    biks: dict[int, bytes] = {}
    for row in rows:
        key = root.unwrap(row.wrapped, _aad(tenant_id, row.kind, row.version))
        if len(key) != _KEY_LEN:
            raise DecryptionError()
        if row.kind == KIND_KEK:
            keks[row.version] = _Kek(key)
        else:
            biks[row.version] = key
    indexers = tuple((v, bits, biks[v]) for v, bits in pairs)
    return TenantKeys._create(tenant_id, keks, indexers, units)


class UnitSealed(ValueError):
    """The record is under a unit key (format 2), not under any KEK version."""


def sealed_version(sealed: bytes) -> int:
    """KEK version a sealed record or wrapped DEK is under (to track rotation progress).

    Reads the unauthenticated prefix only; ValueError if sealed is not either format,
    UnitSealed (a ValueError) for a format-2 record, which no KEK version protects.
    """
    sealed = as_bytes(sealed, "sealed")
    if _unit.unit_ref(bytes(sealed)) is not None:
        raise UnitSealed()
    try:
        if len(sealed) == _dek.WRAPPED_LEN and sealed[0] == _dek.FORMAT:
            return _dek.parse(sealed)[0]
        return _record.kek_version(sealed)
    except DecryptionError:
        raise ValueError("sealed is not a sealed record or wrapped DEK") from None


class _Kek:
    """The two purpose-bound subkeys of one KEK version (the KEK itself is not kept)."""

    __slots__ = ("records", "dek_wrap")

    def __init__(self, kek: bytes) -> None:
        self.records = derive32(kek, b"", _RECORDS_LABEL)
        self.dek_wrap = AESGCM(derive32(kek, b"", _DEK_WRAP_LABEL))

    def __repr__(self) -> str:
        return "<_Kek>"


class TenantKeys:
    """One tenant's unwrapped key ring, held in memory by the gateway.

    Seals and opens records, blind-indexes phone numbers and encrypts blobs; new data
    always uses the primary (highest) KEK version, old data opens under any version
    still present. No attribute or method returns a raw key.
    """

    __slots__ = ("_tenant_id", "_tenant", "_keks", "_primary", "_versions", "_indexers",
                 "_units")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use keys.open_tenant_keys(root, tenant_id, wrapped) to create TenantKeys")

    @classmethod
    def _create(cls, tenant_id: uuid.UUID, keks: dict[int, _Kek],
                indexers: tuple[tuple[int, int, bytes], ...],
                units: Mapping[tuple[uuid.UUID, uuid.UUID], _unit.UnitKey] | None = None
                ) -> TenantKeys:
        self = object.__new__(cls)
        self._units = units
        self._tenant_id = tenant_id
        self._tenant = tenant_id.bytes
        self._keks = keks
        self._versions = tuple(sorted(keks))
        self._primary = self._versions[-1]
        # (BIK version, bits, BIK): the first indexes new rows, all are matched.
        self._indexers = indexers
        return self

    def __repr__(self) -> str:
        return f"<TenantKeys tenant_id={self._tenant_id} versions={self._versions}>"

    @property
    def tenant_id(self) -> uuid.UUID:
        return self._tenant_id

    @property
    def primary_version(self) -> int:
        """Highest KEK version present; all new ciphertext uses it."""
        return self._primary

    @property
    def versions(self) -> tuple[int, ...]:
        """KEK versions present, ascending."""
        return self._versions

    @property
    def blind_index_bits(self) -> int:
        """Width of the index new rows get."""
        return self._indexers[0][1]

    @property
    def blind_index_versions(self) -> tuple[tuple[int, int], ...]:
        """(BIK version, bits) pairs in use: new rows first, then those still matched."""
        return tuple((v, bits) for v, bits, _ in self._indexers)

    def _kek(self, version: int) -> _Kek:
        kek = self._keks.get(version)
        if kek is None:
            # A destroyed (or never created) version looks like any other failure.
            raise DecryptionError()
        return kek

    # -- records ---------------------------------------------------------------

    def seal_record(self, kind: str, record_id: str, plaintext: bytes, *,
                    unit: _unit.UnitKey | None = None) -> bytes:
        """Encrypt plaintext bound to this tenant, kind and record_id; with `unit`, under
        that unit key (record format 2, erased when the unit key is deleted)."""
        kind_b = check_str(kind, "kind", _record.MAX_KIND_BYTES)
        id_b = check_str(record_id, "record_id", _record.MAX_RECORD_ID_BYTES)
        plaintext = as_bytes(plaintext, "plaintext")
        if len(plaintext) > _record.MAX_PLAINTEXT:
            raise ValueError(f"plaintext must be at most {_record.MAX_PLAINTEXT} bytes; store larger data as a blob")
        if unit is not None:
            if not isinstance(unit, _unit.UnitKey):
                raise TypeError(f"unit must be a UnitKey, not {type(unit).__name__}")
            return _unit.seal_with_unit(unit, self._tenant, kind_b, id_b, plaintext)
        version = self._primary
        return _record.seal(self._keks[version].records, self._tenant, kind_b, id_b, version, plaintext)

    def open_record(self, kind: str, record_id: str, sealed: bytes, *,
                    units: Mapping[tuple[uuid.UUID, uuid.UUID], _unit.UnitKey] | None = None
                    ) -> bytes:
        """Decrypt a sealed record; DecryptionError unless it was sealed by this tenant
        with this kind and record_id and is unmodified, under a version still present (a
        format-2 record: under its unit key, found in `units` by `keys.unit_ref`)."""
        kind_b = check_str(kind, "kind", _record.MAX_KIND_BYTES)
        id_b = check_str(record_id, "record_id", _record.MAX_RECORD_ID_BYTES)
        sealed = bytes(as_bytes(sealed, "sealed"))
        if sealed[:1] == bytes([_unit.RECORD_FORMAT]):
            return _unit.open_with_unit(units if units is not None else self._units,
                                        self._tenant, kind_b, id_b, sealed)
        kek = self._kek(_record.kek_version(sealed))
        return _record.open_(kek.records, self._tenant, kind_b, id_b, sealed)

    def reseal_record(self, kind: str, record_id: str, sealed: bytes) -> bytes:
        """Re-encrypt a sealed record under the primary version (rotation). A record
        already under the primary version is authenticated and returned unchanged, and so
        is a format-2 record (under its unit key, no KEK: rotation leaves it as it is)."""
        if bytes(sealed[:1]) == bytes([_unit.RECORD_FORMAT]):
            return bytes(sealed)
        plaintext = self.open_record(kind, record_id, sealed)
        if _record.kek_version(bytes(sealed)) == self._primary:
            return bytes(sealed)
        return self.seal_record(kind, record_id, plaintext)

    # -- blind index -----------------------------------------------------------

    def blind_index(self, e164: str) -> int:
        """HMAC-SHA256(BIK, UTF-8 e164) truncated to blind_index_bits.

        e164 must already be normalised: E.164 ("+14155550100", via phonenumbers) for a
        phone number, a canonical form for other party addresses (SIP URIs, client ids),
        since differently written forms of one number index differently.
        """
        party = check_str(e164, "e164", _blind.MAX_PARTY_BYTES)
        _, bits, bik = self._indexers[0]
        return _blind.blind_index(bik, party, bits)

    def blind_indexes(self, e164: str) -> tuple[int, ...]:
        """The party's index under every (BIK version, bits) pair in use, the one new rows
        get first, without repeats: a lookup matches rows under any of them, so a reindex
        under way never makes it miss."""
        party = check_str(e164, "e164", _blind.MAX_PARTY_BYTES)
        out: list[int] = []
        for _, bits, bik in self._indexers:
            index = _blind.blind_index(bik, party, bits)
            if index not in out:
                out.append(index)
        return tuple(out)

    # -- blobs -----------------------------------------------------------------

    def new_blob(
        self, object_id: uuid.UUID, *, segment_size_log2: int = DEFAULT_SEGMENT_SIZE_LOG2
    ) -> tuple[BlobWriter, bytes]:
        """A writer for a new blob under a fresh random DEK, and that DEK wrapped under the
        primary KEK version (store it in the key table, never beside the blob)."""
        check_uuid(object_id, "object_id")
        check_int(segment_size_log2, "segment_size_log2", MIN_SEGMENT_SIZE_LOG2, MAX_SEGMENT_SIZE_LOG2)
        version = self._primary
        dek = os.urandom(_dek.DEK_LEN)
        wrapped = _dek.wrap(self._keks[version].dek_wrap, self._tenant, object_id.bytes, version, segment_size_log2, dek)
        writer = BlobWriter._create(dek, self._tenant, object_id.bytes, version, segment_size_log2)
        return writer, wrapped

    def _unwrap_dek(self, object_id: uuid.UUID, wrapped_dek: object) -> tuple[bytes, bytes, int, int]:
        check_uuid(object_id, "object_id")
        wrapped_dek = bytes(as_bytes(wrapped_dek, "wrapped_dek"))
        version, segment_size_log2 = _dek.parse(wrapped_dek)
        if not MIN_SEGMENT_SIZE_LOG2 <= segment_size_log2 <= MAX_SEGMENT_SIZE_LOG2:
            raise DecryptionError()
        dek = _dek.unwrap(self._kek(version).dek_wrap, self._tenant, object_id.bytes, wrapped_dek)
        return wrapped_dek, dek, version, segment_size_log2

    def open_blob(self, object_id: uuid.UUID, wrapped_dek: bytes) -> BlobReader:
        """A reader for a blob; DecryptionError if wrapped_dek is not this tenant's DEK for
        object_id (or its KEK version was destroyed)."""
        _, dek, _, segment_size_log2 = self._unwrap_dek(object_id, wrapped_dek)
        return BlobReader._create(dek, self._tenant, object_id.bytes, segment_size_log2)

    def rewrap_dek(self, object_id: uuid.UUID, wrapped_dek: bytes) -> bytes:
        """The same DEK wrapped under the primary KEK version (rotation); the blob itself
        is untouched. A DEK already under the primary version is authenticated and
        returned unchanged."""
        wrapped_dek, dek, version, segment_size_log2 = self._unwrap_dek(object_id, wrapped_dek)
        if version == self._primary:
            return wrapped_dek
        primary = self._primary
        return _dek.wrap(self._keks[primary].dek_wrap, self._tenant, object_id.bytes, primary, segment_size_log2, dek)


# -- tenant root key rotation ----------------------------------------------------------------
def rewrap_tenant_keys(old: RootKeyProvider, new: RootKeyProvider, tenant_id: uuid.UUID,
                       wrapped: Iterable[WrappedKey]) -> list[WrappedKey]:
    """The rows not yet under `new`, each unwrapped under `old` and wrapped under `new`
    (same kind, version and key). Rows already under `new` are left out, so a re-run after
    a crash rewrites only what is left. DecryptionError if a row opens under neither."""
    _check_root(old)
    _check_root(new)
    check_uuid(tenant_id, "tenant_id")
    out = []
    for row in wrapped:
        if not isinstance(row, WrappedKey):
            raise TypeError(f"wrapped must contain WrappedKey items, not {type(row).__name__}")
        aad = _aad(tenant_id, row.kind, row.version)
        try:
            new.unwrap(row.wrapped, aad)
            continue
        except DecryptionError:
            pass
        key = old.unwrap(row.wrapped, aad)
        if len(key) != _KEY_LEN:
            raise DecryptionError()
        out.append(WrappedKey(row.kind, row.version, new.wrap(key, aad)))
    return out


def rewrap_unit_segment(old: RootKeyProvider, new: RootKeyProvider, tenant_id: uuid.UUID,
                        segment_id: uuid.UUID, data: bytes) -> bytes | None:
    """A unit-key segment's bytes re-encoded under `new` (same entries, fresh segment key
    and nonce), or None if it already opens under `new`. DecryptionError if it opens under
    neither."""
    _check_root(old)
    _check_root(new)
    check_uuid(tenant_id, "tenant_id")
    check_uuid(segment_id, "segment_id")
    try:
        _unit.decode_segment(new, tenant_id, segment_id, data)
        return None
    except DecryptionError:
        pass
    entries = _unit.decode_segment(old, tenant_id, segment_id, data)
    return entries.encode(new, tenant_id)
