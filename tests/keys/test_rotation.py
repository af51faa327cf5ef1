"""KEK rotation: add a version, reseal records, rewrap DEKs, destroy the old version."""

from __future__ import annotations

import io
import uuid

import pytest

import keys
from keys import DecryptionError


@pytest.fixture
def ring(root):
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id)
    return tenant_id, rows


def _write_blob(tk, object_id, data, log2=12):
    writer, wrapped = tk.new_blob(object_id, segment_size_log2=log2)
    return writer.update(data) + writer.finalize(), wrapped


def test_record_survives_rotation_and_reseal_moves_it(root, ring):
    tenant_id, rows = ring
    v1 = keys.open_tenant_keys(root, tenant_id, rows)
    sealed = v1.seal_record("call", "c1", b"metadata")

    rows.append(keys.new_kek_version(root, tenant_id, 2))
    v2 = keys.open_tenant_keys(root, tenant_id, rows)
    assert v2.primary_version == 2 and v2.versions == (1, 2)
    assert v2.open_record("call", "c1", sealed) == b"metadata"
    assert keys.sealed_version(v2.seal_record("call", "c2", b"new")) == 2

    resealed = v2.reseal_record("call", "c1", sealed)
    assert keys.sealed_version(sealed) == 1
    assert keys.sealed_version(resealed) == 2
    assert v2.open_record("call", "c1", resealed) == b"metadata"
    # Already primary: authenticated and returned as is.
    assert v2.reseal_record("call", "c1", resealed) == resealed

    # Destroy v1: drop its row and reopen.
    v2_only = keys.open_tenant_keys(root, tenant_id, [row for row in rows if (row.kind, row.version) != ("kek", 1)])
    assert v2_only.versions == (2,)
    assert v2_only.open_record("call", "c1", resealed) == b"metadata"
    with pytest.raises(DecryptionError):
        v2_only.open_record("call", "c1", sealed)
    with pytest.raises(DecryptionError):
        v2_only.reseal_record("call", "c1", sealed)


def test_reseal_still_checks_binding(root, ring):
    tenant_id, rows = ring
    rows.append(keys.new_kek_version(root, tenant_id, 2))
    tk = keys.open_tenant_keys(root, tenant_id, rows)
    sealed = tk.seal_record("call", "c1", b"x")
    with pytest.raises(DecryptionError):
        tk.reseal_record("call", "c2", sealed)


def test_rewrap_dek_keeps_the_blob_readable(root, ring):
    tenant_id, rows = ring
    v1 = keys.open_tenant_keys(root, tenant_id, rows)
    object_id = uuid.uuid4()
    data = bytes(range(256)) * 40
    blob, wrapped_v1 = _write_blob(v1, object_id, data)

    rows.append(keys.new_kek_version(root, tenant_id, 2))
    v2 = keys.open_tenant_keys(root, tenant_id, rows)
    wrapped_v2 = v2.rewrap_dek(object_id, wrapped_v1)
    assert keys.sealed_version(wrapped_v1) == 1 and keys.sealed_version(wrapped_v2) == 2
    assert v2.rewrap_dek(object_id, wrapped_v2) == wrapped_v2

    v2_only = keys.open_tenant_keys(root, tenant_id, [row for row in rows if row.version != 1 or row.kind == "bik"])
    reader = v2_only.open_blob(object_id, wrapped_v2)
    assert b"".join(reader.read_range(io.BytesIO(blob), len(data))) == data
    with pytest.raises(DecryptionError):
        v2_only.open_blob(object_id, wrapped_v1)
    with pytest.raises(DecryptionError):
        v2_only.rewrap_dek(object_id, wrapped_v1)
    # Rewrapping is bound to the object too.
    with pytest.raises(DecryptionError):
        v2.rewrap_dek(uuid.uuid4(), wrapped_v1)


def test_blind_index_is_stable_across_rotation(root, ring):
    tenant_id, rows = ring
    before = keys.open_tenant_keys(root, tenant_id, rows).blind_index("+14155550100")
    rows.append(keys.new_kek_version(root, tenant_id, 2))
    after = keys.open_tenant_keys(root, tenant_id, rows).blind_index("+14155550100")
    assert before == after


def test_primary_is_the_highest_version_not_the_last_row(root, ring):
    tenant_id, rows = ring
    v3 = keys.new_kek_version(root, tenant_id, 3)
    v2 = keys.new_kek_version(root, tenant_id, 2)
    tk = keys.open_tenant_keys(root, tenant_id, [v3, *rows, v2])
    assert tk.primary_version == 3 and tk.versions == (1, 2, 3)
