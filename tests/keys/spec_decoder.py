"""An independent decoder for docs/crypto-formats.md, written from the document with
cryptography's own primitives (not keys/_hkdf.py, not keys/ at all), in the spirit of
h11's test against the standard library. If code and document drift apart, the tests
that use it fail.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand


def hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, info: bytes) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def root_key_from_file(content: bytes) -> bytes:
    assert content[:4] == b"VGWR" and content[4] == 1 and len(content) == 37
    return content[5:]


def unwrap_tenant_key(root_key: bytes, tenant_id: uuid.UUID, kind: str, version: int, wrapped: bytes) -> bytes:
    aad = b"tenant-key|" + tenant_id.bytes + b"|" + kind.encode() + b"|" + struct.pack(">I", version)
    assert wrapped[0] == 1
    return AESGCM(root_key).decrypt(wrapped[1:13], wrapped[13:], b"\x01" + aad)


def kek_subkeys(kek: bytes) -> tuple[bytes, bytes]:
    return hkdf(kek, None, b"vgw/v1/records"), hkdf(kek, None, b"vgw/v1/dek-wrap")


def record_info(tenant_id: uuid.UUID, kind: str, record_id: str, kek_version: int) -> bytes:
    k, r = kind.encode(), record_id.encode()
    return (
        b"\x01" + tenant_id.bytes + struct.pack(">H", len(k)) + k + struct.pack(">H", len(r)) + r
        + struct.pack(">I", kek_version)
    )


def open_record(records_subkey: bytes, tenant_id: uuid.UUID, kind: str, record_id: str, sealed: bytes) -> dict:
    assert sealed[0] == 1
    (kek_version,) = struct.unpack(">I", sealed[1:5])
    salt, nonce, ciphertext = sealed[5:21], sealed[21:33], sealed[33:]
    info = record_info(tenant_id, kind, record_id, kek_version)
    key = hkdf(records_subkey, salt, info)
    return {
        "kek_version": kek_version,
        "salt": salt,
        "nonce": nonce,
        "info": info,
        "record_key": key,
        "plaintext": AESGCM(key).decrypt(nonce, ciphertext, info),
    }


def unwrap_dek(dek_wrap_subkey: bytes, tenant_id: uuid.UUID, object_id: uuid.UUID, wrapped: bytes) -> dict:
    assert wrapped[0] == 1 and len(wrapped) == 66
    kek_version, log2 = struct.unpack(">IB", wrapped[1:6])
    aad = b"dek\x01" + tenant_id.bytes + object_id.bytes + struct.pack(">IB", kek_version, log2)
    dek = AESGCM(dek_wrap_subkey).decrypt(wrapped[6:18], wrapped[18:], aad)
    return {"kek_version": kek_version, "segment_size_log2": log2, "dek": dek}


def decrypt_blob(dek: bytes, tenant_id: uuid.UUID, object_id: uuid.UUID, blob: bytes, length: int) -> dict:
    header, body = blob[:114], blob[:82]
    magic, fmt, alg, log2, tenant, obj, kek_version, salt, prefix = struct.unpack(">4sBBB16s16sI32s7s", body)
    assert (magic, fmt, alg) == (b"VGWB", 1, 1)
    assert tenant == tenant_id.bytes and obj == object_id.bytes
    prk = hmac.digest(salt, dek, hashlib.sha256)  # HKDF-Extract
    segment_key = hkdf_expand(prk, b"vgw/v1/blob-segment-key" + body)
    commitment = hkdf_expand(prk, b"vgw/v1/blob-commitment" + body)
    assert header[82:] == commitment
    size = 1 << log2
    count = max(1, -(-length // size))
    assert len(blob) == 114 + length + 16 * count
    plaintext = b""
    nonces = []
    for i in range(count):
        start = 114 + i * (size + 16)
        seg_len = (length - i * size if i == count - 1 else size) + 16
        nonce = prefix + struct.pack(">IB", i, 1 if i == count - 1 else 0)
        nonces.append(nonce)
        plaintext += AESGCM(segment_key).decrypt(nonce, blob[start : start + seg_len], None)
    return {
        "kek_version": kek_version,
        "salt": salt,
        "nonce_prefix": prefix,
        "prk": prk,
        "segment_key": segment_key,
        "commitment": commitment,
        "nonces": nonces,
        "plaintext": plaintext,
    }


def blind_index(bik: bytes, e164: str, bits: int) -> int:
    return int.from_bytes(hmac.digest(bik, e164.encode(), hashlib.sha256)[:4], "big") >> (32 - bits)
