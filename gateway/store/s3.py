"""S3-compatible object storage: the scale-out blob store (AWS S3, SeaweedFS, MinIO, ...).

Implements the blob-store seam (gateway.store.blobs.BlobStore), as files.py does on disk.

Invariants:
- Keys are `<prefix>/<tenant id>/<object id>`: one tenant's blobs are one listing prefix, so
  the orphan scan and offboarding list per tenant without reading anyone else's keys. A
  live stream's checkpoint tails sit under `<prefix>/.tails/<tenant>/<object>/` until the
  blob is committed or discarded (S3BlobSink says why).
- An object is visible only when complete. A blob smaller than one part is a single
  PutObject at commit; a larger one is a multipart upload that only commit() completes.
  abort() aborts it; an upload abandoned by a crash stays invisible and is listed by
  `incomplete_uploads()` and removed by `discard_incomplete()`.
- Memory per upload is bounded whatever the blob size: one part being filled plus at most
  PARTS_IN_FLIGHT parts being sent. Reads fetch byte ranges, never whole objects.
- Only ciphertext is stored (keys.BlobWriter output), so integrity is the AEAD's job: a
  corrupted or truncated object fails keys.BlobReader, not silently.
- Credentials come only from the standard AWS chain (environment variables, shared
  config/profile, instance or container role). Nothing here accepts a key, so none can be
  put in the TOML.
- A backend that cannot be reached raises StoreUnavailable (retry later: the web layer maps
  it to 503); any other refusal raises ObjectStoreError. Messages name the operation and
  the bucket, never credentials or object contents.

Why aiobotocore (not obstore): it exposes every S3 call we need one by one (CreateMultipart-
Upload / UploadPart / Complete / Abort, ListMultipartUploads for the orphan scan,
ListObjectVersions for the key store's erase), runs on the aiohttp the gateway already
uses, and is the long-maintained async face of botocore; obstore's writer hides multipart
uploads and cannot list or abort abandoned ones.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import exceptions as boto_errors

from gateway.store import database
from gateway.store.files import _ID_RE

log = logging.getLogger("gateway.store")

__all__ = [
    "ObjectStoreError",
    "StoreUnavailable",
    "S3Settings",
    "S3BlobStore",
    "S3BlobSink",
    "S3RangeReader",
    "PART_SIZE",
]

# Multipart part size. S3 requires every part but the last to be 5 MiB to 5 GiB and allows
# 10,000 parts (AWS S3 user guide, "Amazon S3 multipart upload limits"); 8 MiB is the AWS
# CLI's and boto3's default multipart chunk size, and gives objects up to 78 GiB.
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
# Parts sent while the next one fills: two overlap the network with encryption; more would
# only add memory (each is PART_SIZE bytes held until the store acknowledges it).
PARTS_IN_FLIGHT = 2
# Range reads: the first fetch after a seek asks for READ_AHEAD_MIN (a few 64 KiB blob
# segments, so a small Range request costs one round trip and little more); each
# sequential fetch doubles it up to READ_AHEAD_MAX, so a whole download is a few hundred
# requests, not thousands, and never holds more than two windows in memory.
READ_AHEAD_MIN = 256 * 1024
READ_AHEAD_MAX = 8 * 1024 * 1024
# Windows fetched ahead in the background while a sequential reader consumes one. One
# hides the round trip; a second gained nothing measurable against SeaweedFS on 2 cores
# (the server was the limit) and would cost another window of memory.
PREFETCH_WINDOWS = 1
# Where checkpoint tails live under the prefix (see S3BlobSink): not a UUID, so never taken
# for a tenant by listings.
TAILS = ".tails"
# DeleteObjects takes at most 1,000 keys per request (S3 API reference, DeleteObjects).
DELETE_BATCH = 1000
# A request path must fail fast when the store is down (the client gets 503 and retries),
# rather than hang for botocore's 60-second default connect timeout.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
MAX_ATTEMPTS = 3
# Bucket names: 3-63 characters of lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit (AWS S3 user guide, "Bucket naming rules").
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# S3 error codes that mean "try again later" rather than "you asked for something wrong".
_TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError",
                              "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
                              "ThrottlingException", "503", "500", "502", "504"})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})


class ObjectStoreError(Exception):
    """The object store refused or failed an operation (bad bucket, denied, missing
    credentials...). The message names the operation and bucket, nothing secret."""


class StoreUnavailable(ObjectStoreError, database.StoreUnavailable):
    """The object store could not be reached or answered 'try later' (5xx, throttling, a
    timeout): nothing was half-done that a retry would not redo. It is the seam's
    StoreUnavailable too, so the web layer answers 503 with Retry-After naming only the
    component; str() (for logs) names the operation and bucket."""

    def __init__(self, component: str, message: str) -> None:
        database.StoreUnavailable.__init__(self, component)
        self.args = (message,)


# (operation, seconds, outcome) with outcome "ok" | "not_found" | "unavailable" | "error":
# the hook the metrics layer gives to count S3 latency and errors by operation.
Observer = Callable[[str, float, str], None]


class S3Settings(Protocol):
    """Where the S3 API is: `[storage.s3]` (gateway.config.S3Config). Credentials are
    deliberately not here."""
    endpoint_url: str               # empty: AWS; e.g. "http://127.0.0.1:8333" for SeaweedFS
    region: str


def _error_code(exc: boto_errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_not_found(exc: BaseException) -> bool:
    if not isinstance(exc, boto_errors.ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _error_code(exc) in _NOT_FOUND_CODES or status == 404


class _S3Client:
    """One lazily opened aiobotocore client, its error mapping and its observer. Shared by
    the blob store and the key store (two instances, two buckets or prefixes). The client
    belongs to the event loop of its first use."""

    COMPONENT = "object store"      # named in 503 answers: "the blob store is not available"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, observe: Observer | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 read_timeout: float = READ_TIMEOUT_SECONDS,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if not _BUCKET_RE.match(bucket):
            raise ValueError("bucket must be 3-63 characters: a-z, 0-9, '.', '-'")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.component = self.COMPONENT
        self.endpoint_url = endpoint_url or None
        self.region = region or "us-east-1"
        self._observe = observe
        self._config = AioConfig(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # A custom endpoint (SeaweedFS, MinIO) serves buckets as paths, not subdomains.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            # Checksums only where S3 requires them (DeleteObjects): the content is AEAD
            # ciphertext whose every segment is authenticated on read, and a CRC over each
            # part would cost as much CPU as the encryption itself.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Up to PARTS_IN_FLIGHT per upload plus reads: a handful per replica.
            max_pool_connections=32)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                # No credentials passed: botocore reads AWS_ACCESS_KEY_ID / _SECRET_ACCESS_KEY
                # / _SESSION_TOKEN, AWS_PROFILE and the shared files, or an instance role.
                self._client = await stack.enter_async_context(get_session().create_client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                    config=self._config))
                self._stack = stack
        return self._client

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> _S3Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _translate(self, operation: str, exc: BaseException) -> ObjectStoreError:
        where = f"{operation} on bucket {self.bucket}"
        if isinstance(exc, boto_errors.ClientError):
            code = _error_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in _TRANSIENT_CODES or status >= 500:
                return StoreUnavailable(self.component,
                                        f"{where}: object store answered {code or status}")
            return ObjectStoreError(f"{where}: refused ({code or status})")
        if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
            return ObjectStoreError(f"{where}: no AWS credentials in the environment or profile")
        if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError
                      | aiohttp.ClientError | TimeoutError | OSError):
            return StoreUnavailable(self.component,
                                    f"{where}: object store unreachable ({type(exc).__name__})")
        return ObjectStoreError(f"{where}: {type(exc).__name__}")

    def _record(self, operation: str, started: float, outcome: str) -> None:
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, outcome)

    async def _call(self, operation: str, *, expected: frozenset[str] = _NOT_FOUND_CODES,
                    **kwargs: Any) -> dict[str, Any]:
        """One S3 call by its botocore name. A ClientError whose code is in `expected`
        (default: not found) passes through unchanged, since callers decide what absence
        means; every other failure is mapped to ObjectStoreError / StoreUnavailable."""
        started = time.monotonic()
        try:
            client = await self._get_client()
            result = await getattr(client, operation)(Bucket=self.bucket, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _is_not_found(exc) or (isinstance(exc, boto_errors.ClientError)
                                      and _error_code(exc) in expected):
                self._record(operation, started, "not_found")
                raise
            raise self._failed(operation, started, exc) from exc
        self._record(operation, started, "ok")
        return result

    def _failed(self, operation: str, started: float, exc: BaseException) -> ObjectStoreError:
        mapped = self._translate(operation, exc)
        self._record(operation, started,
                     "unavailable" if isinstance(mapped, StoreUnavailable) else "error")
        return mapped

    async def _pages(self, operation: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """The pages of a listing call, with the same error mapping as `_call`."""
        started = time.monotonic()
        try:
            client = await self._get_client()
            async for page in client.get_paginator(operation).paginate(
                    Bucket=self.bucket, **kwargs):
                yield page
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ObjectStoreError):
                raise
            raise self._failed(operation, started, exc) from exc
        self._record(operation, started, "ok")

    async def _read_body(self, operation: str, response: dict[str, Any]) -> bytes:
        try:
            async with response["Body"] as body:
                return await body.read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(operation, exc) from exc

    async def ping(self) -> bool:
        """True when the bucket answers with these credentials (readiness)."""
        try:
            await self._call("head_bucket")
            return True
        except (ObjectStoreError, boto_errors.ClientError):
            return False


class S3BlobSink:
    """One blob being written. `write` fills a part buffer and sends each full part in the
    background; `commit` makes the object visible; `abort` leaves nothing visible.

    One PART_SIZE bytearray is allocated per sink and filled in place; a full part leaves
    as one `bytes` copy (aiohttp slices a bytearray body, copying it again, but sends a
    whole `bytes` as it is). Memory is the buffer plus at most PARTS_IN_FLIGHT parts being
    sent (each with what the socket has not taken yet): ~40 MiB whatever the blob size.

    Durability checkpoints (`sync`, live streams): S3 has no append and takes parts under
    5 MiB only as the last one, so the buffered bytes not yet in a part are written as a
    small *tail* object `<prefix>/.tails/<tenant>/<object>/<offset>` holding the bytes
    since the previous checkpoint. Parts plus tails hold everything `sync` reported;
    tails inside sent parts are deleted as parts land, and all at commit or abort."""

    def __init__(self, store: S3BlobStore, key: str, tail_prefix: str) -> None:
        self._store = store
        self._key = key
        self._tail_prefix = tail_prefix
        self._part = bytearray(PART_SIZE)
        self._fill = 0
        self._upload_id: str | None = None
        self._next_part = 1
        self._parts: list[dict[str, Any]] = []
        self._in_flight: list[asyncio.Task[int]] = []
        self._sent = 0          # bytes handed to parts (sent or in flight)
        self._durable = 0       # bytes in parts the store has acknowledged
        self._tails: list[tuple[int, int, str]] = []    # (start, end, key) written
        self._tail_end = 0
        self._closed = False
        self.bytes_written = 0

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise RuntimeError("blob sink is closed")
        with memoryview(data) as view:
            view = view.cast("B")
            self.bytes_written += len(view)
            while view:
                take = min(len(view), PART_SIZE - self._fill)
                self._part[self._fill:self._fill + take] = view[:take]
                self._fill += take
                view = view[take:]
                if self._fill == PART_SIZE:
                    await self._send_part()

    async def _send_part(self) -> None:
        """Send the part buffer (whole, or cut to what it holds) and start a new one."""
        # Wait for room first, so at most PARTS_IN_FLIGHT parts plus the buffer are held.
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            await self._settle(self._in_flight.pop(0))
        if self._next_part > MAX_PARTS:
            raise ObjectStoreError(f"blob exceeds {MAX_PARTS} parts of {PART_SIZE} bytes")
        if self._upload_id is None:
            created = await self._store._call("create_multipart_upload", Key=self._key)
            self._upload_id = created["UploadId"]
        part = self._buffered(0)
        self._sent += self._fill
        self._fill = 0
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.append(asyncio.create_task(self._upload(number, part)))

    def _buffered(self, start: int) -> bytes:
        with memoryview(self._part) as view:
            return bytes(view[start:self._fill])

    async def _upload(self, number: int, part: bytes) -> int:
        answer = await self._store._call("upload_part", Key=self._key, UploadId=self._upload_id,
                                         PartNumber=number, Body=part)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        return len(part)

    async def _settle(self, task: asyncio.Task[int]) -> None:
        self._durable += await task

    async def _settle_all(self) -> None:
        while self._in_flight:
            await self._settle(self._in_flight.pop(0))

    async def sync(self) -> int:
        """A live stream's durability checkpoint: everything written so far becomes
        durable (a part if 5 MiB or more is buffered, else a tail object with the bytes
        since the last checkpoint). Returns the bytes durable, i.e. `bytes_written`."""
        if self._closed:
            raise RuntimeError("blob sink is closed")
        if self._fill >= MIN_PART_SIZE:
            await self._send_part()
        await self._settle_all()
        end = self._sent + self._fill
        if self._fill and end > self._tail_end:
            start = max(self._sent, self._tail_end)
            key = f"{self._tail_prefix}{start:020d}"
            await self._store._call("put_object", Key=key, Body=self._buffered(start - self._sent))
            self._tails.append((start, end, key))
            self._tail_end = end
        # Tails now wholly inside acknowledged parts are no longer needed.
        obsolete = [t for t in self._tails if t[1] <= self._durable]
        if obsolete:
            self._tails = [t for t in self._tails if t[1] > self._durable]
            await self._store._forget_tails([key for _, _, key in obsolete])
        return max(self._durable, self._tail_end)

    async def commit(self) -> None:
        """Make the object visible, complete, under its key. Raises on failure; the caller
        then calls abort()."""
        if self._closed:
            raise RuntimeError("blob sink is closed")
        if self._upload_id is None:
            # Smaller than one part: one PutObject, atomic by itself.
            await self._store._call("put_object", Key=self._key, Body=self._buffered(0))
        else:
            if self._fill:
                await self._send_part()
            await self._settle_all()
            parts = sorted(self._parts, key=lambda p: p["PartNumber"])
            await self._store._call("complete_multipart_upload", Key=self._key,
                                    UploadId=self._upload_id,
                                    MultipartUpload={"Parts": parts})
        self._part, self._fill = bytearray(), 0
        self._durable = self.bytes_written
        self._closed = True
        await self._store._forget_tails([key for _, _, key in self._tails])
        self._tails = []

    async def abort(self) -> None:
        """Discard the upload. Never raises for the store's sake: this runs while another
        error is being handled, and an upload it could not abort is invisible anyway and
        removed by the next orphan scan (`discard_incomplete`)."""
        self._closed = True
        self._part, self._fill = bytearray(), 0
        tasks, self._in_flight = self._in_flight, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        upload_id, self._upload_id = self._upload_id, None
        try:
            if upload_id is not None:
                await self._store._abort_upload(self._key, upload_id)
            await self._store._forget_tails([key for _, _, key in self._tails])
            self._tails = []
        except ObjectStoreError as exc:
            log.warning("could not abort an upload; the orphan scan will: %s", exc)


class S3RangeReader:
    """A seekable, read-only, *blocking* file object over one stored object, for
    keys.BlobReader.read_range running in a worker thread (asyncio.to_thread).

    A read that misses the buffer fetches one byte range on the store's event loop: a
    small one after a seek (a Range request costs little more than it covers), doubling
    while reading goes on sequentially, and then the next window is fetched in the
    background while this one is consumed, so a whole download overlaps network and
    decryption. Memory: the current window plus PREFETCH_WINDOWS pending: 16 MiB.
    Every fetch is pinned to the ETag seen at open, so a reader never mixes two versions
    of an object. Reads served from the buffer never block: the header read that
    keys.BlobReader.read_range does before its first segment may run on the loop."""

    def __init__(self, store: S3BlobStore, key: str, size: int, etag: str | None,
                 loop: asyncio.AbstractEventLoop, prefetched: bytes = b"") -> None:
        self._store = store
        self._key = key
        self._size = size
        self._etag = etag
        self._loop = loop
        self._pos = 0
        # Bytes [0, len(prefetched)) came with open(): reading on from there is sequential.
        self._buffer = prefetched
        self._buffer_start = 0
        self._window = READ_AHEAD_MIN
        self._last_fetch_end = len(prefetched) if prefetched else -1
        # Background fetches of the next windows, in order: (start, end, future).
        self._pending: collections.deque[tuple[int, int, concurrent.futures.Future[bytes]]] = (
            collections.deque())
        self.closed = False
        # Range GETs made and bytes they returned, counting open()'s (tests and metrics).
        self.requests = 1 if prefetched else 0
        self.bytes_fetched = len(prefetched)

    @property
    def size(self) -> int:
        return self._size

    @property
    def etag(self) -> str | None:
        return self._etag

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed reader")
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed reader")
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, self._size - self._pos)
        if n <= 0:
            return b""
        offset = self._pos - self._buffer_start
        if 0 <= offset and offset + n <= len(self._buffer):
            data = self._buffer[offset:offset + n]          # the common case: one copy
        else:
            head = self._buffer[offset:] if 0 <= offset < len(self._buffer) else b""
            fetched = self._refill(self._pos + len(head), n - len(head))
            data = head + fetched[:n - len(head)]
        self._pos += len(data)
        return data

    def _refill(self, start: int, want: int) -> bytes:
        """Make [start, ...) the buffer, covering at least `want` bytes; return it."""
        sequential = start == self._last_fetch_end
        # Sequential reading grows the read-ahead; a jump starts it small again.
        self._window = min(self._window * 2, READ_AHEAD_MAX) if sequential else READ_AHEAD_MIN
        pending = self._pending
        if pending and pending[0][0] == start and pending[0][1] >= start + want:
            data = self._wait(pending.popleft()[2])
        else:
            self._cancel_pending()
            data = self._wait(self._submit(start, min(self._size, start + max(want,
                                                                          self._window))))
        self._buffer, self._buffer_start = data, start
        self._last_fetch_end = start + len(data)
        if sequential:
            ahead = pending[-1][1] if pending else self._last_fetch_end
            while len(pending) < PREFETCH_WINDOWS and ahead < self._size:
                end = min(self._size, ahead + self._window)
                pending.append((ahead, end, self._submit(ahead, end)))
                ahead = end
        return data

    def _cancel_pending(self) -> None:
        while self._pending:
            self._pending.popleft()[2].cancel()

    def _submit(self, start: int, end: int) -> concurrent.futures.Future[bytes]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("S3RangeReader blocks: read it from a worker thread "
                               "(asyncio.to_thread), not on the event loop")
        return asyncio.run_coroutine_threadsafe(self._get(start, end), self._loop)

    async def _get(self, start: int, end: int) -> bytes:
        data = await self._store._get_range(self._key, start, end, self._etag)
        self.requests += 1
        self.bytes_fetched += len(data)
        return data

    @staticmethod
    def _wait(future: concurrent.futures.Future[bytes]) -> bytes:
        return future.result()

    def close(self) -> None:
        self.closed = True
        self._buffer = b""
        self._cancel_pending()

    def __enter__(self) -> S3RangeReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class S3BlobStore(_S3Client):
    """Recording ciphertext in one bucket under one prefix: `<prefix>/<tenant>/<object>`."""

    COMPONENT = "blob store"

    def _key(self, tenant_id: str, object_id: str) -> str:
        # Ids come from our own database, but check anyway: a key is no place for surprises.
        if not (_ID_RE.match(tenant_id) and _ID_RE.match(object_id)):
            raise ValueError("blob ids must be UUIDs")
        return f"{self._base()}{tenant_id}/{object_id}"

    def _tenant_prefix(self, tenant_id: str) -> str:
        if not _ID_RE.match(tenant_id):
            raise ValueError("tenant id must be a UUID")
        return f"{self._base()}{tenant_id}/"

    def _parse_key(self, key: str) -> tuple[str, str] | None:
        """(tenant, object) of one of our keys, None for anything else under the prefix."""
        rest = key[len(self._base()):] if key.startswith(self._base()) else None
        if rest is None:
            return None
        tenant_id, _, object_id = rest.partition("/")
        if _ID_RE.match(tenant_id) and _ID_RE.match(object_id):
            return tenant_id, object_id
        return None

    def setup(self) -> None:
        """Nothing to create locally (FileBlobStore API parity); the bucket must exist."""

    def _tail_prefix(self, tenant_id: str, object_id: str | None = None) -> str:
        """Where a sink's checkpoint tails live: beside the blobs, under a name that is
        never a tenant id, so listings of complete objects never see them."""
        self._tenant_prefix(tenant_id)
        return f"{self._base()}{TAILS}/{tenant_id}/" + (f"{object_id}/" if object_id else "")

    async def create(self, tenant_id: str, object_id: str) -> S3BlobSink:
        return S3BlobSink(self, self._key(tenant_id, object_id),
                          self._tail_prefix(tenant_id, object_id))

    async def _list_keys(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self._pages("list_objects_v2", Prefix=prefix):
            items.extend(page.get("Contents", []))
        return items

    async def _forget_tails(self, keys: list[str]) -> None:
        if keys:
            await self._delete_keys(keys)

    def _parse_tail(self, key: str) -> tuple[str, str, int] | None:
        """(tenant, object, offset) of a tail key, None for anything else."""
        head = f"{self._base()}{TAILS}/"
        if not key.startswith(head):
            return None
        tenant_id, _, rest = key[len(head):].partition("/")
        object_id, _, offset = rest.partition("/")
        if _ID_RE.match(tenant_id) and _ID_RE.match(object_id) and offset.isdigit():
            return tenant_id, object_id, int(offset)
        return None

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._call("head_object", Key=key)
        except boto_errors.ClientError:
            return None

    async def open(self, tenant_id: str, object_id: str) -> S3RangeReader:
        """A blocking, seekable reader (see S3RangeReader); FileNotFoundError if absent.
        One ranged GET here learns the size and ETag and prefetches the blob header, so
        the reader's first reads (header, size) need no I/O and work on the loop too."""
        key = self._key(tenant_id, object_id)
        try:
            response = await self._call("get_object", Key=key,
                                        Range=f"bytes=0-{READ_AHEAD_MIN - 1}",
                                        expected=frozenset({"InvalidRange"}))
        except boto_errors.ClientError as exc:
            if _error_code(exc) != "InvalidRange":
                raise FileNotFoundError(f"no blob {object_id}") from exc
            # A range on an empty object is unsatisfiable (RFC 9110 section 15.5.17).
            head = await self._head(key)
            if head is None:
                raise FileNotFoundError(f"no blob {object_id}") from exc
            return S3RangeReader(self, key, 0, head.get("ETag"), asyncio.get_running_loop())
        content_range = response.get("ContentRange") or ""
        size = (int(content_range.rpartition("/")[2]) if "/" in content_range
                else int(response["ContentLength"]))
        try:
            async with response["Body"] as body:
                # At most the prefetch, even from a server that ignored the Range header.
                head_bytes = await body.read(READ_AHEAD_MIN)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate("get_object", exc) from exc
        return S3RangeReader(self, key, size, response.get("ETag"),
                             asyncio.get_running_loop(), prefetched=head_bytes)

    async def _get_range(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        extra = {"IfMatch": etag} if etag else {}
        try:
            response = await self._call("get_object", Key=key,
                                        Range=f"bytes={start}-{end - 1}", **extra)
        except boto_errors.ClientError as exc:
            raise FileNotFoundError("blob vanished while being read") from exc
        return await self._read_body("get_object", response)

    async def exists(self, tenant_id: str, object_id: str) -> bool:
        return await self._head(self._key(tenant_id, object_id)) is not None

    async def size(self, tenant_id: str, object_id: str) -> int:
        head = await self._head(self._key(tenant_id, object_id))
        if head is None:
            raise FileNotFoundError(f"no blob {object_id}")
        return int(head["ContentLength"])

    async def delete(self, tenant_id: str, object_id: str) -> bool:
        """Delete one blob and any checkpoint tails of it; True if the blob existed. (An
        unfinished upload of it is left to the orphan scan: it is invisible, and its
        writer aborts it itself when it can.)"""
        key = self._key(tenant_id, object_id)
        existed = await self._head(key) is not None
        if existed:
            await self._call("delete_object", Key=key)
        tails = await self._list_keys(self._tail_prefix(tenant_id, object_id))
        await self._forget_tails([item["Key"] for item in tails])
        return existed

    async def delete_many(self, tenant_id: str, object_ids: list[str]) -> int:
        """Delete several blobs of one tenant, 1,000 per request (the retention sweep's
        batches). Returns how many keys the store confirmed deleted: S3 confirms a key that
        was already absent too, so this counts requests served, not objects found."""
        keys = [self._key(tenant_id, o) for o in object_ids]
        deleted = await self._delete_keys(keys)
        wanted = set(object_ids)
        tails = [item["Key"] for item in await self._list_keys(self._tail_prefix(tenant_id))
                 if (self._parse_tail(item["Key"]) or ("", "", 0))[1] in wanted]
        await self._forget_tails(tails)
        return deleted

    async def _delete_keys(self, keys: list[str]) -> int:
        deleted = 0
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i:i + DELETE_BATCH]
            answer = await self._call("delete_objects", Delete={
                "Objects": [{"Key": k} for k in batch], "Quiet": False})
            if answer.get("Errors"):
                codes = sorted({str(e.get("Code")) for e in answer["Errors"]})
                raise ObjectStoreError(f"delete_objects on bucket {self.bucket}: "
                                       f"{len(answer['Errors'])} keys refused ({', '.join(codes)})")
            deleted += len(answer.get("Deleted", []))
        return deleted

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete every blob of a tenant, its checkpoint tails, and abort its unfinished
        uploads (offboarding)."""
        prefix = self._tenant_prefix(tenant_id)
        for listed in (prefix, self._tail_prefix(tenant_id)):
            batch: list[str] = []
            async for page in self._pages("list_objects_v2", Prefix=listed):
                batch.extend(item["Key"] for item in page.get("Contents", []))
                if len(batch) >= DELETE_BATCH:
                    await self._delete_keys(batch)
                    batch = []
            if batch:
                await self._delete_keys(batch)
        async for page in self._pages("list_multipart_uploads", Prefix=prefix):
            for upload in page.get("Uploads", []):
                await self._abort_upload(upload["Key"], upload["UploadId"])

    # -- listing, for orphan scans and offboarding ----------------------------------------
    async def iter_objects(self, tenant_id: str) -> AsyncIterator[str]:
        """The object ids stored for a tenant (complete objects only), in key order, one
        listing page (1,000 keys) in memory at a time."""
        async for page in self._pages("list_objects_v2", Prefix=self._tenant_prefix(tenant_id)):
            for item in page.get("Contents", []):
                parsed = self._parse_key(item["Key"])
                if parsed is not None:
                    yield parsed[1]

    async def list_objects(self, tenant_id: str) -> list[str]:
        """Every complete blob of a tenant (object ids), in key order."""
        return [object_id async for object_id in self.iter_objects(tenant_id)]

    async def list_tenants(self) -> list[str]:
        """Tenant ids under the prefix. A tenant whose objects were all deleted may still
        be listed for a while (SeaweedFS removes empty folders lazily): callers go on to
        `list_objects`, which is exact."""
        tenants: list[str] = []
        async for page in self._pages("list_objects_v2", Prefix=self._base(), Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self._base()):].rstrip("/")
                if _ID_RE.match(name):
                    tenants.append(name)
        return sorted(tenants)

    async def _uploads(self, prefix: str | None = None
                       ) -> AsyncIterator[tuple[str, str, str, datetime]]:
        """(object id, key, upload id, started) of every unfinished upload of ours."""
        async for page in self._pages("list_multipart_uploads",
                                      Prefix=self._base() if prefix is None else prefix):
            for upload in page.get("Uploads", []):
                parsed = self._parse_key(upload["Key"])
                if parsed is not None:
                    yield parsed[1], upload["Key"], upload["UploadId"], upload["Initiated"]

    async def _tails(self) -> AsyncIterator[tuple[str, str, int, dict[str, Any]]]:
        """(tenant, object, offset, listing item) of every checkpoint tail of ours."""
        async for page in self._pages("list_objects_v2", Prefix=f"{self._base()}{TAILS}/"):
            for item in page.get("Contents", []):
                parsed = self._parse_tail(item["Key"])
                if parsed is not None:
                    yield (*parsed, item)

    async def incomplete_uploads(self, older_than: datetime | None = None
                                 ) -> list[tuple[str, float]]:
        """(object id, seconds since it began) of every upload never completed or
        aborted (a multipart upload, or checkpoint tails a crashed writer left), optionally
        only those begun before `older_than`. Recovery discards those no live 'writing'
        row owns."""
        began: dict[str, datetime] = {}
        async for object_id, _key, _upload_id, started in self._uploads():
            began[object_id] = min(started, began.get(object_id, started))
        async for _tenant_id, object_id, _offset, item in self._tails():
            began[object_id] = min(item["LastModified"],
                                   began.get(object_id, item["LastModified"]))
        now = datetime.now(UTC)
        return [(object_id, (now - started).total_seconds())
                for object_id, started in began.items()
                if older_than is None or started < older_than]

    async def discard_incomplete(self, object_id: str) -> bool:
        """Abort every unfinished upload of this object and delete its checkpoint tails;
        True if there was anything."""
        if not _ID_RE.match(object_id):
            raise ValueError("blob ids must be UUIDs")
        found_any = False
        async for found, key, upload_id, _started in self._uploads():
            if found == object_id:
                await self._abort_upload(key, upload_id)
                found_any = True
        tails = [item["Key"] async for _t, found, _o, item in self._tails() if found == object_id]
        await self._forget_tails(tails)
        return found_any or bool(tails)

    async def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except boto_errors.ClientError:
            pass  # NoSuchUpload: finished or aborted meanwhile

    # -- salvaging an interrupted stream (live audio crash recovery) ----------------------
    async def open_partial(self, tenant_id: str, object_id: str
                           ) -> tuple[str, S3RangeReader] | None:
        """What a crashed writer left: ("complete", reader) if it had committed, ("partial",
        reader) over what its checkpoints made durable, or None. The caller closes it.

        S3 cannot read the parts of an unfinished upload, so the partial is assembled
        here into the object itself: the upload is completed with its contiguous parts
        from part 1, then, if checkpoint tails reach further, rewritten with them appended.
        `commit_partial` then replaces it. (If the process dies between the two, the next
        recovery sees a "complete" object with an unsealed end, which fails to decrypt.)"""
        key = self._key(tenant_id, object_id)
        try:
            return "complete", await self.open(tenant_id, object_id)
        except FileNotFoundError:
            pass
        uploads = sorted([(started, upload_id) async for _o, k, upload_id, started
                          in self._uploads(key) if k == key], reverse=True)
        for _, stale in uploads[1:]:
            await self._abort_upload(key, stale)
        tail_items = sorted(
            ((self._parse_tail(item["Key"]) or ("", "", 0))[2], item["Key"], int(item["Size"]))
            for item in await self._list_keys(self._tail_prefix(tenant_id, object_id)))
        covered = 0
        if uploads:
            covered = await self._complete_contiguous(key, uploads[0][1])
        if not covered and not tail_items:
            return None
        tails = [(offset, tail_key, size) for offset, tail_key, size in tail_items
                 if offset + size > covered]
        if tails and tails[0][0] <= covered:
            await self._append_tails(tenant_id, object_id, covered, tails)
        await self._forget_tails([tail_key for _, tail_key, _ in tail_items])
        try:
            return "partial", await self.open(tenant_id, object_id)
        except FileNotFoundError:
            return None

    async def _complete_contiguous(self, key: str, upload_id: str) -> int:
        """Complete an abandoned upload with its parts 1..n up to the first gap (a part in
        flight at the crash may have landed after a missing one); abort it if it has no
        part 1. Returns the bytes the object then holds."""
        parts: list[dict[str, Any]] = []
        async for page in self._pages("list_parts", Key=key, UploadId=upload_id):
            parts.extend(page.get("Parts", []))
        parts.sort(key=lambda p: p["PartNumber"])
        keep = []
        for number, part in enumerate(parts, start=1):
            if part["PartNumber"] != number:
                break
            keep.append(part)
        if not keep:
            await self._abort_upload(key, upload_id)
            return 0
        await self._call("complete_multipart_upload", Key=key, UploadId=upload_id,
                         MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"],
                                                     "ETag": p["ETag"]} for p in keep]})
        return sum(int(p["Size"]) for p in keep)

    async def _append_tails(self, tenant_id: str, object_id: str, covered: int,
                            tails: list[tuple[int, str, int]]) -> None:
        """Rewrite the object as its first `covered` bytes followed by the checkpoint tails
        from there on (contiguous ones only), streaming, replacing it atomically."""
        key = self._key(tenant_id, object_id)
        etag = None
        if covered:
            head = await self._call("head_object", Key=key)
            etag = head.get("ETag")
        sink = await self.create(tenant_id, object_id)
        try:
            for start in range(0, covered, PART_SIZE):
                await sink.write(await self._get_range(key, start,
                                                       min(covered, start + PART_SIZE), etag))
            cursor = covered
            for offset, tail_key, size in tails:
                if offset > cursor:
                    break               # a gap: nothing after it is known to follow on
                body = await self._read_body("get_object", await self._call(
                    "get_object", Key=tail_key))
                await sink.write(body[cursor - offset:])
                cursor = offset + size
            await sink.commit()
        except BaseException:
            await sink.abort()
            raise

    async def commit_partial(self, tenant_id: str, object_id: str, keep: int,
                             tail: bytes) -> None:
        """Make the blob the first `keep` bytes of the interrupted upload followed by
        `tail`, atomically: a new upload streams the kept range (pinned to the partial's
        ETag) and the tail, and only its completion replaces the object, so a crash during
        salvage leaves the partial as it was (re-runnable). Constant memory."""
        source = await self.open(tenant_id, object_id)
        if keep > source.size:
            raise ValueError("the partial upload is shorter than what to keep")
        sink = await self.create(tenant_id, object_id)
        try:
            for start in range(0, keep, PART_SIZE):
                await sink.write(await self._get_range(self._key(tenant_id, object_id), start,
                                                       min(keep, start + PART_SIZE),
                                                       source.etag))
            await sink.write(tail)
            await sink.commit()
        except BaseException:
            await sink.abort()
            raise
        finally:
            source.close()
