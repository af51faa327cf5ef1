"""`gateway storage migrate`: copy an installation's three stores into new ones (typically
SQLite + files into PostgreSQL + S3), resumably, then prove the copy equal.

Invariants:
- Only ciphertext and wrapped keys move; nothing is decrypted on the way.
- Idempotent and resumable: rows are inserted with ON CONFLICT DO NOTHING in primary-key
  order, a blob whose copy already has the same size and digest is skipped, a key already
  present with the same bytes is skipped. Run it again after any interruption.
- The source is only read. Stop the gateway (or every replica) first: rows written during
  a copy are copied only by a later run.
- The copy is verified at the end: row counts per table, every blob's size and SHA-256 of
  its ciphertext, every key's bytes, and each tenant's transparency-log root on both sides.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.transparency import merkle

ROW_BATCH = 1000
CHUNK = 1024 * 1024
# Tables not copied: the migration ledger belongs to each database.
SKIPPED_TABLES = frozenset({"schema_migrations"})

Progress = Callable[[str, int, int], None]     # (stage, done, total)


@dataclass
class TransferReport:
    rows: dict[str, int] = field(default_factory=dict)          # table -> rows in target
    rows_copied: int = 0
    blobs: int = 0
    blobs_copied: int = 0
    blob_bytes: int = 0
    keys: int = 0
    keys_copied: int = 0
    log_roots: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "rows_copied": self.rows_copied,
                "blobs": self.blobs, "blobs_copied": self.blobs_copied,
                "blob_bytes": self.blob_bytes, "keys": self.keys,
                "keys_copied": self.keys_copied, "log_roots_compared": self.log_roots,
                "problems": self.problems}


async def _tables(source: Database) -> list[tuple[str, list[str], list[str]]]:
    """(table, columns, primary-key columns), each table after every table its foreign
    keys point at, so a copied row never references one not yet copied."""
    info = {name: table for name, table in (await source.tables()).items()
            if name not in SKIPPED_TABLES}
    ordered: list[str] = []

    def visit(name: str, path: frozenset[str]) -> None:
        if name in ordered or name in path or name not in info:
            return
        for parent in sorted(info[name].references):
            visit(parent, path | {name})
        ordered.append(name)
    for name in info:
        visit(name, frozenset())
    out = []
    for name in ordered:
        columns = list(info[name].columns)
        out.append((name, columns, list(info[name].primary_key) or columns))
    return out


async def copy_rows(source: Database, target: Database, report: TransferReport,
                    progress: Progress | None = None) -> None:
    for table, columns, key in await _tables(source):
        total = (await source.fetchone(f"SELECT COUNT(*) AS n FROM {table}"))["n"]
        have = (await target.fetchone(f"SELECT COUNT(*) AS n FROM {table}"))["n"]
        done = 0
        if have < total:
            cols = ", ".join(columns)
            marks = ", ".join("?" * len(columns))
            order = ", ".join(key)
            insert = f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({marks})"
            after: tuple | None = None
            while True:
                where = ""
                params: tuple = ()
                if after is not None:
                    where = f" WHERE ({order}) > ({', '.join('?' * len(key))})"
                    params = after
                rows = await source.fetchall(
                    f"SELECT {cols} FROM {table}{where} ORDER BY {order} LIMIT {ROW_BATCH}",
                    params)
                if not rows:
                    break
                values = [tuple(r[c] for c in columns) for r in rows]
                await target.write(lambda tx, v=values, sql=insert: tx.executemany(sql, v))
                report.rows_copied += len(values)
                done += len(values)
                after = tuple(rows[-1][k] for k in key)
                if progress:
                    progress(f"rows:{table}", done, total)
        report.rows[table] = (await target.fetchone(f"SELECT COUNT(*) AS n FROM {table}"))["n"]
        if report.rows[table] != total:
            report.problems.append(f"table {table}: {total} rows in the source,"
                                   f" {report.rows[table]} in the target")


async def _digest(blobs: BlobStore, tenant_id: str, object_id: str) -> tuple[int, str]:
    def read() -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        with fileobj:
            while chunk := fileobj.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()
    fileobj = await blobs.open(tenant_id, object_id)
    return await asyncio.to_thread(read)


async def copy_blobs(source: BlobStore, target: BlobStore, report: TransferReport,
                     progress: Progress | None = None) -> None:
    objects = [(t, o) for t in await source.list_tenants() for o in await source.list_objects(t)]
    for done, (tenant_id, object_id) in enumerate(objects, 1):
        size, digest = await _digest(source, tenant_id, object_id)
        report.blobs += 1
        report.blob_bytes += size
        if not (await target.exists(tenant_id, object_id)
                and await _digest(target, tenant_id, object_id) == (size, digest)):
            await _copy_blob(source, target, tenant_id, object_id)
            report.blobs_copied += 1
            if await _digest(target, tenant_id, object_id) != (size, digest):
                report.problems.append(f"blob {object_id}: the copy differs")
        if progress:
            progress("blobs", done, len(objects))


async def _copy_blob(source: BlobStore, target: BlobStore, tenant_id: str,
                     object_id: str) -> None:
    fileobj = await source.open(tenant_id, object_id)
    sink = await target.create(tenant_id, object_id)
    try:
        while chunk := await asyncio.to_thread(fileobj.read, CHUNK):
            await sink.write(chunk)
        await sink.commit()
    except BaseException:
        await sink.abort()
        raise
    finally:
        await asyncio.to_thread(fileobj.close)


async def copy_keys(source: Any, target: Any, report: TransferReport,
                    progress: Progress | None = None) -> None:
    names = await source.list()
    for done, name in enumerate(names, 1):
        data = await source.get(name)
        if data is None:        # deleted while we listed: nothing to carry
            continue
        report.keys += 1
        if await target.get(name) != data:
            await target.put(name, data)
            report.keys_copied += 1
            if await target.get(name) != data:
                report.problems.append(f"key {name}: the copy differs")
        if progress:
            progress("keys", done, len(names))


async def _log_root(db: Database, tenant_id: str, size: int) -> bytes:
    nodes = {(r["level"], r["idx"]): bytes(r["hash"]) for r in await db.fetchall(
        "SELECT level, idx, hash FROM audit_nodes WHERE tenant_id = ?", (tenant_id,))}
    return merkle.root_hash(size, lambda level, index: nodes[(level, index)])


async def compare_logs(source: Database, target: Database, report: TransferReport) -> None:
    for head in await source.fetchall("SELECT tenant_id, size FROM audit_heads"):
        tenant_id, size = head["tenant_id"], head["size"]
        copied = await target.fetchone("SELECT size FROM audit_heads WHERE tenant_id = ?",
                                       (tenant_id,))
        if size == 0:
            continue
        if copied is None or copied["size"] != size or \
                await _log_root(source, tenant_id, size) != await _log_root(target, tenant_id,
                                                                            size):
            report.problems.append(f"tenant {tenant_id}: transparency log root differs")
        report.log_roots += 1


async def transfer(source_db: Database, target_db: Database, source_blobs: BlobStore,
                   target_blobs: BlobStore, source_keys: Any, target_keys: Any,
                   progress: Progress | None = None) -> TransferReport:
    """Copy everything, then verify; returns what was found."""
    report = TransferReport()
    await copy_keys(source_keys, target_keys, report, progress)
    await copy_rows(source_db, target_db, report, progress)
    await copy_blobs(source_blobs, target_blobs, report, progress)
    await compare_logs(source_db, target_db, report)
    return report
