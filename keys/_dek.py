"""Wrapped data keys: one random 256-bit DEK per blob, wrapped under a KEK's dek-wrap
subkey and stored in the gateway's key table, never inside the blob. Deleting the row
crypto-shreds the blob.

Layout (version 1)::

    0x01 | KEK version (uint32 BE) | log2 segment size (1) | nonce (12) | ciphertext (32) + tag (16)

    AAD = "dek" | 0x01 | tenant id (16) | object id (16) | KEK version (uint32 BE) | log2 segment size

All AAD fields are fixed width, so the concatenation is unambiguous. The blob's segment
size rides along (authenticated) so a reader knows the ciphertext geometry before it reads
the blob header, and the header must then agree with it.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import DecryptionError

__all__ = ["FORMAT", "DEK_LEN", "WRAPPED_LEN", "wrap", "parse", "unwrap"]

FORMAT = 1
DEK_LEN = 32
_NONCE_LEN = 12
_TAG_LEN = 16
_PREFIX = struct.Struct(">BIB")  # format, KEK version, log2 segment size
WRAPPED_LEN = _PREFIX.size + _NONCE_LEN + DEK_LEN + _TAG_LEN


def _aad(tenant: bytes, object_id: bytes, kek_version: int, segment_size_log2: int) -> bytes:
    return b"dek" + bytes([FORMAT]) + tenant + object_id + struct.pack(">IB", kek_version, segment_size_log2)


def wrap(
    wrap_key: AESGCM, tenant: bytes, object_id: bytes, kek_version: int, segment_size_log2: int, dek: bytes
) -> bytes:
    # Random 96-bit nonces under one dek-wrap subkey: one wrap per blob, and NIST SP
    # 800-38D section 8.3 allows 2**32 of them per key; rotation resets the count.
    nonce = os.urandom(_NONCE_LEN)
    aad = _aad(tenant, object_id, kek_version, segment_size_log2)
    return _PREFIX.pack(FORMAT, kek_version, segment_size_log2) + nonce + wrap_key.encrypt(nonce, dek, aad)


def parse(wrapped: bytes) -> tuple[int, int]:
    """(KEK version, log2 segment size), unauthenticated; DecryptionError if malformed."""
    if len(wrapped) != WRAPPED_LEN or wrapped[0] != FORMAT:
        raise DecryptionError()
    _, version, segment_size_log2 = _PREFIX.unpack_from(wrapped)
    return version, segment_size_log2


def unwrap(wrap_key: AESGCM, tenant: bytes, object_id: bytes, wrapped: bytes) -> bytes:
    version, segment_size_log2 = parse(wrapped)
    aad = _aad(tenant, object_id, version, segment_size_log2)
    try:
        return wrap_key.decrypt(
            wrapped[_PREFIX.size : _PREFIX.size + _NONCE_LEN], wrapped[_PREFIX.size + _NONCE_LEN :], aad
        )
    except InvalidTag:
        raise DecryptionError() from None
