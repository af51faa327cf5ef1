"""The worked example in docs/crypto-formats.md, generated with fixed "random" bytes.

Run ``python -m tests.keys.worked_example`` to print the block; test_worked_example.py
checks the document against both this generator and an independent decoder.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from contextlib import contextmanager
from unittest import mock

import keys
from keys import _random as keys_random

ROOT_KEY = bytes(range(32))
TENANT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
OBJECT_ID = uuid.UUID("66666666-7777-4888-8999-aaaaaaaaaaaa")
RECORD_KIND = "call"
RECORD_ID = "CA0123"
RECORD_PLAINTEXT = b'{"duration":42}'
PHONE = "+14155550100"
BLOB_PLAINTEXT = b"hello, recorded call"
SEGMENT_SIZE_LOG2 = 12
# The default config's layers: a tenant root key in the key store wraps the key rows and
# the unit-key segments; a call's parties are a format-2 record under their unit key.
UNIT_SEGMENT_ID = uuid.UUID("77777777-8888-4999-8aaa-bbbbbbbbbbbb")
CALL_ID = "99999999-aaaa-4bbb-8ccc-dddddddddddd"
PARTIES_KIND = "call-parties"
PARTIES_PLAINTEXT = b'{"from":"+14155550100","to":"+14155550199"}'


@contextmanager
def fixed_random():
    """os.urandom returning SHA-256("vgw example" | n) prefixes, n = 0, 1, 2, ...; record
    salts and nonces (keys/_random.py's pool in production) are drawn from it directly."""
    counter = iter(range(10**6))

    def urandom(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"vgw example" + next(counter).to_bytes(4, "big")).digest()
        return out[:n]

    with mock.patch.object(os, "urandom", urandom), \
            mock.patch.object(keys_random, "public_random_bytes", urandom):
        yield


def generate(tmp_dir: str) -> dict[str, str]:
    path = os.path.join(tmp_dir, "root.key")
    with open(path, "wb") as f:
        f.write(b"VGWR\x01" + ROOT_KEY)
    os.chmod(path, 0o600)
    root = keys.FileRootKeyProvider.load(path)
    with fixed_random():
        tenant_root, tenant_root_object = keys.TenantRootKey.generate(root, TENANT_ID)
        kek_row, bik_row = keys.new_tenant_keys(tenant_root, TENANT_ID)
        tk = keys.open_tenant_keys(tenant_root, TENANT_ID, [kek_row, bik_row])
        unit = keys.new_unit_key(UNIT_SEGMENT_ID)
        segment = keys.encode_segment(tenant_root, TENANT_ID, UNIT_SEGMENT_ID, [unit])
        parties = tk.seal_record(PARTIES_KIND, CALL_ID, PARTIES_PLAINTEXT, unit=unit)
        sealed = tk.seal_record(RECORD_KIND, RECORD_ID, RECORD_PLAINTEXT)
        writer, wrapped_dek = tk.new_blob(OBJECT_ID, segment_size_log2=SEGMENT_SIZE_LOG2)
        blob = writer.update(BLOB_PLAINTEXT) + writer.finalize()
    # Check it round-trips before anyone copies it into a document.
    assert tk.open_record(RECORD_KIND, RECORD_ID, sealed) == RECORD_PLAINTEXT
    units = {u.ref: u for u in keys.decode_segment(tenant_root, TENANT_ID, UNIT_SEGMENT_ID,
                                                   segment).values()}
    assert tk.open_record(PARTIES_KIND, CALL_ID, parties, units=units) == PARTIES_PLAINTEXT
    reader = tk.open_blob(OBJECT_ID, wrapped_dek)
    assert b"".join(reader.read_range(io.BytesIO(blob), len(BLOB_PLAINTEXT))) == BLOB_PLAINTEXT
    return {
        "root_key_file": (b"VGWR\x01" + ROOT_KEY).hex(),
        "tenant_id": str(TENANT_ID),
        "tenant_root_key_object": tenant_root_object.hex(),
        "kek_v1_row": kek_row.wrapped.hex(),
        "bik_row": bik_row.wrapped.hex(),
        "record_kind": RECORD_KIND,
        "record_id": RECORD_ID,
        "record_plaintext": RECORD_PLAINTEXT.hex(),
        "sealed_record": sealed.hex(),
        "unit_segment_id": str(UNIT_SEGMENT_ID),
        "unit_segment_object": segment.hex(),
        "call_id": CALL_ID,
        "parties_kind": PARTIES_KIND,
        "parties_plaintext": PARTIES_PLAINTEXT.hex(),
        "parties_record": parties.hex(),
        "phone": PHONE,
        "blind_index_16": str(tk.blind_index(PHONE)),
        "object_id": str(OBJECT_ID),
        "wrapped_dek": wrapped_dek.hex(),
        "blob_plaintext": BLOB_PLAINTEXT.hex(),
        "blob": blob.hex(),
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name, value in generate(d).items():
            print(f"{name} = {value}")
