"""Tenant key rows: creation, unwrapping, binding to tenant / kind / version."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

import keys
from keys import DecryptionError, WrappedKey


def test_new_tenant_keys_gives_kek_v1_and_bik(root):
    rows = keys.new_tenant_keys(root, uuid.uuid4())
    assert [(row.kind, row.version) for row in rows] == [("kek", 1), ("bik", 1)]
    assert all(isinstance(row.wrapped, bytes) for row in rows)
    assert rows[0].wrapped != rows[1].wrapped


def test_open_tenant_keys(root):
    tenant_id = uuid.uuid4()
    tk = keys.open_tenant_keys(root, tenant_id, keys.new_tenant_keys(root, tenant_id))
    assert tk.tenant_id == tenant_id
    assert tk.primary_version == 1
    assert tk.versions == (1,)
    assert tk.blind_index_bits == 16


def test_rows_of_another_tenant_fail(root):
    rows = keys.new_tenant_keys(root, uuid.uuid4())
    with pytest.raises(DecryptionError):
        keys.open_tenant_keys(root, uuid.uuid4(), rows)


def test_a_row_relabelled_as_another_version_or_kind_fails(root):
    tenant_id = uuid.uuid4()
    kek, bik = keys.new_tenant_keys(root, tenant_id)
    with pytest.raises(DecryptionError):
        keys.open_tenant_keys(root, tenant_id, [dataclasses.replace(kek, version=2), bik])
    # A KEK presented as the BIK (and the BIK as the KEK).
    swapped = [WrappedKey("kek", 1, bik.wrapped), WrappedKey("bik", 1, kek.wrapped)]
    with pytest.raises(DecryptionError):
        keys.open_tenant_keys(root, tenant_id, swapped)


def test_one_tampered_row_fails_the_whole_ring(root):
    tenant_id = uuid.uuid4()
    kek, bik = keys.new_tenant_keys(root, tenant_id)
    v2 = keys.new_kek_version(root, tenant_id, 2)
    bad = dataclasses.replace(v2, wrapped=v2.wrapped[:-1] + bytes([v2.wrapped[-1] ^ 1]))
    with pytest.raises(DecryptionError):
        keys.open_tenant_keys(root, tenant_id, [kek, bik, bad])


def test_ring_structure_is_checked(root):
    tenant_id = uuid.uuid4()
    kek, bik = keys.new_tenant_keys(root, tenant_id)
    with pytest.raises(ValueError, match="at least one 'kek'"):
        keys.open_tenant_keys(root, tenant_id, [bik])
    with pytest.raises(ValueError, match="'bik'"):
        keys.open_tenant_keys(root, tenant_id, [kek])
    with pytest.raises(ValueError, match="twice"):
        keys.open_tenant_keys(root, tenant_id, [kek, kek, bik])
    with pytest.raises(TypeError, match="wrapped"):
        keys.open_tenant_keys(root, tenant_id, [kek, bik, b"x"])
    with pytest.raises(TypeError, match="wrapped"):
        keys.open_tenant_keys(root, tenant_id, kek)


def test_arguments_are_checked(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    with pytest.raises(TypeError, match="tenant_id"):
        keys.new_tenant_keys(root, str(tenant_id))
    with pytest.raises(TypeError, match="root"):
        keys.new_tenant_keys(object(), tenant_id)
    with pytest.raises(ValueError, match="version"):
        keys.new_kek_version(root, tenant_id, 0)
    with pytest.raises(TypeError, match="version"):
        keys.new_kek_version(root, tenant_id, True)
    for bits in (0, 33):
        with pytest.raises(ValueError, match="blind_index_bits"):
            keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=bits)


def test_wrapped_key_validates_its_fields():
    with pytest.raises(ValueError, match="kind"):
        WrappedKey("dek", 1, b"x")
    with pytest.raises(ValueError, match="version"):
        WrappedKey("kek", 0, b"x")
    with pytest.raises(ValueError, match="version"):
        WrappedKey("bik", 0, b"x")
    with pytest.raises(TypeError, match="wrapped"):
        WrappedKey("kek", 1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        WrappedKey("kek", 1, b"x").version = 2


def test_tenant_keys_expose_no_raw_key(tenant):
    for name in dir(tenant):
        if not name.startswith("_"):
            assert not isinstance(getattr(tenant, name), bytes | bytearray), name
    assert "versions=(1,)" in repr(tenant)
    with pytest.raises(TypeError):
        keys.TenantKeys()
    with pytest.raises(AttributeError):
        tenant.primary_version = 5
