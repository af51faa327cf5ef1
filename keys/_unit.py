"""Unit keys: one random key per erasable unit (a call's parties, each event, ...), kept in
the key store in segments, never in the database. Records sealed under a unit key (record
format 2) open only while that key exists, so deleting it erases every copy of the record,
database backups included.

Segment object (version 1), one per batch of new keys, rewritten without an entry when
that entry's unit is erased::

    "VGWK" | 0x01 | tenant id (16) | segment id (16) | len(wrapped) (uint16 BE)
           | wrapped segment key (the tenant wrapping key's wrap, AAD below)
           | nonce (12) | AES-256-GCM(segment key, entries, AAD = every byte before the nonce)
    wrap AAD = "unit-segment|" | tenant id (16) | segment id (16)
    entries  = count (uint32 BE) | count x (entry id (16) | unit key (32))

Every rewrite draws a fresh segment key and nonce, so a (key, nonce) pair never repeats
and an old copy of a segment opens only with its own wrapped key (which a key-store
backup would carry: key-store backup retention bounds erasure, docs/retention-and-dsr.md).

Record format 2 (keys/_record.py has format 1)::

    0x02 | segment id (16) | entry id (16) | salt (16) | nonce (12) | ciphertext + tag (16)
    info = 0x02 | tenant id (16) | len(kind) (uint16 BE) | kind | len(record id) (uint16 BE)
                | record id | segment id (16) | entry id (16)
    record key = HKDF-SHA256(IKM = unit key, salt, info, L = 32);  AAD = info

A format-2 record does not depend on any KEK version: KEK rotation leaves it as it is, and
the tenant wrapping key (tenant root key) protects the segments instead.

A recording's unit key is its blob's data key (DEK) itself; the database keeps only the
blob key reference (not secret: it says where the key lives and the blob's geometry)::

    0x02 | segment id (16) | entry id (16) | log2 segment size (1)          (34 bytes)

The same unit key also seals the recording's metadata as a format-2 record. The two uses
stay apart by HKDF: the blob derives HKDF-Extract(blob salt, key) then expands with
"vgw/v1/blob-..." labels, a record HKDF(key, record salt, info starting 0x02); no info
string of one is an info string of the other. A recording stored before (a wrapped DEK in
the database's `blob_keys`) moves into a segment with its DEK as the unit key
(`adopt_wrapped_dek`), so its blob needs no re-encryption.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _random
from ._blob import (
    DEFAULT_SEGMENT_SIZE_LOG2,
    MAX_SEGMENT_SIZE_LOG2,
    MIN_SEGMENT_SIZE_LOG2,
    BlobReader,
    BlobWriter,
)
from ._checks import check_int, check_uuid
from ._errors import DecryptionError
from ._hkdf import derive32
from ._root import RootKeyProvider

__all__ = ["UnitKey", "SegmentEntries", "new_unit_key", "new_unit_keys", "encode_segment",
           "decode_segment", "unit_ref", "seal_with_unit", "open_with_unit", "RECORD_FORMAT", "MAX_SEGMENT_ENTRIES",
           "new_unit_blob", "open_unit_blob", "adopt_wrapped_dek", "BLOB_KEY_REF_LEN"]

RECORD_FORMAT = 2
_FORMAT_BYTE = bytes([RECORD_FORMAT])
_MAGIC = b"VGWK"
_SEGMENT_VERSION = 1
_KEY_LEN = 32
_ID_LEN = 16
_NONCE_LEN = 12
_SALT_LEN = 16
_TAG_LEN = 16
_ENTRY_LEN = _ID_LEN + _KEY_LEN
_RECORD_HEADER = 1 + 2 * _ID_LEN + _SALT_LEN + _NONCE_LEN
BLOB_KEY_REF_LEN = 1 + 2 * _ID_LEN + 1
# The blob header's "KEK version at creation" field for a blob under a unit key (no KEK).
_NO_KEK_VERSION = 0
# 48 bytes an entry: 16384 entries keep a segment near 768 KiB, under the key store's
# 1 MiB object bound (gateway/store/keystore.MAX_OBJECT_BYTES).
MAX_SEGMENT_ENTRIES = 16384
# SegmentEntries: lookups by searching the bytes before an index is worth building.
_SEARCHES_BEFORE_INDEX = 8


class UnitKey:
    """One unit's key and where it lives (segment id, entry id); the key is never exposed."""

    __slots__ = ("segment_id", "entry_id", "_key", "_ref")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use keys.new_unit_key(segment_id) or keys.decode_segment(...)")

    @classmethod
    def _create(cls, segment_id: uuid.UUID, entry_id: uuid.UUID, key: bytes,
                segment_bytes: bytes | None = None) -> UnitKey:
        self = object.__new__(cls)
        self.segment_id = segment_id
        self.entry_id = entry_id
        self._key = key
        # segment id | entry id as bytes: every record sealed under the key carries them.
        self._ref = (segment_bytes or segment_id.bytes) + entry_id.bytes
        return self

    @property
    def ref(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.segment_id, self.entry_id

    def __repr__(self) -> str:
        return f"<UnitKey segment={self.segment_id} entry={self.entry_id}>"


def new_unit_key(segment_id: uuid.UUID) -> UnitKey:
    return new_unit_keys(segment_id, 1)[0]


def new_unit_keys(segment_id: uuid.UUID, count: int) -> list[UnitKey]:
    """`count` new unit keys of one segment, each with a random (version 4) entry id.

    Two `os.urandom` calls for all of them (entry ids, then keys): a segment is written
    with hundreds of keys at once, and two calls per key were most of the cost of making
    them on the event loop (issue 12)."""
    check_int(count, "count", 0, MAX_SEGMENT_ENTRIES)
    entry_ids = os.urandom(count * _ID_LEN)
    material = os.urandom(count * _KEY_LEN)
    segment_bytes = segment_id.bytes
    return [UnitKey._create(segment_id,
                            uuid.UUID(bytes=entry_ids[i * _ID_LEN:(i + 1) * _ID_LEN], version=4),
                            material[i * _KEY_LEN:(i + 1) * _KEY_LEN], segment_bytes)
            for i in range(count)]


def _wrap_aad(tenant_id: uuid.UUID, segment_id: uuid.UUID) -> bytes:
    return b"unit-segment|" + tenant_id.bytes + segment_id.bytes


def encode_segment(wrapping: RootKeyProvider, tenant_id: uuid.UUID, segment_id: uuid.UUID,
                   units: Iterable[UnitKey]) -> bytes:
    """A segment object holding `units` (all of this segment), under a fresh segment key."""
    units = list(units)
    if len(units) > MAX_SEGMENT_ENTRIES:
        raise ValueError(f"a segment holds at most {MAX_SEGMENT_ENTRIES} keys")
    return _seal_segment(wrapping, tenant_id, segment_id, struct.pack(">I", len(units))
                         + b"".join(u.entry_id.bytes + u._key for u in units))


def _seal_segment(wrapping: RootKeyProvider, tenant_id: uuid.UUID, segment_id: uuid.UUID,
                  body: bytes) -> bytes:
    segment_key = os.urandom(_KEY_LEN)
    wrapped = wrapping.wrap(segment_key, _wrap_aad(tenant_id, segment_id))
    header = (_MAGIC + bytes([_SEGMENT_VERSION]) + tenant_id.bytes + segment_id.bytes
              + struct.pack(">H", len(wrapped)) + wrapped)
    nonce = os.urandom(_NONCE_LEN)
    return header + nonce + AESGCM(segment_key).encrypt(nonce, body, header)


def decode_segment(wrapping: RootKeyProvider, tenant_id: uuid.UUID, segment_id: uuid.UUID,
                   data: bytes) -> SegmentEntries:
    """entry id -> UnitKey (a read-only mapping); DecryptionError if the object is not this tenant's segment."""
    data = bytes(data)
    fixed = len(_MAGIC) + 1 + 2 * _ID_LEN
    if len(data) < fixed + 2 or data[:len(_MAGIC)] != _MAGIC or data[4] != _SEGMENT_VERSION \
            or data[5:5 + _ID_LEN] != tenant_id.bytes \
            or data[5 + _ID_LEN:fixed] != segment_id.bytes:
        raise DecryptionError()
    (wrapped_len,) = struct.unpack_from(">H", data, fixed)
    header_end = fixed + 2 + wrapped_len
    if len(data) < header_end + _NONCE_LEN + _TAG_LEN:
        raise DecryptionError()
    segment_key = wrapping.unwrap(data[fixed + 2:header_end], _wrap_aad(tenant_id, segment_id))
    if len(segment_key) != _KEY_LEN:
        raise DecryptionError()
    try:
        body = AESGCM(segment_key).decrypt(data[header_end:header_end + _NONCE_LEN],
                                           data[header_end + _NONCE_LEN:], data[:header_end])
    except InvalidTag:
        raise DecryptionError() from None
    (count,) = struct.unpack_from(">I", body)
    if len(body) != 4 + count * _ENTRY_LEN:
        raise DecryptionError()
    return SegmentEntries._create(segment_id, body)


class SegmentEntries(Mapping[uuid.UUID, UnitKey]):
    """A decoded segment: entry id -> UnitKey, read-only, over the decrypted entries as
    they are. The first few lookups search the bytes (C speed) and only a segment looked
    up often gets an index; a UnitKey is made only when asked for. (A segment holds up to
    16384 entries and an erasure or a read touches a few: a uuid.UUID and a UnitKey per
    entry were most of an erasure's decoding time.)"""

    __slots__ = ("segment_id", "_body", "_at", "_searches")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use keys.decode_segment(...)")

    @classmethod
    def _create(cls, segment_id: uuid.UUID, body: bytes) -> SegmentEntries:
        self = object.__new__(cls)
        self.segment_id = segment_id
        self._body = body
        self._at: dict[bytes, int] | None = None
        self._searches = 0
        return self

    def _offset(self, entry: bytes) -> int | None:
        if self._at is None:
            self._searches += 1
            if self._searches <= _SEARCHES_BEFORE_INDEX:
                return self._search(entry)
            body = self._body
            self._at = {body[at:at + _ID_LEN]: at for at in range(4, len(body), _ENTRY_LEN)}
        return self._at.get(entry)

    def _search(self, entry: bytes) -> int | None:
        body = self._body
        at = body.find(entry, 4)
        while at != -1:
            if (at - 4) % _ENTRY_LEN == 0:
                return at
            at = body.find(entry, at + 1)    # inside another entry's bytes: go on
        return None

    def __getitem__(self, entry_id: uuid.UUID) -> UnitKey:
        unit = self.get(entry_id)
        if unit is None:
            raise KeyError(entry_id)
        return unit

    def get(self, entry_id: uuid.UUID, default: UnitKey | None = None  # type: ignore[override]
            ) -> UnitKey | None:
        at = self._offset(entry_id.bytes)
        if at is None:
            return default
        return UnitKey._create(self.segment_id, entry_id,
                               self._body[at + _ID_LEN:at + _ENTRY_LEN])

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, uuid.UUID) and self._offset(entry_id.bytes) is not None

    def __iter__(self) -> Iterator[uuid.UUID]:
        body = self._body
        return (uuid.UUID(bytes=body[at:at + _ID_LEN])
                for at in range(4, len(body), _ENTRY_LEN))

    def __len__(self) -> int:
        return (len(self._body) - 4) // _ENTRY_LEN

    def without(self, entry_ids: Iterable[uuid.UUID]) -> SegmentEntries:
        """The same segment less these entries (those it does not hold are ignored)."""
        body = self._body
        cuts = sorted({at for e in entry_ids for at in [self._search(e.bytes)]
                       if at is not None})
        parts, start = [], 4
        for at in cuts:
            parts.append(body[start:at])
            start = at + _ENTRY_LEN
        parts.append(body[start:])
        return SegmentEntries._create(self.segment_id, struct.pack(
            ">I", len(self) - len(cuts)) + b"".join(parts))

    def encode(self, wrapping: RootKeyProvider, tenant_id: uuid.UUID) -> bytes:
        """This segment as a key-store object under a fresh segment key (encode_segment's
        format, without making a UnitKey per entry)."""
        return _seal_segment(wrapping, tenant_id, self.segment_id, self._body)


def unit_ref(sealed: bytes) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(segment id, entry id) of a format-2 record or of a blob key reference; None for
    any other format."""
    if sealed[:1] != bytes([RECORD_FORMAT]) or (
            len(sealed) != BLOB_KEY_REF_LEN and len(sealed) < _RECORD_HEADER + _TAG_LEN):
        return None
    return (uuid.UUID(bytes=bytes(sealed[1:1 + _ID_LEN])),
            uuid.UUID(bytes=bytes(sealed[1 + _ID_LEN:1 + 2 * _ID_LEN])))


def _info(tenant: bytes, kind: bytes, record_id: bytes, unit: UnitKey) -> bytes:
    return b"".join((_FORMAT_BYTE, tenant, len(kind).to_bytes(2, "big"), kind,
                     len(record_id).to_bytes(2, "big"), record_id, unit._ref))


def seal_with_unit(unit: UnitKey, tenant: bytes, kind: bytes, record_id: bytes,
                   plaintext: bytes) -> bytes:
    info = _info(tenant, kind, record_id, unit)
    rand = _random.public_random_bytes(_SALT_LEN + _NONCE_LEN)
    key = derive32(unit._key, rand[:_SALT_LEN], info)
    return (_FORMAT_BYTE + unit._ref + rand
            + AESGCM(key).encrypt(rand[_SALT_LEN:], plaintext, info))


def open_with_unit(units: Mapping[tuple[uuid.UUID, uuid.UUID], UnitKey] | None,
                   tenant: bytes, kind: bytes, record_id: bytes, sealed: bytes) -> bytes:
    ref = unit_ref(sealed)
    unit = units.get(ref) if units is not None and ref is not None else None
    if unit is None:
        # An erased unit's key is gone: the same failure as any other.
        raise DecryptionError()
    info = _info(tenant, kind, record_id, unit)
    salt_at = 1 + 2 * _ID_LEN
    key = derive32(unit._key, sealed[salt_at:salt_at + _SALT_LEN], info)
    try:
        return AESGCM(key).decrypt(sealed[salt_at + _SALT_LEN:_RECORD_HEADER],
                                   sealed[_RECORD_HEADER:], info)
    except InvalidTag:
        raise DecryptionError() from None


# -- blobs under a unit key (recordings) -------------------------------------------------------
def _blob_key_ref(unit: UnitKey, segment_size_log2: int) -> bytes:
    return (_FORMAT_BYTE + unit._ref
            + bytes([segment_size_log2]))


def new_unit_blob(unit: UnitKey, tenant_id: uuid.UUID, object_id: uuid.UUID, *,
                  segment_size_log2: int = DEFAULT_SEGMENT_SIZE_LOG2) -> tuple[BlobWriter, bytes]:
    """A writer for a new blob whose data key is `unit`'s key, and the blob key reference
    to store with the blob's row (not secret; the key stays in the key store)."""
    if not isinstance(unit, UnitKey):
        raise TypeError(f"unit must be a UnitKey, not {type(unit).__name__}")
    check_uuid(tenant_id, "tenant_id")
    check_uuid(object_id, "object_id")
    check_int(segment_size_log2, "segment_size_log2", MIN_SEGMENT_SIZE_LOG2, MAX_SEGMENT_SIZE_LOG2)
    writer = BlobWriter._create(unit._key, tenant_id.bytes, object_id.bytes, _NO_KEK_VERSION,
                                segment_size_log2)
    return writer, _blob_key_ref(unit, segment_size_log2)


def open_unit_blob(units: Mapping[tuple[uuid.UUID, uuid.UUID], UnitKey] | None,
                   tenant_id: uuid.UUID, object_id: uuid.UUID, key_ref: bytes) -> BlobReader:
    """A reader for a blob under a unit key; DecryptionError if the key is not in `units`
    (erased) or the reference is malformed. A blob under another key, object or tenant
    fails when the reader checks the header's commitment and ids."""
    check_uuid(tenant_id, "tenant_id")
    check_uuid(object_id, "object_id")
    key_ref = bytes(key_ref)
    ref = unit_ref(key_ref) if len(key_ref) == BLOB_KEY_REF_LEN else None
    unit = units.get(ref) if units is not None and ref is not None else None
    log2 = key_ref[-1]
    if unit is None or not MIN_SEGMENT_SIZE_LOG2 <= log2 <= MAX_SEGMENT_SIZE_LOG2:
        raise DecryptionError()
    return BlobReader._create(unit._key, tenant_id.bytes, object_id.bytes, log2)


def adopt_wrapped_dek(ring: object, segment_id: uuid.UUID, object_id: uuid.UUID,
                      wrapped_dek: bytes) -> tuple[UnitKey, bytes]:
    """Moving a recording stored before unit keys into the key store: a unit key (entry of
    `segment_id`) whose key is the DEK `wrapped_dek` wraps under the tenant's ring
    (keys.TenantKeys), and the blob key reference for it. The blob stays as it is.
    DecryptionError if the DEK does not open (wrong object, destroyed KEK version)."""
    check_uuid(segment_id, "segment_id")
    _, dek, _, segment_size_log2 = ring._unwrap_dek(object_id, wrapped_dek)  # type: ignore[attr-defined]
    unit = UnitKey._create(segment_id, uuid.uuid4(), dek)
    return unit, _blob_key_ref(unit, segment_size_log2)
