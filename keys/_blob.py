"""Streaming AEAD for call audio (blobs), in the spirit of Tink's AES-GCM-HKDF streaming
with the AWS Encryption SDK's key commitment.

Header (version 1, big-endian, 114 bytes)::

    offset size  field
         0    4  magic "VGWB"
         4    1  format version (1)
         5    1  algorithm id (1 = AES-256-GCM, HKDF-SHA256, 32-byte commitment)
         6    1  log2 plaintext segment size (12..24; 16 by default)
         7   16  tenant id
        23   16  object id
        39    4  KEK version at creation (uint32)
        43   32  salt
        75    7  nonce prefix
        82   32  commitment

    PRK         = HKDF-Extract(salt, DEK)
    segment key = HKDF-Expand(PRK, "vgw/v1/blob-segment-key" | header[0:82], 32)
    commitment  = HKDF-Expand(PRK, "vgw/v1/blob-commitment"  | header[0:82], 32)

Segment i (0-based) holds plaintext bytes [i*S, (i+1)*S), S = 2**log2, and starts at
byte 114 + i*(S + 16); every segment but the last holds exactly S bytes, the last holds
1..S bytes (0 only for an empty blob). Each is AES-256-GCM under the segment key with

    nonce = nonce prefix (7) | uint32 BE i | last flag (0x00, or 0x01 for the last segment)

and no AAD (the header is bound through the key). Since i and the last flag are in the
nonce, reordering, truncating at a segment boundary and appending fail to authenticate.
The commitment binds the ciphertext to one DEK (no key-confusion / invisible-salamander
ciphertexts) and is checked, with tenant and object id, in constant time before any
segment is decrypted.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._checks import as_bytes, check_int
from ._errors import DecryptionError
from ._hkdf import expand32, extract

__all__ = [
    "BlobWriter",
    "BlobReader",
    "HEADER_LEN",
    "MIN_SEGMENT_SIZE_LOG2",
    "MAX_SEGMENT_SIZE_LOG2",
    "DEFAULT_SEGMENT_SIZE_LOG2",
    "MAX_SEGMENTS",
]

MAGIC = b"VGWB"
FORMAT = 1
ALG_AES256GCM_HKDF_SHA256_COMMIT = 1

# 64 KiB segments, between Tink's streaming templates (4 KiB and 1 MiB segments) and above
# the AWS Encryption SDK's 4 KiB default frame: large enough that the 16-byte tag and the
# per-call overhead vanish against AES-GCM's own cost, small enough that a byte-range read
# decrypts little it does not return.
DEFAULT_SEGMENT_SIZE_LOG2 = 16
# 4 KiB (tests, tiny blobs) to 16 MiB; a segment is one AES-GCM message, far below
# its 2**36 - 32 byte limit (NIST SP 800-38D section 5.2.1.1).
MIN_SEGMENT_SIZE_LOG2 = 12
MAX_SEGMENT_SIZE_LOG2 = 24
# The segment number is a uint32 inside the nonce; a 2**32nd segment would repeat a nonce.
MAX_SEGMENTS = 2**32

_TAG_LEN = 16
_SALT_LEN = 32
_PREFIX_LEN = 7
_COMMIT_LEN = 32
_HEADER = struct.Struct(">4sBBB16s16sI32s7s")
_BOUND_LEN = 4 + 1 + 1 + 1 + 16 + 16  # magic .. object id: fields the reader knows in advance
HEADER_LEN = _HEADER.size + _COMMIT_LEN

_KEY_LABEL = b"vgw/v1/blob-segment-key"
_COMMIT_LABEL = b"vgw/v1/blob-commitment"

_COUNTER = struct.Struct(">IB")


def _derive(dek: bytes, header_body: bytes) -> tuple[bytes, bytes]:
    """(segment key, commitment) for a header without its commitment."""
    salt = header_body[43:75]
    prk = extract(salt, dek)
    return expand32(prk, _KEY_LABEL + header_body), expand32(prk, _COMMIT_LABEL + header_body)


def segment_count(plaintext_length: int, segment_size_log2: int) -> int:
    """Number of segments for a plaintext: an empty blob still has one (empty) last segment."""
    return max(1, -(-plaintext_length >> segment_size_log2))


class BlobWriter:
    """Streaming encryptor: feed ``update`` any chunking, then ``finalize`` once.

    A segment is known not to be the last only once more data arrives, so the writer
    keeps one segment back. It keeps it back encrypted: a full segment is encrypted at
    once as "not last" (straight from the caller's buffer, no copy) and released when
    more data arrives; if finalize() comes first, that one segment is decrypted and
    re-encrypted under its "last" nonce. The two nonces differ in the flag byte, so no
    nonce is ever used twice, and the speculative ciphertext is never released. Only a
    partial segment is copied, into a fixed bytearray: memory is one segment plus one
    ciphertext segment, whatever the blob size.
    """

    __slots__ = (
        "_aead", "_prefix", "_size", "_buffer", "_view", "_fill", "_held", "_index",
        "_pending_header", "_length", "_done",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use TenantKeys.new_blob(object_id) to create a BlobWriter")

    @classmethod
    def _create(
        cls, dek: bytes, tenant: bytes, object_id: bytes, kek_version: int, segment_size_log2: int
    ) -> BlobWriter:
        rand = os.urandom(_SALT_LEN + _PREFIX_LEN)
        body = _HEADER.pack(
            MAGIC, FORMAT, ALG_AES256GCM_HKDF_SHA256_COMMIT, segment_size_log2,
            tenant, object_id, kek_version, rand[:_SALT_LEN], rand[_SALT_LEN:],
        )
        key, commitment = _derive(dek, body)
        self = object.__new__(cls)
        self._aead = AESGCM(key)
        self._prefix = rand[_SALT_LEN:]
        self._size = 1 << segment_size_log2
        self._buffer = bytearray(self._size)
        self._view = memoryview(self._buffer)
        self._fill = 0  # plaintext bytes waiting in _buffer (always < a full segment)
        self._held = None  # ciphertext of the newest full segment, encrypted as not last
        self._index = 0  # number of the next segment to encrypt
        self._pending_header = body + commitment
        self._length = 0
        self._done = False
        return self

    def __repr__(self) -> str:
        return f"<BlobWriter plaintext_length={self._length} finalized={self._done}>"

    @property
    def plaintext_length(self) -> int:
        """Plaintext bytes passed to update() so far; store it with the blob's metadata."""
        return self._length

    def _encrypt(self, data, last: bool) -> bytes:
        index = self._index
        ciphertext = self._aead.encrypt(self._prefix + _COUNTER.pack(index, last), data, None)
        self._index = index + 1
        return ciphertext

    def _full_segment(self, data, more: bool, out: list) -> None:
        if not more:
            self._held = self._encrypt(data, False)
            return
        # Not last, so a last segment must still fit below MAX_SEGMENTS.
        if self._index >= MAX_SEGMENTS - 1:
            raise ValueError(f"blob exceeds {MAX_SEGMENTS} segments")
        out.append(self._encrypt(data, False))

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt more plaintext; return ciphertext to append to the file (the header
        comes first, with the first call). May return b"" while a segment fills."""
        if self._done:
            raise ValueError("BlobWriter.update() called after finalize()")
        data = as_bytes(data, "data")
        n = len(data)
        if not n:
            return b""
        held = self._held
        if n == self._size and held is not None and self._pending_header is None:
            # Fast path for segment-sized writes (the common case): release the held
            # segment, hold this one. Same steps as the loop below, fewer Python calls.
            if self._index - 1 >= MAX_SEGMENTS - 1:
                raise ValueError(f"blob exceeds {MAX_SEGMENTS} segments")
            self._length += n
            self._held = self._encrypt(data, False)
            return held
        view = memoryview(data)
        self._length += n
        out = []
        if self._pending_header is not None:
            out.append(self._pending_header)
            self._pending_header = None
        if self._held is not None:
            # More data has arrived: the held segment is not the last one.
            if self._index - 1 >= MAX_SEGMENTS - 1:
                raise ValueError(f"blob exceeds {MAX_SEGMENTS} segments")
            out.append(self._held)
            self._held = None
        size = self._size
        pos = 0
        while pos < n:
            if self._fill == 0 and n - pos >= size:
                pos += size
                self._full_segment(view[pos - size : pos], pos < n, out)
                continue
            take = min(size - self._fill, n - pos)
            self._view[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == size:
                self._fill = 0
                self._full_segment(self._view, pos < n, out)
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def finalize(self) -> bytes:
        """Encrypt the held-back data as the last segment (flag set) and return it, with
        the header if update() was never called. An empty blob is a header and one
        empty last segment."""
        if self._done:
            raise ValueError("BlobWriter.finalize() called twice")
        self._done = True
        if self._held is not None:
            index = self._index - 1
            plaintext = self._aead.decrypt(self._prefix + _COUNTER.pack(index, False), self._held, None)
            last = self._aead.encrypt(self._prefix + _COUNTER.pack(index, True), plaintext, None)
            self._held = None
        else:
            last = self._encrypt(self._view[: self._fill], True)
            self._fill = 0
        header = self._pending_header
        self._pending_header = None
        return last if header is None else header + last


class BlobReader:
    """Decrypts byte ranges of one blob, reading only the segments a range covers."""

    __slots__ = ("_dek", "_bound", "_log2")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use TenantKeys.open_blob(object_id, wrapped_dek) to create a BlobReader")

    @classmethod
    def _create(cls, dek: bytes, tenant: bytes, object_id: bytes, segment_size_log2: int) -> BlobReader:
        self = object.__new__(cls)
        self._dek = dek
        self._log2 = segment_size_log2
        self._bound = MAGIC + bytes([FORMAT, ALG_AES256GCM_HKDF_SHA256_COMMIT, segment_size_log2]) + tenant + object_id
        return self

    def __repr__(self) -> str:
        return f"<BlobReader segment_size={1 << self._log2}>"

    @property
    def header_length(self) -> int:
        return HEADER_LEN

    @property
    def segment_size(self) -> int:
        return 1 << self._log2

    def ciphertext_length(self, plaintext_length: int) -> int:
        """Size of the blob file for a plaintext of this length."""
        # At most MAX_SEGMENTS full segments: the segment number is a uint32 in the nonce.
        check_int(plaintext_length, "plaintext_length", 0, MAX_SEGMENTS << self._log2)
        count = segment_count(plaintext_length, self._log2)
        return HEADER_LEN + plaintext_length + count * _TAG_LEN

    def read_range(
        self, fileobj: BinaryIO, plaintext_length: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Yield the plaintext bytes [start, end) (end exclusive, None = to the end).

        ``plaintext_length`` is the true length stored with the blob's metadata. The
        header and the file size are checked here, before anything is decrypted; each
        covered segment is then read, authenticated and yielded (trimmed to the range)
        one at a time. Any failure raises DecryptionError, and a segment that fails is
        never yielded.
        """
        expected_size = self.ciphertext_length(plaintext_length)
        if end is None:
            end = plaintext_length
        check_int(start, "start", 0, plaintext_length)
        check_int(end, "end", start, plaintext_length)

        # I/O errors propagate as themselves: a failing disk is not a forgery.
        fileobj.seek(0)
        header = _read_exact(fileobj, HEADER_LEN)
        actual_size = fileobj.seek(0, os.SEEK_END)
        if len(header) != HEADER_LEN:
            raise DecryptionError()
        body = header[: _HEADER.size]
        key, commitment = _derive(self._dek, body)
        # Evaluate both comparisons (no short circuit) so timing does not say which failed.
        ok = hmac.compare_digest(body[:_BOUND_LEN], self._bound)
        ok &= hmac.compare_digest(header[_HEADER.size :], commitment)
        # The true length fixes the file size: anything else is truncation or extension.
        if not ok or actual_size != expected_size:
            raise DecryptionError()

        log2 = self._log2
        count = segment_count(plaintext_length, log2)
        if plaintext_length == 0:
            # The single empty last segment: authenticate it so a truncated empty blob fails.
            first, last = 0, 0
        elif start == end:
            return iter(())
        else:
            first, last = start >> log2, (end - 1) >> log2
        return _segments(
            fileobj, AESGCM(key), body[75:82], log2, count, plaintext_length, first, last, start, end
        )


    def reseal_truncated(self, fileobj: BinaryIO, durable_length: int) -> tuple[int, bytes, int] | None:
        """Turn the durable part of a blob whose writer never called finalize() (a crashed
        live stream) into a valid shorter blob.

        ``durable_length`` is how many leading bytes of the file are known durable (its
        writer fsync'd them). The whole segments among them are kept, and the last kept one
        is re-encrypted under its "last" nonce. Returns ``(keep, tail, plaintext_length)``:
        truncate the file to ``keep`` bytes and append ``tail``. None when no whole segment
        is durable (nothing to keep). DecryptionError if the header or that segment fails.

        Nonce safety: BlobWriter uses segment i's "last" nonce only inside finalize(), and
        only for a segment it never released as "not last"; the segments counted here were
        all released as "not last", so their "last" nonces are unused. Running this twice
        re-encrypts the same plaintext under the same nonce: the same bytes, nothing leaked.
        """
        check_int(durable_length, "durable_length", 0, 2**63 - 1)
        size = 1 << self._log2
        whole = (durable_length - HEADER_LEN) // (size + _TAG_LEN) if durable_length > HEADER_LEN else 0
        if whole == 0:
            return None
        fileobj.seek(0)
        header = _read_exact(fileobj, HEADER_LEN)
        if len(header) != HEADER_LEN:
            raise DecryptionError()
        body = header[: _HEADER.size]
        key, commitment = _derive(self._dek, body)
        ok = hmac.compare_digest(body[:_BOUND_LEN], self._bound)
        ok &= hmac.compare_digest(header[_HEADER.size :], commitment)
        if not ok:
            raise DecryptionError()
        aead = AESGCM(key)
        prefix = body[75:82]
        index = whole - 1
        offset = HEADER_LEN + index * (size + _TAG_LEN)
        fileobj.seek(offset)
        data = _read_exact(fileobj, size + _TAG_LEN)
        if len(data) != size + _TAG_LEN:
            raise DecryptionError()
        try:
            plaintext = aead.decrypt(prefix + _COUNTER.pack(index, False), data, None)
        except InvalidTag:
            raise DecryptionError() from None
        return offset, aead.encrypt(prefix + _COUNTER.pack(index, True), plaintext, None), whole * size


def _read_exact(fileobj: BinaryIO, n: int) -> bytes:
    data = fileobj.read(n)
    if data is None:
        data = b""
    while len(data) < n:
        more = fileobj.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _segments(
    fileobj: BinaryIO, aead: AESGCM, prefix: bytes, log2: int, count: int,
    plaintext_length: int, first: int, last: int, start: int, end: int,
) -> Iterator[bytes]:
    size = 1 << log2
    fileobj.seek(HEADER_LEN + first * (size + _TAG_LEN))
    for i in range(first, last + 1):
        seg_start = i << log2
        is_last = i == count - 1
        ct_len = (plaintext_length - seg_start if is_last else size) + _TAG_LEN
        data = _read_exact(fileobj, ct_len)
        if len(data) != ct_len:
            raise DecryptionError()
        try:
            plaintext = aead.decrypt(prefix + _COUNTER.pack(i, is_last), data, None)
        except InvalidTag:
            raise DecryptionError() from None
        lo = start - seg_start if start > seg_start else 0
        hi = end - seg_start if end - seg_start < len(plaintext) else len(plaintext)
        if lo == 0 and hi == len(plaintext):
            if plaintext:
                yield plaintext
        elif hi > lo:
            yield plaintext[lo:hi]
