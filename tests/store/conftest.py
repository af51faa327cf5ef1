"""Fixtures for the storage backends: one S3 store per test under its own prefix (so tests
never see each other's objects) on the session's real SeaweedFS (`seaweedfs`, registered
with `postgres` by tests/conftest.py from tests/support), and a tenant key ring opened
with keys' public API."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest

import keys
from gateway.store.s3 import S3BlobStore
from tests.support.seaweedfs import SeaweedS3


@pytest.fixture
def prefix() -> str:
    return f"t-{secrets.token_hex(6)}/gw"


@pytest.fixture
async def blob_store(seaweedfs: SeaweedS3, prefix: str) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore("gw-blobs", prefix, endpoint_url=seaweedfs.endpoint_url,
                        region=seaweedfs.region)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def root_key(tmp_path_factory: pytest.TempPathFactory) -> keys.FileRootKeyProvider:
    return keys.FileRootKeyProvider.create(tmp_path_factory.mktemp("root") / "root.key")


@pytest.fixture
def tenant(root_key: keys.FileRootKeyProvider) -> keys.TenantKeys:
    tenant_id = uuid.uuid4()
    return keys.open_tenant_keys(root_key, tenant_id,
                                 keys.new_tenant_keys(root_key, tenant_id))
