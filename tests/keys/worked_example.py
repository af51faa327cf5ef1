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

ROOT_KEY = bytes(range(32))
TENANT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
OBJECT_ID = uuid.UUID("66666666-7777-4888-8999-aaaaaaaaaaaa")
RECORD_KIND = "call"
RECORD_ID = "CA0123"
RECORD_PLAINTEXT = b'{"duration":42}'
PHONE = "+14155550100"
BLOB_PLAINTEXT = b"hello, recorded call"
SEGMENT_SIZE_LOG2 = 12


@contextmanager
def fixed_random():
    """os.urandom returning SHA-256("vgw example" | n) prefixes, n = 0, 1, 2, ..."""
    counter = iter(range(10**6))

    def urandom(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"vgw example" + next(counter).to_bytes(4, "big")).digest()
        return out[:n]

    with mock.patch.object(os, "urandom", urandom):
        yield


def generate(tmp_dir: str) -> dict[str, str]:
    path = os.path.join(tmp_dir, "root.key")
    with open(path, "wb") as f:
        f.write(b"VGWR\x01" + ROOT_KEY)
    os.chmod(path, 0o600)
    root = keys.FileRootKeyProvider.load(path)
    with fixed_random():
        kek_row, bik_row = keys.new_tenant_keys(root, TENANT_ID)
        tk = keys.open_tenant_keys(root, TENANT_ID, [kek_row, bik_row])
        sealed = tk.seal_record(RECORD_KIND, RECORD_ID, RECORD_PLAINTEXT)
        writer, wrapped_dek = tk.new_blob(OBJECT_ID, segment_size_log2=SEGMENT_SIZE_LOG2)
        blob = writer.update(BLOB_PLAINTEXT) + writer.finalize()
    # Check it round-trips before anyone copies it into a document.
    assert tk.open_record(RECORD_KIND, RECORD_ID, sealed) == RECORD_PLAINTEXT
    reader = tk.open_blob(OBJECT_ID, wrapped_dek)
    assert b"".join(reader.read_range(io.BytesIO(blob), len(BLOB_PLAINTEXT))) == BLOB_PLAINTEXT
    return {
        "root_key_file": (b"VGWR\x01" + ROOT_KEY).hex(),
        "tenant_id": str(TENANT_ID),
        "kek_v1_row": kek_row.wrapped.hex(),
        "bik_row": bik_row.wrapped.hex(),
        "record_kind": RECORD_KIND,
        "record_id": RECORD_ID,
        "record_plaintext": RECORD_PLAINTEXT.hex(),
        "sealed_record": sealed.hex(),
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
