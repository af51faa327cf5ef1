"""The key store: small secret objects (tenant root keys, later per-call and per-recording
keys) kept apart from the database and the blobs, and the factories that open a key
store or a blob store from a configured URL. Long because the file and S3 stores each
carry the erasure guarantees below for single and batched writes (the batches are an
erasure's segment rewrites), and splitting them would separate a guarantee from its code.

Invariants:
- `put` returns only once the object is durable (file: temp file fsync'd, renamed, and the
  directory fsync'd; S3: the PUT acknowledged). A reader sees the old or the new value,
  never a mix.
- `delete` erases: afterwards no read, listing or restore of the store itself returns the
  value. So does `put` for the value it replaces (files: the old file is overwritten; S3:
  on a versioned bucket the older versions are deleted). Files are overwritten in place
  and fsync'd before the unlink; on S3 every stored version of the key is deleted, not
  just the newest. `get_many`, `put_many` and `delete_many` are these for many names at
  once (files: one worker-thread trip, one directory fsync for all; S3: concurrent
  requests). (On copy-on-write filesystems and
  SSDs an overwrite may not reach the old blocks: what makes erasure certain is that these
  objects are themselves wrapped under the root key, so a stray copy is ciphertext.)
- Names are paths of plain segments (`tenants/<uuid>.key`): letters, digits, `._-`, never
  starting with a dot, so a name can never climb out of the store or hit a temp file.
- Files are created 0600 in 0700 directories; a file found with group or other bits is
  refused, as the key-file loader does.
- The key store never shares a location with the blobs: configuration refuses the same
  bucket with nested prefixes, or nested directories (gateway.config), so a copy of the
  recordings never carries the keys that open them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from botocore import exceptions as boto_errors

import keys
from gateway.errors import ConfigError
from gateway.store.database import StoreUnavailable
from gateway.store.files import FileBlobStore, _fsync_dir
from gateway.store.s3 import S3BlobStore
from gateway.store.s3_client import (
    _NOT_FOUND_CODES,
    ObjectStoreError,
    Observer,
    S3Client,
    S3Settings,
    error_code,
)
from gateway.store.urls import store_location

__all__ = [
    "KeyStore",
    "KeyStoreError",
    "FileKeyStore",
    "S3KeyStore",
    "open_key_store",
    "open_blob_store",
    "MAX_OBJECT_BYTES",
]

# Key objects are tens to a few thousand bytes (a KMS-wrapped key is a few hundred); 1 MiB
# bounds what one get() can pull into memory whatever sits in the store.
MAX_OBJECT_BYTES = 1024 * 1024
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_MAX_NAME_LENGTH = 512
_FILE_MODE = 0o600
_DIR_MODE = 0o700


# Files fsync'd at once by one put_many or delete_many (see _fsync_all).
FSYNC_THREADS = 16
_fsync_pool: ThreadPoolExecutor | None = None
# Concurrent requests of one get_many/put_many/delete_many (an erasure's segments).
PUT_CONCURRENCY = 16
# HEAD-then-GET rounds before a get gives up on an object that keeps being replaced.
_GET_ATTEMPTS = 5
_REPLACED_OR_GONE = _NOT_FOUND_CODES | {"PreconditionFailed"}


class KeyStoreError(Exception):
    """A key object cannot be read or written as stored (bad mode, too large). The message
    names the object, never its content."""


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME_LENGTH or not all(
            _SEGMENT_RE.match(part) for part in name.split("/")):
        raise ValueError("key name must be '/'-separated segments of letters, digits and "
                         "'._-', not starting with a dot")
    return name


def _check_prefix(prefix: str) -> str:
    """A listing prefix: a name, or the start of one (may end with '/' or be empty)."""
    stripped = prefix.rstrip("/")
    if stripped:
        _check_name(stripped)
    return prefix


class KeyStore(Protocol):
    async def put(self, name: str, data: bytes) -> None: ...
    async def put_many(self, items: dict[str, bytes]) -> None: ...
    async def delete_many(self, names: list[str]) -> int: ...
    async def get(self, name: str) -> bytes | None: ...
    async def get_many(self, names: list[str]) -> list[bytes | None]: ...
    async def delete(self, name: str) -> bool: ...
    async def list(self, prefix: str = "") -> list[str]: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


# -- files ----------------------------------------------------------------------------------
def _make_dirs(root: Path, directory: Path) -> None:
    """Create directory (under root) 0700, fsyncing each new entry's parent so a key whose
    rename was durable cannot lose its directory in a crash."""
    if not root.exists():
        root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        _fsync_dir(root.parent)
    missing = []
    current = directory
    while current != root and not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            continue
        _fsync_dir(path.parent)


def _fsync_all(fds: list[int]) -> None:
    """fsync these files, FSYNC_THREADS at a time: the file system commits concurrent
    fsyncs together (ext4: one journal commit), where one after another each waits for
    its own."""
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    global _fsync_pool
    if _fsync_pool is None:
        _fsync_pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="keystore-fsync")
    for _ in _fsync_pool.map(os.fsync, fds):
        pass


def _shred_files(paths: list[Path]) -> int:
    """TenantRootKey.destroy for many files: each overwritten and fsync'd, all unlinked,
    then each directory fsync'd once. Returns how many existed."""
    found, fds = [], []
    try:
        for path in paths:
            try:
                fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                continue
            fds.append(fd)
            _write_all(fd, b"\0" * os.fstat(fd).st_size)
            found.append(path)
        _fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)
    for path in found:
        path.unlink(missing_ok=True)
    for directory in {path.parent for path in found}:
        _fsync_dir(directory)
    return len(found)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FileKeyStore:
    """Key objects as files under one directory (the embedded default)."""

    # Unit keys are written ahead of use here too (gateway/lifecycle/unit_keys.py): a
    # segment written per ingest batch cost a file write, two fsyncs and a thread hop
    # in front of every batch's database commit (py-spy: ~190 us of CPU per webhook, more
    # than the database writer's). 256 entries are a 12 KiB segment, which an erasure
    # rewrites without the erased entries.
    unit_keys_ahead = 256

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*_check_name(name).split("/"))

    async def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        if len(data) > MAX_OBJECT_BYTES:
            raise KeyStoreError(f"key object {name} is larger than {MAX_OBJECT_BYTES} bytes")
        try:
            await asyncio.to_thread(self._put, path, bytes(data))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                # Nothing was made visible (temp file, then rename): retry later (503).
                raise StoreUnavailable("key store") from None
            raise

    def _put(self, path: Path, data: bytes) -> None:
        _make_dirs(self.root, path.parent)
        # The temp name starts with a dot: never a valid key name, so never listed or read.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     _FILE_MODE)
        try:
            os.fchmod(fd, _FILE_MODE)   # the umask can only narrow open()'s mode
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        # What this put replaces (a unit-key segment rewritten without an erased key) is
        # shredded, not just unlinked: keep a second name for the old file across the
        # rename, then overwrite it. A crash in between leaves a dot-name that
        # `shred_leftovers` overwrites at the next start.
        shred = path.with_name(f".{path.name}.{secrets.token_hex(8)}.shred")
        try:
            os.link(path, shred)
        except FileNotFoundError:
            shred = None
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if shred is not None:
                shred.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        if shred is not None:
            keys.TenantRootKey.destroy(shred)

    async def put_many(self, items: dict[str, bytes]) -> None:
        """`put` of each item, durable together when this returns (an erasure's segment
        rewrites): every temp file written and fsync'd, all renamed, each directory
        fsync'd once, then what they replaced shredded in one pass; not atomic as a
        whole (a crash may leave some renamed and some not, each old or new)."""
        if not items:
            return
        paths = []
        for name, data in items.items():
            if len(data) > MAX_OBJECT_BYTES:
                raise KeyStoreError(
                    f"key object {name} is larger than {MAX_OBJECT_BYTES} bytes")
            paths.append((self._path(name), bytes(data)))
        try:
            await asyncio.to_thread(self._put_many, paths)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise StoreUnavailable("key store") from None
            raise

    def _put_many(self, items: list[tuple[Path, bytes]]) -> None:
        for directory in {path.parent for path, _ in items}:
            _make_dirs(self.root, directory)
        written: list[tuple[Path, Path]] = []
        fds: list[int] = []
        try:
            for path, data in items:
                tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)
                written.append((path, tmp))
                fds.append(fd)
                os.fchmod(fd, _FILE_MODE)
                _write_all(fd, data)
            _fsync_all(fds)
        except BaseException:
            for _, tmp in written:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        # As in `_put`: the replaced file keeps a dot-name until it is shredded.
        shreds: list[Path] = []
        try:
            for path, tmp in written:
                shred = path.with_name(f".{path.name}.{secrets.token_hex(8)}.shred")
                try:
                    os.link(path, shred)
                    shreds.append(shred)
                except FileNotFoundError:
                    pass
                os.replace(tmp, path)
        except BaseException:
            for _, tmp in written:
                tmp.unlink(missing_ok=True)
            raise
        for directory in {path.parent for path, _ in items}:
            _fsync_dir(directory)
        _shred_files(shreds)

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._get, name, self._path(name))

    async def get_many(self, names: list[str]) -> list[bytes | None]:
        """`get` of each name, in order, in one trip to a worker thread."""
        paths = [(name, self._path(name)) for name in names]
        return await asyncio.to_thread(lambda: [self._get(n, p) for n, p in paths])

    def _get(self, name: str, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyStoreError(f"key object {name} is not a regular file")
            if stat.S_IMODE(st.st_mode) & ~_FILE_MODE:
                raise KeyStoreError(f"key object {name} has permissions wider than 0600")
            if st.st_size > MAX_OBJECT_BYTES:
                raise KeyStoreError(f"key object {name} is larger than {MAX_OBJECT_BYTES} bytes")
            chunks = []
            while chunk := os.read(fd, MAX_OBJECT_BYTES + 1):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    async def delete(self, name: str) -> bool:
        # The key files' own crypto-shred: overwrite in place, fsync, unlink, fsync the
        # directory (see the module docstring for what an overwrite can promise).
        return await asyncio.to_thread(keys.TenantRootKey.destroy, self._path(name))

    async def delete_many(self, names: list[str]) -> int:
        """`delete` of each name, the overwrites fsync'd one by one and each directory
        once; how many existed."""
        paths = [self._path(name) for name in names]
        return await asyncio.to_thread(_shred_files, paths) if paths else 0

    async def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    async def shred_leftovers(self) -> int:
        """Overwrite and unlink replaced files a crash left under their dot-names."""
        def run() -> int:
            found = 0
            if self.root.is_dir():
                for path in self.root.rglob(".*.shred"):
                    found += keys.TenantRootKey.destroy(path)
            return found
        return await asyncio.to_thread(run)

    def _list(self, prefix: str) -> list[str]:
        names = []
        if not self.root.is_dir():
            return names
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            relative = Path(directory).relative_to(self.root)
            for file in files:
                if file.startswith("."):
                    continue
                name = (relative / file).as_posix()
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)

    async def ping(self) -> bool:
        def _check() -> bool:
            _make_dirs(self.root, self.root)
            probe = self.root / f".ping.{secrets.token_hex(4)}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            os.close(fd)
            probe.unlink()
            return True
        try:
            return await asyncio.to_thread(_check)
        except OSError:
            return False

    async def close(self) -> None:
        return None


# -- S3 -------------------------------------------------------------------------------------
class S3KeyStore(S3Client):
    """Key objects in an S3 bucket under a prefix (a different bucket or prefix from the
    blobs, which configuration enforces)."""

    COMPONENT = "key store"
    # Unit keys are written this many at a time ahead of use (gateway/lifecycle/unit_keys.py):
    # a PUT costs a network request and the server's CPU (SeaweedFS ~3.7 ms a PUT, more
    # than the gateway's whole webhook), so one per ingest batch limited the scale-out
    # stack. 1024 entries are a 48 KiB segment.
    unit_keys_ahead = 1024

    def _key(self, name: str) -> str:
        return f"{self._base()}{_check_name(name)}"

    async def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        if len(data) > MAX_OBJECT_BYTES:
            raise KeyStoreError(f"key object {name} is larger than {MAX_OBJECT_BYTES} bytes")
        # S3 answers a PUT only once the object is stored durably (read-after-write
        # consistent since December 2020 on AWS; SeaweedFS and MinIO likewise).
        response = await self._call("put_object", Key=key, Body=bytes(data))
        # On a versioned bucket the PUT keeps what it replaced as an older version (a
        # unit-key segment before an erasure): remove every version but this one.
        version = response.get("VersionId")
        if version not in (None, "null"):
            await self._delete_versions(key, keep=version)

    async def put_many(self, items: dict[str, bytes]) -> None:
        """`put` of each item, PUT_CONCURRENCY at a time; done when all are."""
        gate = asyncio.Semaphore(PUT_CONCURRENCY)

        async def one(name: str, data: bytes) -> None:
            async with gate:
                await self.put(name, data)
        await asyncio.gather(*(one(n, d) for n, d in items.items()))

    async def get_many(self, names: list[str]) -> list[bytes | None]:
        """`get` of each name, in order, PUT_CONCURRENCY at a time."""
        gate = asyncio.Semaphore(PUT_CONCURRENCY)

        async def one(name: str) -> bytes | None:
            async with gate:
                return await self.get(name)
        return list(await asyncio.gather(*(one(n) for n in names)))

    async def delete_many(self, names: list[str]) -> int:
        gate = asyncio.Semaphore(PUT_CONCURRENCY)

        async def one(name: str) -> bool:
            async with gate:
                return await self.delete(name)
        return sum(await asyncio.gather(*(one(n) for n in names)))

    async def get(self, name: str) -> bytes | None:
        key = self._key(name)
        # A unit-key segment may be rewritten by another replica between the HEAD and the
        # GET (the GET's If-Match then fails): read it again, a few times.
        for _ in range(_GET_ATTEMPTS):
            try:
                head = await self._call("head_object", Key=key)
            except boto_errors.ClientError:
                return None
            if int(head["ContentLength"]) > MAX_OBJECT_BYTES:
                raise KeyStoreError(f"key object {name} is larger than {MAX_OBJECT_BYTES} bytes")
            try:
                response = await self._call("get_object", Key=key, IfMatch=head["ETag"],
                                            expected=_REPLACED_OR_GONE)
            except boto_errors.ClientError as exc:
                if error_code(exc) == "PreconditionFailed":
                    continue    # replaced between the two calls
                return None     # deleted between the two calls
            return await self._read_body("get_object", response)
        raise KeyStoreError(f"key object {name} kept changing while it was read")

    async def delete(self, name: str) -> bool:
        """Delete the key and every stored version of it; True if anything existed."""
        key = self._key(name)
        existed = False
        try:
            await self._call("head_object", Key=key)
            existed = True
        except boto_errors.ClientError:
            pass
        await self._call("delete_object", Key=key)
        # On a versioned bucket the delete above only adds a delete marker; the value
        # would still be there as an old version. Remove every version and marker.
        return await self._delete_versions(key) or existed

    async def _delete_versions(self, key: str, keep: str | None = None) -> bool:
        """Delete every stored version and delete marker of `key`, or with `keep` only
        those older than version `keep` (a newer one is another writer's, which must
        stay: deleting it could leave no version at all). True if a value version was
        among them."""
        found = False
        # S3 lists a key's versions newest first; with `keep`, delete from it on.
        older = keep is None
        kept_at = None
        try:
            async for page in self._pages("list_object_versions", Prefix=key):
                doomed = []
                for entry in page.get("Versions", []):
                    version = entry.get("VersionId")
                    if entry["Key"] != key or version in (None, "null"):
                        continue
                    if version == keep:
                        older, kept_at = True, entry.get("LastModified")
                    elif older:
                        doomed.append(version)
                        found = True
                for entry in page.get("DeleteMarkers", []):
                    version = entry.get("VersionId")
                    if entry["Key"] == key and version not in (None, "null") and (
                            keep is None or (kept_at is not None
                                             and entry.get("LastModified") is not None
                                             and entry["LastModified"] < kept_at)):
                        doomed.append(version)
                for version in doomed:
                    await self._call("delete_object", Key=key, VersionId=version)
        except ObjectStoreError as exc:
            # A store without versioning support (answers NotImplemented) keeps no old
            # versions to remove; anything else is a real failure.
            if "NotImplemented" not in str(exc):
                raise
        return found

    async def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        base = self._base()
        names = []
        async for page in self._pages("list_objects_v2", Prefix=base + prefix):
            names.extend(item["Key"][len(base):] for item in page.get("Contents", []))
        return sorted(names)


# -- factories ------------------------------------------------------------------------------
def _location(url: str, default_dir: Path, what: str) -> tuple[str, str]:
    try:
        return store_location(url, Path(default_dir))
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _bucket_prefix(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.partition("/")
    return bucket, prefix


def open_key_store(url: str, default_dir: Path, s3: S3Settings | None = None, *,
                   observe: Observer | None = None) -> FileKeyStore | S3KeyStore:
    """The key store `[storage] key_store_url` names: files (empty URL: `default_dir`,
    or file:///dir) or s3://bucket/prefix. No I/O yet: S3 connects on first use."""
    kind, location = _location(url, default_dir, "storage.key_store_url")
    if kind == "file":
        return FileKeyStore(Path(location))
    bucket, prefix = _bucket_prefix(location)
    try:
        return S3KeyStore(bucket, prefix, endpoint_url=s3.endpoint_url if s3 else None,
                          region=s3.region if s3 else None, observe=observe)
    except ValueError as exc:
        raise ConfigError(f"storage.key_store_url: {exc}") from None


def open_blob_store(url: str, default_dir: Path, s3: S3Settings | None = None, *,
                    observe: Observer | None = None) -> FileBlobStore | S3BlobStore:
    """The blob store `[storage] blob_url` names, as open_key_store does; a file store's
    directories are created (FileBlobStore.setup)."""
    kind, location = _location(url, default_dir, "storage.blob_url")
    if kind == "file":
        store = FileBlobStore(Path(location))
        store.setup()
        return store
    bucket, prefix = _bucket_prefix(location)
    try:
        return S3BlobStore(bucket, prefix, endpoint_url=s3.endpoint_url if s3 else None,
                           region=s3.region if s3 else None, observe=observe)
    except ValueError as exc:
        raise ConfigError(f"storage.blob_url: {exc}") from None
