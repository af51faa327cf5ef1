"""Streaming blob encryption: round trips, byte ranges, tampering, truncation, reordering."""

from __future__ import annotations

import io
import os
import tracemalloc
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import DecryptionError, _blob

from ._hypothesis import keys_settings

LOG2 = 12  # 4 KiB segments keep the tests fast
SEG = 1 << LOG2
CT_SEG = SEG + 16
HEADER = 114


def encrypt(tk, data, object_id=None, log2=LOG2, chunks=None):
    object_id = object_id or uuid.uuid4()
    writer, wrapped = tk.new_blob(object_id, segment_size_log2=log2)
    out = bytearray()
    pos = 0
    for size in chunks or [len(data)]:
        out += writer.update(data[pos : pos + size])
        pos += size
    out += writer.update(data[pos:])
    out += writer.finalize()
    assert writer.plaintext_length == len(data)
    return object_id, wrapped, bytes(out)


def read_all(tk, object_id, wrapped, blob, length, start=0, end=None):
    reader = tk.open_blob(object_id, wrapped)
    return b"".join(reader.read_range(io.BytesIO(blob), length, start, end))


sizes = st.one_of(
    st.integers(0, 5 * SEG + 100),
    st.integers(0, 5).map(lambda k: k * SEG),  # exact multiples of the segment size
    st.integers(1, 5).map(lambda k: k * SEG + 1),
    st.integers(1, 5).map(lambda k: k * SEG - 1),
)


@keys_settings
@given(size=sizes, data=st.data())
def test_round_trip_with_any_chunking(tenant, size, data):
    plaintext = os.urandom(size)
    # Exactly one segment per update() is the writer's fast path; draw it often.
    chunks = data.draw(st.lists(st.one_of(st.integers(0, 2 * SEG + 3), st.just(SEG)), max_size=12))
    as_bytearray = data.draw(st.booleans())
    source = bytearray(plaintext) if as_bytearray else plaintext
    object_id, wrapped, blob = encrypt(tenant, source, chunks=chunks)
    reader = tenant.open_blob(object_id, wrapped)
    assert len(blob) == reader.ciphertext_length(size)
    assert b"".join(reader.read_range(io.BytesIO(blob), size)) == plaintext


@keys_settings
@given(size=sizes, data=st.data())
def test_random_ranges(tenant, size, data):
    plaintext = os.urandom(size)
    object_id, wrapped, blob = encrypt(tenant, plaintext)
    reader = tenant.open_blob(object_id, wrapped)
    f = io.BytesIO(blob)
    for _ in range(5):
        start = data.draw(st.integers(0, size))
        end = data.draw(st.integers(start, size))
        assert b"".join(reader.read_range(f, size, start, end)) == plaintext[start:end]
    start = data.draw(st.integers(0, size))
    assert b"".join(reader.read_range(f, size, start)) == plaintext[start:]


def test_writer_mutating_the_callers_buffer_after_update_is_safe(tenant):
    # update() must not keep a reference to a mutable buffer it was given.
    buffer = bytearray(SEG)
    writer, wrapped = tenant.new_blob(object_id := uuid.uuid4(), segment_size_log2=LOG2)
    expected = b""
    out = b""
    for fill in (b"a", b"b", b"c"):
        buffer[:] = fill * SEG
        expected += bytes(buffer)
        out += writer.update(buffer)
    buffer[:] = b"z" * SEG
    out += writer.finalize()
    assert read_all(tenant, object_id, wrapped, out, len(expected)) == expected


def test_layout(tenant):
    object_id, wrapped, blob = encrypt(tenant, b"x" * (2 * SEG + 10))
    assert blob[:4] == b"VGWB"
    assert blob[4:7] == bytes([1, 1, LOG2])
    assert blob[7:23] == tenant.tenant_id.bytes
    assert blob[23:39] == object_id.bytes
    assert blob[39:43] == (1).to_bytes(4, "big")
    assert len(blob) == HEADER + 3 * 16 + 2 * SEG + 10
    reader = tenant.open_blob(object_id, wrapped)
    assert reader.header_length == HEADER
    assert reader.ciphertext_length(0) == HEADER + 16
    assert reader.ciphertext_length(SEG) == HEADER + SEG + 16
    assert reader.ciphertext_length(SEG + 1) == HEADER + SEG + 1 + 32


def test_update_emits_header_first_and_holds_back_one_segment(tenant):
    writer, _ = tenant.new_blob(uuid.uuid4(), segment_size_log2=LOG2)
    first = writer.update(b"x" * SEG)
    assert len(first) == HEADER  # the full segment is held back: it might be the last
    assert writer.update(b"") == b""
    assert len(writer.update(b"y")) == CT_SEG  # now it is known not to be last
    assert len(writer.finalize()) == 1 + 16
    with pytest.raises(ValueError, match="finalize"):
        writer.update(b"x")
    with pytest.raises(ValueError, match="finalize"):
        writer.finalize()


def test_empty_blob_is_header_and_one_empty_last_segment(tenant):
    object_id, wrapped, blob = encrypt(tenant, b"")
    assert len(blob) == HEADER + 16
    assert read_all(tenant, object_id, wrapped, blob, 0) == b""
    writer, _ = tenant.new_blob(uuid.uuid4(), segment_size_log2=LOG2)
    assert len(writer.finalize()) == HEADER + 16  # finalize alone emits the header too
    with pytest.raises(DecryptionError):  # truncated empty blob
        read_all(tenant, object_id, wrapped, blob[:HEADER], 0)
    with pytest.raises(DecryptionError):  # tampered empty segment
        read_all(tenant, object_id, wrapped, blob[:-1] + bytes([blob[-1] ^ 1]), 0)


def test_default_segment_size_is_64_kib(tenant):
    writer, wrapped = tenant.new_blob(object_id := uuid.uuid4())
    blob = writer.update(bytes(70000)) + writer.finalize()
    assert blob[6] == 16
    assert len(blob) == HEADER + 70000 + 2 * 16
    assert read_all(tenant, object_id, wrapped, blob, 70000, 65530, 65540) == bytes(10)


# -- tampering ---------------------------------------------------------------------

LENGTH = 3 * SEG + 100  # four segments, the last one short


@pytest.fixture(scope="module")
def sample(tenant):
    plaintext = os.urandom(LENGTH)
    object_id, wrapped, blob = encrypt(tenant, plaintext)
    return plaintext, object_id, wrapped, blob


def _offsets(blob):
    # Every header byte, and for each segment its first and last ciphertext bytes and all
    # of its tag.
    positions = set(range(HEADER))
    for start in range(HEADER, len(blob), CT_SEG):
        end = min(start + CT_SEG, len(blob))
        positions |= {start, start + 1, end - 17, *range(end - 16, end)}
    return sorted(positions)


def test_flipping_any_header_or_tag_byte_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    for i in _offsets(blob):
        tampered = bytearray(blob)
        tampered[i] ^= 0x20
        with pytest.raises(DecryptionError):
            read_all(tenant, object_id, wrapped, bytes(tampered), LENGTH)


@keys_settings
@given(data=st.data())
def test_flipping_any_byte_fails(tenant, sample, data):
    plaintext, object_id, wrapped, blob = sample
    i = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    tampered = bytearray(blob)
    tampered[i] ^= bit
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, bytes(tampered), LENGTH)


def test_truncation_at_a_segment_boundary_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    for segments in range(4):
        cut = HEADER + segments * CT_SEG
        truncated = blob[:cut]
        # With the true length (file too short) ...
        with pytest.raises(DecryptionError):
            read_all(tenant, object_id, wrapped, truncated, LENGTH)
        # ... and even if the stored length were rewritten to match: the last kept
        # segment was not encrypted as the last one.
        with pytest.raises(DecryptionError):
            read_all(tenant, object_id, wrapped, truncated, max(0, segments * SEG))


def test_truncation_inside_the_last_segment_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, blob[:-1], LENGTH)
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, blob[:-1], LENGTH - 1)


def test_swapping_two_segments_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    segs = [blob[HEADER + i * CT_SEG : HEADER + (i + 1) * CT_SEG] for i in range(4)]
    swapped = blob[:HEADER] + segs[1] + segs[0] + segs[2] + segs[3]
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, swapped, LENGTH)
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, swapped, LENGTH, 0, 10)


def test_appending_a_segment_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    full_segment = blob[HEADER + CT_SEG : HEADER + 2 * CT_SEG]
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, blob + full_segment, LENGTH)
    with pytest.raises(DecryptionError):  # even a range far from the end
        read_all(tenant, object_id, wrapped, blob + full_segment, LENGTH, 0, 10)
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, blob + b"\x00", LENGTH)
    # A blob whose last segment is full, extended by one of its own full segments, and a
    # reader told the longer length: the old last segment has the last flag set.
    object_id2, wrapped2, blob2 = encrypt(tenant, bytes(2 * SEG))
    extended = blob2 + blob2[HEADER : HEADER + CT_SEG]
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id2, wrapped2, extended, 3 * SEG)


def test_wrong_length_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    for length in (LENGTH - 1, LENGTH + 1, 0, 4 * SEG):
        with pytest.raises(DecryptionError):
            read_all(tenant, object_id, wrapped, blob, length)


def test_wrong_tenant_object_or_dek_fails(tenant, other_tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    with pytest.raises(DecryptionError):
        other_tenant.open_blob(object_id, wrapped)
    with pytest.raises(DecryptionError):
        tenant.open_blob(uuid.uuid4(), wrapped)
    # Another blob of the same object id (a retry, say): its DEK does not open this one.
    _, wrapped_other, _ = encrypt(tenant, plaintext, object_id=object_id)
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped_other, blob, LENGTH)
    # A blob copied under another object's id: header object id and commitment disagree.
    other_id, wrapped_b, blob_b = encrypt(tenant, plaintext)
    with pytest.raises(DecryptionError):
        read_all(tenant, other_id, wrapped_b, blob, LENGTH)
    # The other tenant's blob with the other tenant's DEK, read as ours.
    oid, w, b = encrypt(other_tenant, plaintext, object_id=object_id)
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, b, LENGTH)


def test_tampered_wrapped_dek_fails(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 1
        with pytest.raises(DecryptionError):
            tenant.open_blob(object_id, bytes(tampered))
    for bad in (b"", wrapped[:-1], wrapped + b"\x00"):
        with pytest.raises(DecryptionError):
            tenant.open_blob(object_id, bad)


def test_a_failing_segment_is_never_yielded(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    tampered = bytearray(blob)
    tampered[HEADER + 2 * CT_SEG + 5] ^= 1  # inside segment 2
    reader = tenant.open_blob(object_id, wrapped)
    got = []
    with pytest.raises(DecryptionError):
        for piece in reader.read_range(io.BytesIO(bytes(tampered)), LENGTH):
            got.append(piece)
    assert b"".join(got) == plaintext[: 2 * SEG]


# -- ranges read only what they cover ---------------------------------------------


class CountingFile(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.reads = []

    def read(self, n=-1):
        position = self.tell()
        data = super().read(n)
        self.reads.append((position, len(data)))
        return data


def test_range_reads_only_the_covered_segments(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    reader = tenant.open_blob(object_id, wrapped)
    f = CountingFile(blob)
    start, end = SEG + 10, 2 * SEG + 20  # segments 1 and 2
    assert b"".join(reader.read_range(f, LENGTH, start, end)) == plaintext[start:end]
    assert f.reads == [(0, HEADER), (HEADER + CT_SEG, CT_SEG), (HEADER + 2 * CT_SEG, CT_SEG)]

    f = CountingFile(blob)
    assert b"".join(reader.read_range(f, LENGTH, LENGTH - 5)) == plaintext[-5:]
    assert f.reads == [(0, HEADER), (HEADER + 3 * CT_SEG, 100 + 16)]

    f = CountingFile(blob)
    assert b"".join(reader.read_range(f, LENGTH, 7, 7)) == b""
    assert f.reads == [(0, HEADER)]


def test_range_ignores_a_corrupt_uncovered_segment(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    tampered = bytearray(blob)
    tampered[HEADER + 5] ^= 1  # segment 0
    tampered[-3] ^= 1  # segment 3 (the tag)
    assert read_all(tenant, object_id, wrapped, bytes(tampered), LENGTH, SEG, 3 * SEG) == plaintext[SEG : 3 * SEG]
    with pytest.raises(DecryptionError):
        read_all(tenant, object_id, wrapped, bytes(tampered), LENGTH, 0, SEG + 1)


def test_range_arguments_are_checked(tenant, sample):
    plaintext, object_id, wrapped, blob = sample
    reader = tenant.open_blob(object_id, wrapped)
    f = io.BytesIO(blob)
    with pytest.raises(ValueError, match="start"):
        reader.read_range(f, LENGTH, -1)
    with pytest.raises(ValueError, match="start"):
        reader.read_range(f, LENGTH, LENGTH + 1)
    with pytest.raises(ValueError, match="end"):
        reader.read_range(f, LENGTH, 10, 5)
    with pytest.raises(ValueError, match="end"):
        reader.read_range(f, LENGTH, 0, LENGTH + 1)
    with pytest.raises(ValueError, match="plaintext_length"):
        reader.read_range(f, -1)
    with pytest.raises(TypeError, match="start"):
        reader.read_range(f, LENGTH, 1.5)


# -- limits and arguments ------------------------------------------------------------


def test_segment_size_bounds(tenant):
    for log2 in (11, 25):
        with pytest.raises(ValueError, match="segment_size_log2"):
            tenant.new_blob(uuid.uuid4(), segment_size_log2=log2)
    for log2 in (12, 24):
        tenant.new_blob(uuid.uuid4(), segment_size_log2=log2)
    with pytest.raises(TypeError, match="object_id"):
        tenant.new_blob("not-a-uuid")
    writer, _ = tenant.new_blob(uuid.uuid4())
    with pytest.raises(TypeError, match="data"):
        writer.update("text")


def test_refuses_more_than_2_to_the_32_segments(tenant):
    writer, _ = tenant.new_blob(uuid.uuid4(), segment_size_log2=LOG2)
    writer._index = _blob.MAX_SEGMENTS - 1  # pretend 16 TiB were already written
    writer.update(bytes(SEG))  # segment 2**32 - 1 may still be the last one ...
    with pytest.raises(ValueError, match="segments"):
        writer.update(b"x")  # ... but nothing may follow it
    with pytest.raises(ValueError, match="segments"):
        writer.update(bytes(SEG))  # (the segment-sized fast path checks too)
    writer, _ = tenant.new_blob(uuid.uuid4(), segment_size_log2=LOG2)
    writer._index = _blob.MAX_SEGMENTS - 1
    writer.update(bytes(SEG))
    assert len(writer.finalize()) == CT_SEG
    writer, wrapped = tenant.new_blob(object_id := uuid.uuid4(), segment_size_log2=LOG2)
    reader = tenant.open_blob(object_id, wrapped)
    assert reader.ciphertext_length(_blob.MAX_SEGMENTS * SEG) > 0
    with pytest.raises(ValueError, match="plaintext_length"):
        reader.ciphertext_length(_blob.MAX_SEGMENTS * SEG + 1)


def test_memory_stays_constant(tenant):
    writer, _ = tenant.new_blob(uuid.uuid4(), segment_size_log2=16)
    chunk = bytearray(10000)  # unaligned chunks exercise the copying path
    tracemalloc.start()
    try:
        for _ in range(400):  # 4 MB
            writer.update(chunk)
        writer.finalize()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 65536


def test_reader_and_writer_expose_no_key(tenant):
    writer, wrapped = tenant.new_blob(object_id := uuid.uuid4())
    reader = tenant.open_blob(object_id, wrapped)
    for obj in (writer, reader):
        for name in dir(obj):
            if not name.startswith("_"):
                value = getattr(obj, name)
                assert not isinstance(value, bytes | bytearray), name
    with pytest.raises(TypeError):
        _blob.BlobWriter()
    with pytest.raises(TypeError):
        _blob.BlobReader()
