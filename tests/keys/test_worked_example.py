"""docs/crypto-formats.md: the worked example matches the code, and an independent decoder
written from the document reads both the example and fresh library output."""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import keys

from . import spec_decoder as sd
from . import worked_example
from ._hypothesis import keys_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "crypto-formats.md"


def doc_example() -> dict[str, str]:
    text = DOC.read_text()
    block = re.search(r"<!-- worked-example:begin -->\n```\n(.*?)```\n<!-- worked-example:end -->", text, re.S)
    assert block, "worked example block missing from docs/crypto-formats.md"
    pairs = (line.split(" = ", 1) for line in block.group(1).splitlines() if line.strip())
    return {name: value for name, value in pairs}


def test_document_matches_the_generator(tmp_path):
    doc = doc_example()
    for name, value in worked_example.generate(str(tmp_path)).items():
        assert doc[name] == value, name


def test_document_decodes_independently():
    doc = doc_example()
    h = bytes.fromhex
    tenant_id, object_id = uuid.UUID(doc["tenant_id"]), uuid.UUID(doc["object_id"])
    root_key = sd.root_key_from_file(h(doc["root_key_file"]))
    # The default config: the rows are wrapped by the tenant root key in the key store.
    tenant_root = sd.tenant_root_key(root_key, tenant_id, h(doc["tenant_root_key_object"]))
    assert tenant_root.hex() == doc["tenant_root_key"]
    kek = sd.unwrap_tenant_key(tenant_root, tenant_id, "kek", 1, h(doc["kek_v1_row"]))
    bik = sd.unwrap_tenant_key(tenant_root, tenant_id, "bik", 1, h(doc["bik_row"]))
    assert kek.hex() == doc["kek_v1"] and bik.hex() == doc["bik"]
    records_subkey, dek_wrap_subkey = sd.kek_subkeys(kek)
    assert records_subkey.hex() == doc["records_subkey"]
    assert dek_wrap_subkey.hex() == doc["dek_wrap_subkey"]

    record = sd.open_record(records_subkey, tenant_id, doc["record_kind"], doc["record_id"], h(doc["sealed_record"]))
    assert record["plaintext"].hex() == doc["record_plaintext"]
    assert record["info"].hex() == doc["record_info"]
    assert record["salt"].hex() == doc["record_salt"]
    assert record["nonce"].hex() == doc["record_nonce"]
    assert record["record_key"].hex() == doc["record_key"]

    segment_id = uuid.UUID(doc["unit_segment_id"])
    segment = sd.unit_segment(tenant_root, tenant_id, segment_id, h(doc["unit_segment_object"]))
    assert segment["segment_key"].hex() == doc["unit_segment_key"]
    assert segment["nonce"].hex() == doc["unit_segment_nonce"]
    assert {str(k): v.hex() for k, v in segment["units"].items()} == {
        doc["unit_entry_id"]: doc["unit_key"]}
    parties = h(doc["parties_record"])
    assert sd.record_ref(parties) == (segment_id, uuid.UUID(doc["unit_entry_id"]))
    opened = sd.open_unit_record(h(doc["unit_key"]), tenant_id, doc["parties_kind"],
                                 doc["call_id"], parties)
    assert opened["plaintext"].hex() == doc["parties_plaintext"]
    assert opened["info"].hex() == doc["parties_info"]
    assert opened["salt"].hex() == doc["parties_salt"]
    assert opened["nonce"].hex() == doc["parties_nonce"]
    assert opened["record_key"].hex() == doc["parties_record_key"]

    assert sd.blind_index(bik, doc["phone"], 16) == int(doc["blind_index_16"])

    dek = sd.unwrap_dek(dek_wrap_subkey, tenant_id, object_id, h(doc["wrapped_dek"]))
    assert dek["dek"].hex() == doc["dek"] and dek["segment_size_log2"] == 12
    blob = sd.decrypt_blob(dek["dek"], tenant_id, object_id, h(doc["blob"]), len(h(doc["blob_plaintext"])))
    assert blob["plaintext"].hex() == doc["blob_plaintext"]
    assert blob["salt"].hex() == doc["blob_salt"]
    assert blob["nonce_prefix"].hex() == doc["blob_nonce_prefix"]
    assert blob["prk"].hex() == doc["blob_prk"]
    assert blob["segment_key"].hex() == doc["blob_segment_key"]
    assert blob["commitment"].hex() == doc["blob_commitment"]
    assert blob["nonces"][0].hex() == doc["blob_segment_0_nonce"]


def test_library_opens_the_document(tmp_path):
    doc = doc_example()
    path = tmp_path / "root.key"
    path.write_bytes(bytes.fromhex(doc["root_key_file"]))
    os.chmod(path, 0o600)
    root = keys.FileRootKeyProvider.load(path)
    tenant_id, object_id = uuid.UUID(doc["tenant_id"]), uuid.UUID(doc["object_id"])
    rows = [
        keys.WrappedKey("kek", 1, bytes.fromhex(doc["kek_v1_row"])),
        keys.WrappedKey("bik", 1, bytes.fromhex(doc["bik_row"])),
    ]
    tenant_root = keys.TenantRootKey.from_bytes(bytes.fromhex(doc["tenant_root_key_object"]),
                                                root, tenant_id)
    tk = keys.open_tenant_keys(tenant_root, tenant_id, rows)
    sealed = bytes.fromhex(doc["sealed_record"])
    assert tk.open_record(doc["record_kind"], doc["record_id"], sealed).hex() == doc["record_plaintext"]
    segment = keys.decode_segment(tenant_root, tenant_id, uuid.UUID(doc["unit_segment_id"]),
                                  bytes.fromhex(doc["unit_segment_object"]))
    units = {u.ref: u for u in segment.values()}
    assert tk.open_record(doc["parties_kind"], doc["call_id"], bytes.fromhex(
        doc["parties_record"]), units=units).hex() == doc["parties_plaintext"]
    assert tk.blind_index(doc["phone"]) == int(doc["blind_index_16"])
    reader = tk.open_blob(object_id, bytes.fromhex(doc["wrapped_dek"]))
    plaintext = bytes.fromhex(doc["blob_plaintext"])
    blob = io.BytesIO(bytes.fromhex(doc["blob"]))
    assert b"".join(reader.read_range(blob, len(plaintext))) == plaintext


# -- fresh library output, read by the independent decoder ------------------------------

ROOT_KEY = os.urandom(32)


def _ring(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "root.key"
    path.write_bytes(b"VGWR\x01" + ROOT_KEY)
    os.chmod(path, 0o600)
    root = keys.FileRootKeyProvider.load(path)
    tenant_id = uuid.uuid4()
    rows = keys.new_tenant_keys(root, tenant_id) + [keys.new_kek_version(root, tenant_id, 7)]
    tk = keys.open_tenant_keys(root, tenant_id, rows, blind_index_bits=21)
    kek7 = sd.unwrap_tenant_key(ROOT_KEY, tenant_id, "kek", 7, rows[2].wrapped)
    bik = sd.unwrap_tenant_key(ROOT_KEY, tenant_id, "bik", 1, rows[1].wrapped)
    return tk, sd.kek_subkeys(kek7), bik


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(keys_settings, max_examples=25)
@given(kind=unicode_text, record_id=unicode_text, plaintext=st.binary(max_size=300), data=st.data())
def test_library_output_decodes_independently(tmp_path_factory, kind, record_id, plaintext, data):
    tk, (records_subkey, dek_wrap_subkey), bik = _ring(tmp_path_factory)
    sealed = tk.seal_record(kind, record_id, plaintext)
    record = sd.open_record(records_subkey, tk.tenant_id, kind, record_id, sealed)
    assert record["plaintext"] == plaintext and record["kek_version"] == 7

    log2 = data.draw(st.sampled_from([12, 13]))
    audio = os.urandom(data.draw(st.integers(0, 4 * (1 << log2) + 5)))
    object_id = uuid.uuid4()
    writer, wrapped = tk.new_blob(object_id, segment_size_log2=log2)
    blob = writer.update(audio) + writer.finalize()
    dek = sd.unwrap_dek(dek_wrap_subkey, tk.tenant_id, object_id, wrapped)
    assert dek["segment_size_log2"] == log2 and dek["kek_version"] == 7
    decoded = sd.decrypt_blob(dek["dek"], tk.tenant_id, object_id, blob, len(audio))
    assert decoded["plaintext"] == audio and decoded["kek_version"] == 7

    number = data.draw(st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
    assert tk.blind_index(number) == sd.blind_index(bik, number, 21)
