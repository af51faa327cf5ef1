"""The blob store: where encrypted recordings live. The filesystem is the default.

A blob is written to `tmp/<object>.part`, fsync'd, renamed into place, and the directory
fsync'd, so a blob path either holds a complete file or does not exist. Only ciphertext
is ever written here (keys.BlobWriter output). File I/O runs in a thread so the event loop
never waits on the disk. Out of space (ENOSPC, EDQUOT) is `errors.insufficient_storage`,
a 507 with Retry-After: the writer's abort discards the temp file (nothing half-written).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

from gateway.errors import insufficient_storage

_ID_RE = re.compile(r"^[0-9a-f-]{36}$")
# Ciphertext is buffered in memory up to this many bytes before one write() call: large
# enough that thread hand-offs are rare, small enough to keep memory per upload bounded.
WRITE_BUFFER_BYTES = 1024 * 1024
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


async def _io(fn: Any, *args: Any) -> Any:
    """Run blocking file I/O in a thread, turning out-of-space into a 507."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise insufficient_storage("blob_store") from None
        raise


class FileBlobSink:
    def __init__(self, tmp_path: Path, final_path: Path) -> None:
        self._tmp = tmp_path
        self._final = final_path
        self._file: BinaryIO | None = None
        self._buffer = bytearray()
        self.bytes_written = 0

    async def _open(self) -> None:
        self._file = await _io(open, self._tmp, "wb")

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= WRITE_BUFFER_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer and self._file is not None:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            await _io(self._file.write, chunk)

    async def sync(self) -> int:
        """Write out what is buffered and fsync the temp file (a live stream's durability
        checkpoint). Returns the bytes now durable in the temp file."""
        await self._flush()
        if self._file is not None:
            await _io(_sync_file, self._file)
        return self.bytes_written

    async def commit(self) -> None:
        await self._flush()
        assert self._file is not None
        await _io(_sync_close_rename, self._file, self._tmp, self._final)
        self._file = None

    async def abort(self) -> None:
        self._buffer.clear()
        f, self._file = self._file, None
        await asyncio.to_thread(_discard, f, self._tmp)


def _sync_close_rename(f: BinaryIO, tmp: Path, final: Path) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _sync_file(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _discard(f: BinaryIO | None, tmp: Path) -> None:
    if f is not None:
        f.close()
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"

    def setup(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, tenant_id: str, object_id: str) -> Path:
        # Ids come from our own database, but check anyway: a path is no place for surprises.
        if not (_ID_RE.match(tenant_id) and _ID_RE.match(object_id)):
            raise ValueError("blob ids must be UUIDs")
        # Fan out on the id's last (random) characters: ids are time-ordered, so their first
        # characters would put years of blobs in one directory.
        return self.root / tenant_id / object_id[-2:] / object_id

    async def create(self, tenant_id: str, object_id: str) -> FileBlobSink:
        sink = FileBlobSink(self.tmp_dir / f"{object_id}.part", self._path(tenant_id, object_id))
        await sink._open()
        return sink

    async def open(self, tenant_id: str, object_id: str) -> BinaryIO:
        return await asyncio.to_thread(open, self._path(tenant_id, object_id), "rb")

    async def exists(self, tenant_id: str, object_id: str) -> bool:
        return await asyncio.to_thread(self._path(tenant_id, object_id).exists)

    async def size(self, tenant_id: str, object_id: str) -> int:
        return (await asyncio.to_thread(self._path(tenant_id, object_id).stat)).st_size

    async def delete(self, tenant_id: str, object_id: str) -> bool:
        def _delete() -> bool:
            removed = False
            for path in (self._path(tenant_id, object_id), self.tmp_dir / f"{object_id}.part"):
                try:
                    path.unlink()
                    removed = True
                except FileNotFoundError:
                    pass
            return removed
        return await asyncio.to_thread(_delete)

    async def delete_many(self, tenant_id: str, object_ids: list[str]) -> int:
        """Delete several blobs (and any temp file of theirs) in one thread hop: the
        retention sweep's batches. Returns how many files existed."""
        paths = [self._path(tenant_id, o) for o in object_ids]
        temps = [self.tmp_dir / f"{o}.part" for o in object_ids]

        def _delete() -> int:
            removed = 0
            for path, temp in zip(paths, temps, strict=True):
                for candidate in (path, temp):
                    try:
                        candidate.unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass
            return removed
        return await asyncio.to_thread(_delete)

    async def delete_tenant(self, tenant_id: str) -> None:
        import shutil
        if not _ID_RE.match(tenant_id):
            raise ValueError("tenant id must be a UUID")
        await asyncio.to_thread(shutil.rmtree, self.root / tenant_id, True)

    # -- listing, for orphan scans and offboarding ----------------------------------------
    async def list_tenants(self) -> list[str]:
        def _list() -> list[str]:
            if not self.root.exists():
                return []
            return sorted(d.name for d in self.root.iterdir()
                          if d.is_dir() and _ID_RE.match(d.name))
        return await asyncio.to_thread(_list)

    async def list_objects(self, tenant_id: str) -> list[str]:
        """Every complete blob of a tenant (object ids)."""
        if not _ID_RE.match(tenant_id):
            raise ValueError("tenant id must be a UUID")

        def _list() -> list[str]:
            tenant_dir = self.root / tenant_id
            if not tenant_dir.is_dir():
                return []
            return [f.name for shard in tenant_dir.iterdir() if shard.is_dir()
                    for f in shard.iterdir() if _ID_RE.match(f.name)]
        return await asyncio.to_thread(_list)

    async def incomplete_uploads(self) -> list[tuple[str, float]]:
        """(object id, seconds since last written) of every upload not yet committed:
        the orphan scan discards those no live writer owns."""
        def _list() -> list[tuple[str, float]]:
            import time
            now = time.time()
            out = []
            for path in self.tmp_dir.glob("*.part"):
                try:
                    out.append((path.name.removesuffix(".part"), now - path.stat().st_mtime))
                except FileNotFoundError:
                    continue
            return out
        return await asyncio.to_thread(_list)

    async def discard_incomplete(self, object_id: str) -> bool:
        if not _ID_RE.match(object_id):
            raise ValueError("blob ids must be UUIDs")

        def _discard() -> bool:
            try:
                (self.tmp_dir / f"{object_id}.part").unlink()
                return True
            except FileNotFoundError:
                return False
        return await asyncio.to_thread(_discard)

    # -- salvaging an interrupted stream (live audio crash recovery) ----------------------
    async def open_partial(self, tenant_id: str, object_id: str) -> tuple[str, BinaryIO] | None:
        """What a crashed writer left: ("complete", file) if it had committed, ("partial",
        file) for its uncommitted upload, or None. The caller closes the file."""
        final, tmp = self._path(tenant_id, object_id), self.tmp_dir / f"{object_id}.part"

        def _open() -> tuple[str, BinaryIO] | None:
            for state, path in (("complete", final), ("partial", tmp)):
                try:
                    return state, open(path, "rb")
                except FileNotFoundError:
                    continue
            return None
        return await asyncio.to_thread(_open)

    async def commit_partial(self, tenant_id: str, object_id: str, keep: int,
                             tail: bytes) -> None:
        """Make the blob the first `keep` bytes of the interrupted upload followed by
        `tail`, atomically: a new temp file is written and fsync'd, then renamed into
        place, so a crash during salvage leaves the partial upload as it was (re-runnable).
        """
        final, tmp = self._path(tenant_id, object_id), self.tmp_dir / f"{object_id}.part"
        salvage = self.tmp_dir / f"{object_id}.salvage"

        def _commit() -> None:
            with open(tmp, "rb") as src, open(salvage, "wb") as dst:
                remaining = keep
                while remaining:
                    chunk = src.read(min(remaining, WRITE_BUFFER_BYTES))
                    if not chunk:
                        raise ValueError("the partial upload is shorter than what to keep")
                    dst.write(chunk)
                    remaining -= len(chunk)
                dst.write(tail)
                dst.flush()
                os.fsync(dst.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(salvage, final)
            _fsync_dir(final.parent)
            tmp.unlink(missing_ok=True)
        await asyncio.to_thread(_commit)

    async def ping(self) -> bool:
        def _check() -> bool:
            probe = self.tmp_dir / ".ready"
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        try:
            return await asyncio.to_thread(_check)
        except OSError:
            return False
