"""keys.BlobReader.reseal_truncated (added for live-recording crash recovery): the durable
whole segments of an unfinished blob become a valid, authenticated, shorter blob."""

from __future__ import annotations

import io
import os
import uuid

import pytest

import keys
from keys._blob import HEADER_LEN


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> keys.TenantKeys:
    root = keys.FileRootKeyProvider.create(tmp_path_factory.mktemp("root") / "root.key")
    tenant_id = uuid.uuid4()
    return keys.open_tenant_keys(root, tenant_id, keys.new_tenant_keys(root, tenant_id))


def _unfinished(ring, size_log2: int, plaintext: bytes, chunk: int):
    object_id = uuid.uuid4()
    writer, wrapped = ring.new_blob(object_id, segment_size_log2=size_log2)
    out = bytearray()
    for i in range(0, len(plaintext), chunk):
        out += writer.update(plaintext[i:i + chunk])
    # No finalize(): the process died. `out` is what reached the file.
    return object_id, wrapped, bytes(out)


@pytest.mark.parametrize("size_log2,length,chunk", [(12, 4096 * 5 + 100, 333),
                                                    (12, 4096 * 3, 4096), (16, 200_000, 640)])
def test_durable_segments_read_back(ring, size_log2, length, chunk):
    plaintext = os.urandom(length)
    object_id, wrapped, written = _unfinished(ring, size_log2, plaintext, chunk)
    reader = ring.open_blob(object_id, wrapped)
    size = 1 << size_log2
    # Any durable prefix, even one cutting a segment in half, keeps the whole segments.
    for durable in (len(written), len(written) - 7, HEADER_LEN + size + 16 + 3):
        f = io.BytesIO(written)
        keep, tail, kept = reader.reseal_truncated(f, durable)
        whole = (durable - HEADER_LEN) // (size + 16)
        assert kept == whole * size and keep == HEADER_LEN + (whole - 1) * (size + 16)
        blob = written[:keep] + tail
        got = b"".join(reader.read_range(io.BytesIO(blob), kept))
        assert got == plaintext[:kept]
        # Deterministic: resealing again gives the same bytes.
        assert reader.reseal_truncated(io.BytesIO(written), durable)[1] == tail


def test_nothing_whole_is_none_and_tampering_fails(ring):
    plaintext = os.urandom(4096 * 4)
    object_id, wrapped, written = _unfinished(ring, 12, plaintext, 1000)
    reader = ring.open_blob(object_id, wrapped)
    assert reader.reseal_truncated(io.BytesIO(written), HEADER_LEN + 4000) is None
    assert reader.reseal_truncated(io.BytesIO(written), 10) is None
    tampered = bytearray(written)
    tampered[HEADER_LEN + 4112 + 5] ^= 1                   # inside segment 1
    with pytest.raises(keys.DecryptionError):
        reader.reseal_truncated(io.BytesIO(bytes(tampered)), HEADER_LEN + 2 * 4112)
    other_id, other_wrapped, _ = _unfinished(ring, 12, plaintext, 1000)
    with pytest.raises(keys.DecryptionError):
        ring.open_blob(other_id, other_wrapped).reseal_truncated(io.BytesIO(written),
                                                                 len(written))
