"""Blind index: keyed, stable, truncated to the configured bits."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

import keys

from ._hypothesis import keys_settings

e164 = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)


@keys_settings
@given(number=e164, bits=st.integers(1, 32))
def test_within_range_and_stable(root, number, bits):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    a = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=bits)
    b = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=bits)
    index = a.blind_index(number)
    assert 0 <= index < 2**bits
    assert b.blind_index(number) == index


def test_fewer_bits_is_a_prefix_of_more_bits(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    full = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=32).blind_index("+447700900123")
    for bits in (1, 8, 16, 31):
        short = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=bits)
        assert short.blind_index("+447700900123") == full >> (32 - bits)


def test_matches_hmac_sha256_under_the_bik(tmp_path):
    # A root key file written by hand lets the test unwrap the BIK itself (layouts in
    # docs/crypto-formats.md) and compute the index independently.
    root_key = bytes(range(32))
    path = tmp_path / "root.key"
    path.write_bytes(b"VGWR\x01" + root_key)
    os.chmod(path, 0o600)
    root = keys.FileRootKeyProvider.load(path)
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    bik_row = next(row for row in rows if row.kind == "bik")
    aad = b"tenant-key|" + tenant_id.bytes + b"|bik|" + (1).to_bytes(4, "big")
    w = bik_row.wrapped
    bik = AESGCM(root_key).decrypt(w[1:13], w[13:], b"\x01" + aad)
    expected = int.from_bytes(hmac.digest(bik, b"+14155550100", hashlib.sha256)[:2], "big")
    assert keys.open_tenant_keys(root, tenant_id, rows).blind_index("+14155550100") == expected


def test_tenants_get_different_indexes(root):
    indexes = set()
    for _ in range(8):
        tenant_id = uuid.uuid4()
        tk = keys.open_tenant_keys(root, tenant_id, keys.new_tenant_keys(root, tenant_id), blind_index_bits=32)
        indexes.add(tk.blind_index("+14155550100"))
    assert len(indexes) == 8


def test_numbers_spread_over_buckets(tenant):
    # 4096 numbers over 2**16 buckets: nearly all distinct, none pathological.
    seen = {tenant.blind_index(f"+1415555{n:04d}") for n in range(4096)}
    assert len(seen) > 3900


def test_non_number_parties_are_indexed_too(tenant):
    # gateway/phone.py keeps SIP URIs and client ids in a canonical text form.
    for party in ("sip:alice@example.com", "client:support-desk", "anonymous", "\u00e9t\u00e9"):
        assert 0 <= tenant.blind_index(party) < 2**16
    assert tenant.blind_index("sip:alice@example.com") == tenant.blind_index("sip:alice@example.com")


def test_differently_written_numbers_differ(tenant):
    # Normalising is the caller's job; the index does not paper over it.
    indexes = {tenant.blind_index(n) for n in ("+14155550100", "+1 415 555 0100", "14155550100")}
    assert len(indexes) > 1


def test_rejects_empty_oversized_or_non_str(tenant):
    with pytest.raises(ValueError, match="e164"):
        tenant.blind_index("")
    with pytest.raises(ValueError, match="e164"):
        tenant.blind_index("x" * 1025)
    with pytest.raises(ValueError, match="e164"):
        tenant.blind_index("\ud800")
    with pytest.raises(TypeError, match="e164"):
        tenant.blind_index(b"+14155550100")


# -- versions: a new BIK and a new width, matched side by side during a reindex ---------------
def _open(root, tenant_id, rows, pairs):
    return keys.open_tenant_keys(root, tenant_id, rows, blind_indexes=pairs)


def test_a_new_bik_version_indexes_differently_and_both_are_matched(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id) + [keys.new_bik_version(root, tenant_id, 2)]
    old = _open(root, tenant_id, rows, [(1, 16)])
    new = _open(root, tenant_id, rows, [(2, 16)])
    both = _open(root, tenant_id, rows, [(2, 16), (1, 16)])
    numbers = [f"+1415555{n:04d}" for n in range(16)]
    assert any(old.blind_index(n) != new.blind_index(n) for n in numbers)
    for n in numbers:
        # New rows get the first pair; lookups match under both.
        assert both.blind_index(n) == new.blind_index(n)
        assert set(both.blind_indexes(n)) == {old.blind_index(n), new.blind_index(n)}
        assert both.blind_indexes(n)[0] == new.blind_index(n)
    assert both.blind_index_versions == ((2, 16), (1, 16))
    assert both.blind_index_bits == 16


def test_a_width_change_under_one_key_is_matched_too(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    ring = _open(root, tenant_id, rows, [(1, 4), (1, 16)])
    index16 = _open(root, tenant_id, rows, [(1, 16)]).blind_index("+14155550100")
    assert ring.blind_index("+14155550100") == index16 >> 12
    assert ring.blind_indexes("+14155550100") == (index16 >> 12, index16)
    # The default: the lowest BIK version at blind_index_bits.
    default = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=16)
    assert default.blind_index_versions == ((1, 16),)


def test_a_version_without_its_key_row_is_refused(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    with pytest.raises(ValueError, match="'bik' version 2"):
        _open(root, tenant_id, rows, [(2, 16)])
    with pytest.raises(ValueError, match="bits"):
        _open(root, tenant_id, rows, [(1, 33)])
    # A destroyed old version: the ring opens on the new one alone.
    v2 = keys.new_bik_version(root, tenant_id, 2)
    kek = [row for row in rows if row.kind == "kek"]
    ring = _open(root, tenant_id, kek + [v2], [(2, 16)])
    assert ring.blind_index_versions == ((2, 16),)
    # A BIK row moved to another version number fails to unwrap.
    moved = keys.WrappedKey("bik", 3, v2.wrapped)
    with pytest.raises(keys.DecryptionError):
        _open(root, tenant_id, kek + [moved], [(3, 16)])
