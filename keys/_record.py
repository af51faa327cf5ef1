"""Sealed records: small values (call metadata fields) encrypted under a per-record key.

Layout (version 1)::

    0x01 | KEK version (uint32 BE) | salt (16) | nonce (12) | AES-256-GCM ciphertext + tag (16)

    info = 0x01 | tenant id (16) | len(kind) (uint16 BE) | kind (UTF-8)
                | len(record id) (uint16 BE) | record id (UTF-8) | KEK version (uint32 BE)
    record key = HKDF-SHA256(IKM = KEK records subkey, salt, info, L = 32)
    AAD = info

Every variable-length part is length-prefixed, so no two (kind, record id) pairs give the
same info: ("a|b", "c") and ("a", "b|c") derive different keys. A fresh key per record
means the random nonce never meets another message under the same key; it stays random
anyway so the format is safe even if a salt ever repeated.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _random
from ._errors import DecryptionError
from ._hkdf import derive32

__all__ = ["FORMAT", "MAX_KIND_BYTES", "MAX_RECORD_ID_BYTES", "MAX_PLAINTEXT", "seal", "open_", "kek_version"]

FORMAT = 1
_FORMAT_BYTE = bytes([FORMAT])
_SALT_LEN = 16
_NONCE_LEN = 12
_TAG_LEN = 16
_PREFIX = struct.Struct(">BI")  # format, KEK version
_HEADER_LEN = _PREFIX.size + _SALT_LEN + _NONCE_LEN
OVERHEAD = _HEADER_LEN + _TAG_LEN

# Kinds are short names chosen by the gateway ("call", "party", ...); 255 bytes is ample.
MAX_KIND_BYTES = 255
# Record ids are UUIDs or platform ids (a Twilio CallSid is 34 characters); the uint16
# length prefix allows 65535, 1 KiB leaves room without inviting abuse.
MAX_RECORD_ID_BYTES = 1024
# Records are metadata rows; anything larger belongs in a blob, which streams in constant
# memory. 64 MiB is far below AES-GCM's 2**36 - 32 byte limit (NIST SP 800-38D section 5.2.1.1).
MAX_PLAINTEXT = 64 * 1024 * 1024


def _info(tenant: bytes, kind: bytes, record_id: bytes, kek_version: int) -> bytes:
    return b"".join(
        (
            _FORMAT_BYTE,
            tenant,
            len(kind).to_bytes(2, "big"),
            kind,
            len(record_id).to_bytes(2, "big"),
            record_id,
            kek_version.to_bytes(4, "big"),
        )
    )


def seal(
    records_key: bytes, tenant: bytes, kind: bytes, record_id: bytes, kek_version: int, plaintext
) -> bytes:
    info = _info(tenant, kind, record_id, kek_version)
    rand = _random.public_random_bytes(_SALT_LEN + _NONCE_LEN)
    key = derive32(records_key, rand[:_SALT_LEN], info)
    ct = AESGCM(key).encrypt(rand[_SALT_LEN:], plaintext, info)
    return _PREFIX.pack(FORMAT, kek_version) + rand + ct


def kek_version(sealed: bytes) -> int:
    """KEK version of a well-formed-looking record; DecryptionError if it cannot be one."""
    if len(sealed) < OVERHEAD or sealed[0] != FORMAT:
        raise DecryptionError()
    return _PREFIX.unpack_from(sealed)[1]


def open_(records_key: bytes, tenant: bytes, kind: bytes, record_id: bytes, sealed: bytes) -> bytes:
    version = kek_version(sealed)
    info = _info(tenant, kind, record_id, version)
    salt_end = _PREFIX.size + _SALT_LEN
    key = derive32(records_key, sealed[_PREFIX.size : salt_end], info)
    try:
        return AESGCM(key).decrypt(sealed[salt_end:_HEADER_LEN], sealed[_HEADER_LEN:], info)
    except InvalidTag:
        raise DecryptionError() from None
