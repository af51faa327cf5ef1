"""Persistence, and the one seam every service reaches it through.

Three stores, kept apart on purpose (docs/architecture.md, "The storage seam"):
- the metadata database (`database.Database`): SQLite under data_dir (`sqlite.py`) or
  PostgreSQL (`postgres.py`), chosen by `[storage] database_url`;
- the blob store (recording ciphertext): files under data_dir (`files.py`) or an S3
  bucket/prefix (`s3.py`), chosen by `[storage] blob_url`;
- the key store (tenant key material): files apart from the database (`keystore.py`) or
  another S3 bucket/prefix, chosen by `[storage] key_store_url`.
Services never import a backend module; `gateway/services.py` opens the backends here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.store.blobs import BlobSink, BlobStore
from gateway.store.database import (
    Database,
    IntegrityError,
    Row,
    StoreUnavailable,
    TableInfo,
    WriteTx,
)

__all__ = ["BlobSink", "BlobStore", "Database", "IntegrityError", "Row", "StoreUnavailable",
           "TableInfo", "WriteTx", "open_database"]


async def open_database(url: str, sqlite_path: Path, *, max_batch: int = 256,
                        pool_size: int = 8, sqlite_writer_process: bool = False,
                        observe_batch: Callable[[int], None] | None = None,
                        observe_latency: Callable[[str, float], None] | None = None,
                        observe_error: Callable[[str], None] | None = None) -> Database:
    """The configured metadata database, open and migrated: PostgreSQL for a
    postgresql:// URL, else SQLite at `sqlite_path`."""
    if url:
        from gateway.store.postgres import PostgresDatabase
        return await PostgresDatabase(url, max_batch=max_batch, pool_size=pool_size,
                                      observe_batch=observe_batch,
                                      observe_latency=observe_latency,
                                      observe_error=observe_error).open()
    from gateway.store.sqlite import SqliteDatabase
    return await SqliteDatabase(sqlite_path, max_batch=max_batch,
                                observe_batch=observe_batch,
                                writer_process=sqlite_writer_process).open()
