"""Shared fixtures: one root key and two tenants per session (hypothesis cannot use
function-scoped fixtures)."""

from __future__ import annotations

import uuid

import pytest

import keys


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> keys.FileRootKeyProvider:
    return keys.FileRootKeyProvider.create(tmp_path_factory.mktemp("root") / "root.key")


@pytest.fixture(scope="session")
def tenant(root) -> keys.TenantKeys:
    tenant_id = uuid.uuid4()
    return keys.open_tenant_keys(root, tenant_id, keys.new_tenant_keys(root, tenant_id))


@pytest.fixture(scope="session")
def other_tenant(root) -> keys.TenantKeys:
    tenant_id = uuid.uuid4()
    return keys.open_tenant_keys(root, tenant_id, keys.new_tenant_keys(root, tenant_id))
