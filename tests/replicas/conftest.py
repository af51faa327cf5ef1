"""Fixtures of the multi-replica suite: one cluster of two `gateway serve` processes per
module (starting replicas costs seconds; tests use their own tenants, so they share it),
a throwaway CA for the fake platform, and the fake platform itself (real HTTPS)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.ingest.fakes import FakePlatform, TlsMaterial
from tests.support.postgres import PostgresDatabase
from tests.support.seaweedfs import SeaweedS3

from .cluster import Cluster, ip_tls, start_cluster


@pytest.fixture(scope="session")
def replica_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return ip_tls(tmp_path_factory.mktemp("replica-tls"))


@pytest.fixture(scope="module")
def schema_url(postgres: PostgresDatabase) -> Iterator[str]:
    """A fresh schema in the session's throwaway database for one module's cluster."""
    schema = f"r_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres.url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, schema_url: str, seaweedfs: SeaweedS3,
            replica_tls: TlsMaterial) -> Iterator[Cluster]:
    running = start_cluster(Path(tmp_path_factory.mktemp("cluster")), schema_url, seaweedfs,
                            replica_tls)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
async def fake_platform(replica_tls: TlsMaterial) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    await fake.start(replica_tls)
    yield fake
    await fake.close()
