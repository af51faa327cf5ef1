"""The key store on files and on a real SeaweedFS: round trip, listing, erasure that leaves
nothing behind (file bytes overwritten, every S3 version gone), strict names and modes,
and the URL factories that refuse keys beside the recordings."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import S3Config
from gateway.errors import ConfigError
from gateway.store.files import FileBlobStore
from gateway.store.keystore import (
    FileKeyStore,
    KeyStore,
    KeyStoreError,
    S3KeyStore,
    open_blob_store,
    open_key_store,
)
from gateway.store.s3 import S3BlobStore
from tests.support.seaweedfs import SeaweedS3


@pytest.fixture(params=["file", "s3"])
async def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "file":
        store: KeyStore = open_key_store("", tmp_path / "keys")
    else:
        seaweedfs: SeaweedS3 = request.getfixturevalue("seaweedfs")
        store = open_key_store(f"s3://gw-keys/t-{secrets.token_hex(6)}", tmp_path / "unused",
                               S3Config(endpoint_url=seaweedfs.endpoint_url,
                                        region=seaweedfs.region))
    yield store
    await store.close()


async def test_round_trip_listing_and_deletion(key_store: KeyStore) -> None:
    first, second = os.urandom(61), os.urandom(300)
    assert await key_store.get("tenants/a.key") is None
    await key_store.put("tenants/a.key", first)
    await key_store.put("tenants/b.key", second)
    await key_store.put("calls/2026/c1.key", b"\x00" * 32)
    assert await key_store.get("tenants/a.key") == first
    assert await key_store.list("tenants/") == ["tenants/a.key", "tenants/b.key"]
    assert await key_store.list() == ["calls/2026/c1.key", "tenants/a.key", "tenants/b.key"]

    await key_store.put("tenants/a.key", second)            # replace
    assert await key_store.get("tenants/a.key") == second

    assert await key_store.delete("tenants/a.key") is True
    assert await key_store.get("tenants/a.key") is None
    assert await key_store.list("tenants/") == ["tenants/b.key"]
    assert await key_store.delete("tenants/a.key") is False
    assert await key_store.ping() is True


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", ".hidden", "a/../b", "",
                                  "a b", "x" * 600])
async def test_names_that_could_escape_or_hide_are_refused(key_store: KeyStore,
                                                           name: str) -> None:
    with pytest.raises(ValueError):
        await key_store.put(name, b"k")
    with pytest.raises(ValueError):
        await key_store.get(name)


async def test_many_at_once_replace_and_erase_like_one_at_a_time(key_store: KeyStore,
                                                                  tmp_path: Path) -> None:
    await key_store.put("t/units/a", b"a-old")
    await key_store.put_many({"t/units/a": b"a-new", "t/units/b": b"b", "t/units/c": b"c"})
    assert [await key_store.get(f"t/units/{n}") for n in "abc"] == [b"a-new", b"b", b"c"]
    assert await key_store.delete_many(["t/units/b", "t/units/c", "t/units/never"]) == 2
    assert await key_store.list("t/") == ["t/units/a"]
    if isinstance(key_store, FileKeyStore):
        # Nothing left under a dot-name (temp files, replaced files awaiting the shred),
        # and no byte of a replaced or deleted value anywhere in the store.
        found = [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]
        assert [p.name for p in found] == ["a"]
        assert all(b"old" not in p.read_bytes() for p in found)


async def test_oversized_objects_are_refused(key_store: KeyStore) -> None:
    with pytest.raises(KeyStoreError):
        await key_store.put("big", bytes(1024 * 1024 + 1))


# -- files ----------------------------------------------------------------------------------
async def test_file_keys_are_private_and_erased_in_place(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys")
    secret = os.urandom(64)
    await store.put("tenants/t1.key", secret)
    path = tmp_path / "keys" / "tenants" / "t1.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["t1.key"]   # no temp file left

    # A second name for the same inode sees what delete does to the bytes themselves.
    witness = tmp_path / "witness"
    os.link(path, witness)
    assert await store.delete("tenants/t1.key") is True
    assert not path.exists()
    assert witness.read_bytes() == bytes(len(secret))


async def test_a_file_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys")
    await store.put("k", b"secret")
    (tmp_path / "keys" / "k").chmod(0o644)
    with pytest.raises(KeyStoreError, match="0600") as raised:
        await store.get("k")
    assert "secret" not in str(raised.value)


async def test_a_file_store_that_cannot_be_written_is_not_ready(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert await FileKeyStore(blocker / "keys").ping() is False


# -- S3 -------------------------------------------------------------------------------------
async def test_s3_put_and_delete_leave_no_old_version(seaweedfs: SeaweedS3) -> None:
    bucket = seaweedfs.create_bucket("gw-keys-versioned")
    client = seaweedfs.client()
    client.put_bucket_versioning(Bucket=bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
    store = S3KeyStore(bucket, f"t-{secrets.token_hex(6)}",
                       endpoint_url=seaweedfs.endpoint_url)
    try:
        await store.put("tenants/v.key", b"version one")
        await store.put("tenants/v.key", b"version two")
        key = f"{store.prefix}/tenants/v.key"
        # The put removed what it replaced: a rewritten unit-key segment leaves no older
        # version holding the keys an erasure took out.
        versions = client.list_object_versions(Bucket=bucket, Prefix=key)
        assert len(versions.get("Versions", [])) == 1
        assert await store.get("tenants/v.key") == b"version two"
        await store.put_many({"tenants/v.key": b"version three", "tenants/w.key": b"w"})
        versions = client.list_object_versions(Bucket=bucket, Prefix=key)
        assert len(versions.get("Versions", [])) == 1
        old = client.get_object(Bucket=bucket, Key=key,
                                VersionId=versions["Versions"][0]["VersionId"])
        assert old["Body"].read() == b"version three"
        assert await store.delete_many(["tenants/w.key"]) == 1
        assert await store.delete("tenants/v.key") is True
        assert await store.get("tenants/v.key") is None
        left = client.list_object_versions(Bucket=bucket, Prefix=key)
        assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
        assert await store.delete("tenants/never.key") is False
        assert client.list_object_versions(Bucket=bucket, Prefix=f"{store.prefix}/tenants/never"
                                           ).get("DeleteMarkers", []) == []
    finally:
        await store.close()


# -- factories ------------------------------------------------------------------------------
async def test_factories_open_the_configured_stores(tmp_path: Path, seaweedfs: SeaweedS3) -> None:
    files = open_blob_store("", tmp_path / "blobs")
    assert isinstance(files, FileBlobStore) and await files.ping()
    assert isinstance(open_key_store(f"file://{tmp_path}/k", tmp_path / "unused"), FileKeyStore)
    s3_config = S3Config(endpoint_url=seaweedfs.endpoint_url, region=seaweedfs.region)
    blobs = open_blob_store("s3://gw-blobs/factory/", tmp_path, s3_config)
    key_store = open_key_store("s3://gw-keys/factory", tmp_path, s3_config)
    try:
        assert isinstance(blobs, S3BlobStore)
        assert (blobs.bucket, blobs.prefix) == ("gw-blobs", "factory")
        assert isinstance(key_store, S3KeyStore)
        assert await blobs.ping() and await key_store.ping()
        async with S3BlobStore("no-such-bucket-here",
                               endpoint_url=seaweedfs.endpoint_url) as missing:
            assert await missing.ping() is False
    finally:
        await blobs.close()
        await key_store.close()


def test_factories_refuse_bad_urls_without_echoing_them(tmp_path: Path) -> None:
    for url in ("s3://x/p", "s3://Upper_Case/p", "gs://bucket/p",
                "s3://AKIAEXAMPLE:hunter2@bucket/p"):
        with pytest.raises(ConfigError, match="key_store_url") as raised:
            open_key_store(url, tmp_path)
        assert "hunter2" not in str(raised.value)
        with pytest.raises(ConfigError, match="blob_url"):
            open_blob_store(url, tmp_path)
