"""The scale-out stack for benchmarks: a throwaway PostgreSQL database on the machine's
server and a SeaweedFS S3 server, started the way the test fixtures start them.

Invariants:
- Reuses tests/support (the same server discovery, database naming and SeaweedFS flags as
  the end-to-end suites), so a benchmark measures what the tests check.
- Everything made here is removed when the block ends: the database is dropped (FORCE),
  SeaweedFS is killed and its directory deleted.
- Blobs and key material live in different buckets, as the gateway requires.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import PostgresDatabase, throwaway_database
from tests.support.seaweedfs import BUCKETS, SeaweedS3, start_seaweedfs

__all__ = ["ScaleOutStack", "scale_out_stack", "postgres_only"]


@dataclass(frozen=True)
class ScaleOutStack:
    postgres: PostgresDatabase
    s3: SeaweedS3

    @property
    def storage_config(self) -> str:
        """Keys for GatewayProcess's [storage] section (which its config writes last)."""
        return (f'database_url = "{self.postgres.url}"\n'
                f'blob_url = "s3://{BUCKETS[0]}/bench"\n'
                f'key_store_url = "s3://{BUCKETS[1]}/bench"\n'
                f'[storage.s3]\nendpoint_url = "{self.s3.endpoint_url}"\n'
                f'region = "{self.s3.region}"\n')

    @property
    def env(self) -> dict[str, str]:
        return self.s3.env()


# SeaweedFS takes ten ports chosen free a moment before it binds them; on a machine shared
# with other test sessions one is sometimes taken in between, and weed exits. Try again.
START_ATTEMPTS = 3


@contextlib.contextmanager
def _seaweedfs() -> Iterator[SeaweedS3]:
    for attempt in range(START_ATTEMPTS):
        with tempfile.TemporaryDirectory(prefix="vgw-bench-s3-") as tmp:
            try:
                started = start_seaweedfs(Path(tmp))
                s3 = started.__enter__()
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1:
                    raise
                continue
            try:
                yield s3
            finally:
                started.__exit__(None, None, None)
            return


@contextlib.contextmanager
def scale_out_stack() -> Iterator[ScaleOutStack]:
    with throwaway_database() as database, _seaweedfs() as s3:
        yield ScaleOutStack(database, s3)


@contextlib.contextmanager
def postgres_only() -> Iterator[PostgresDatabase]:
    with throwaway_database() as database:
        yield database
