"""Sealed records: round trips, binding to tenant / kind / id, tamper detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import keys
from keys import DecryptionError

from ._hypothesis import keys_settings

# Any Unicode except lone surrogates (which have no UTF-8 encoding).
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@keys_settings
@given(kind=unicode_text, record_id=unicode_text, plaintext=st.binary(max_size=2000))
def test_round_trip(tenant, kind, record_id, plaintext):
    sealed = tenant.seal_record(kind, record_id, plaintext)
    assert tenant.open_record(kind, record_id, sealed) == plaintext
    assert len(sealed) == len(plaintext) + 1 + 4 + 16 + 12 + 16
    assert keys.sealed_version(sealed) == 1


def test_sealing_twice_differs(tenant):
    assert tenant.seal_record("call", "c1", b"x") != tenant.seal_record("call", "c1", b"x")


def test_format_prefix(tenant):
    sealed = tenant.seal_record("call", "c1", b"x")
    assert sealed[0] == 1
    assert sealed[1:5] == (1).to_bytes(4, "big")


def test_every_byte_is_authenticated(tenant):
    sealed = tenant.seal_record("call", "c1", b"some metadata")
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x04
        with pytest.raises(DecryptionError):
            tenant.open_record("call", "c1", bytes(tampered))


def test_truncation_and_extension_fail(tenant):
    sealed = tenant.seal_record("call", "c1", b"some metadata")
    for cut in range(len(sealed)):
        with pytest.raises(DecryptionError):
            tenant.open_record("call", "c1", sealed[:cut])
    with pytest.raises(DecryptionError):
        tenant.open_record("call", "c1", sealed + b"\x00")


def test_wrong_kind_id_or_tenant_fails(tenant, other_tenant):
    sealed = tenant.seal_record("call", "c1", b"x")
    with pytest.raises(DecryptionError):
        tenant.open_record("party", "c1", sealed)
    with pytest.raises(DecryptionError):
        tenant.open_record("call", "c2", sealed)
    with pytest.raises(DecryptionError):
        other_tenant.open_record("call", "c1", sealed)


def test_info_encoding_is_unambiguous(tenant):
    # With a bare "|" join these two would derive the same key and AAD.
    sealed = tenant.seal_record("a|b", "c", b"x")
    with pytest.raises(DecryptionError):
        tenant.open_record("a", "b|c", sealed)
    sealed = tenant.seal_record("ab", "c", b"x")
    with pytest.raises(DecryptionError):
        tenant.open_record("a", "bc", sealed)


def test_unicode_names(tenant):
    sealed = tenant.seal_record("anruf", "id-\u00e9\u6f22", b"x")
    assert tenant.open_record("anruf", "id-\u00e9\u6f22", sealed) == b"x"


def test_wrapped_dek_is_not_a_record(tenant):
    import uuid

    _, wrapped = tenant.new_blob(uuid.uuid4())
    with pytest.raises(DecryptionError):
        tenant.open_record("call", "c1", wrapped)


def test_arguments_are_checked(tenant):
    with pytest.raises(TypeError, match="kind"):
        tenant.seal_record(b"call", "c1", b"x")
    with pytest.raises(ValueError, match="kind"):
        tenant.seal_record("", "c1", b"x")
    with pytest.raises(ValueError, match="kind"):
        tenant.seal_record("k" * 256, "c1", b"x")
    with pytest.raises(TypeError, match="record_id"):
        tenant.seal_record("call", 7, b"x")
    with pytest.raises(ValueError, match="record_id"):
        tenant.seal_record("call", "\ud800", b"x")
    with pytest.raises(ValueError, match="record_id"):
        tenant.seal_record("call", "i" * 1025, b"x")
    with pytest.raises(TypeError, match="plaintext"):
        tenant.seal_record("call", "c1", "text")
    with pytest.raises(TypeError, match="sealed"):
        tenant.open_record("call", "c1", "text")
    # bytearray and memoryview are accepted.
    sealed = tenant.seal_record("call", "c1", bytearray(b"x"))
    assert tenant.open_record("call", "c1", memoryview(sealed)) == b"x"


def test_sealed_version_rejects_other_data():
    with pytest.raises(ValueError, match="sealed"):
        keys.sealed_version(b"\x02" + bytes(60))
    with pytest.raises(ValueError, match="sealed"):
        keys.sealed_version(b"")
    with pytest.raises(TypeError, match="sealed"):
        keys.sealed_version("x")
