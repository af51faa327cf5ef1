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
from pathlib import Path

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


def unwrap(key: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """The root wrap (also used by a tenant root key): 0x01 | nonce | ct+tag, AAD 0x01 | aad."""
    assert wrapped[0] == 1
    return AESGCM(key).decrypt(wrapped[1:13], wrapped[13:], b"\x01" + aad)


def key_store_path(key_dir: Path, name: str) -> Path:
    """The file key store: object `a/b/c` is the file <dir>/a/b/c, its bytes the object."""
    return key_dir.joinpath(*name.split("/"))


def tenant_root_key(root_key: bytes, tenant_id: uuid.UUID, stored: bytes) -> bytes:
    """Key-store object `<tenant id>.key`: "VGWT" | 0x01 | root wrap of the 32-byte key."""
    assert stored[:4] == b"VGWT" and stored[4] == 1
    key = unwrap(root_key, stored[5:], b"tenant-root-key|" + tenant_id.bytes)
    assert len(key) == 32
    return key


def unwrap_tenant_key(root_key: bytes, tenant_id: uuid.UUID, kind: str, version: int, wrapped: bytes) -> bytes:
    """A `tenant_keys` row; `root_key` is the tenant's wrapping key (its tenant root key, or
    the root key for a tenant without one)."""
    aad = b"tenant-key|" + tenant_id.bytes + b"|" + kind.encode() + b"|" + struct.pack(">I", version)
    return unwrap(root_key, wrapped, aad)


def unit_segment(wrapping_key: bytes, tenant_id: uuid.UUID, segment_id: uuid.UUID, data: bytes) -> dict:
    """Key-store object `<tenant id>/units/<segment id>`: the segment key and its unit keys."""
    assert data[:4] == b"VGWK" and data[4] == 1
    assert data[5:21] == tenant_id.bytes and data[21:37] == segment_id.bytes
    (wrapped_len,) = struct.unpack(">H", data[37:39])
    header_end = 39 + wrapped_len
    segment_key = unwrap(wrapping_key, data[39:header_end], b"unit-segment|" + tenant_id.bytes + segment_id.bytes)
    nonce = data[header_end : header_end + 12]
    entries = AESGCM(segment_key).decrypt(nonce, data[header_end + 12 :], data[:header_end])
    (count,) = struct.unpack(">I", entries[:4])
    assert len(entries) == 4 + 48 * count
    units = {uuid.UUID(bytes=entries[4 + 48 * i : 20 + 48 * i]): entries[20 + 48 * i : 52 + 48 * i] for i in range(count)}
    return {"segment_key": segment_key, "nonce": nonce, "units": units}


def record_ref(sealed: bytes) -> tuple[uuid.UUID, uuid.UUID]:
    """(segment id, entry id) of a format-2 record: where its unit key lives."""
    assert sealed[0] == 2
    return uuid.UUID(bytes=sealed[1:17]), uuid.UUID(bytes=sealed[17:33])


def open_unit_record(unit_key: bytes, tenant_id: uuid.UUID, kind: str, record_id: str, sealed: bytes) -> dict:
    """Record format 2: 0x02 | segment id | entry id | salt (16) | nonce (12) | ct+tag."""
    segment_id, entry_id = record_ref(sealed)
    k, r = kind.encode(), record_id.encode()
    info = (b"\x02" + tenant_id.bytes + struct.pack(">H", len(k)) + k + struct.pack(">H", len(r)) + r
            + segment_id.bytes + entry_id.bytes)
    salt, nonce = sealed[33:49], sealed[49:61]
    key = hkdf(unit_key, salt, info)
    return {"info": info, "salt": salt, "nonce": nonce, "record_key": key,
            "plaintext": AESGCM(key).decrypt(nonce, sealed[61:], info)}


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
