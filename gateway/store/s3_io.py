"""Streaming to and from S3: the upload sink (multipart, checkpoint tails) and the seekable
range reader the blob AEAD reads through. Used by S3BlobStore (s3.py).

Invariants:
- Memory per upload is bounded whatever the blob size: one part being filled plus at most
  PARTS_IN_FLIGHT parts being sent. Reads fetch byte ranges, never whole objects.
- An object is visible only when complete: a blob smaller than one part is a single
  PutObject at commit; a larger one is a multipart upload that only commit() completes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from typing import TYPE_CHECKING, Any

from gateway.store.s3_client import ObjectStoreError

if TYPE_CHECKING:
    from gateway.store.s3 import S3BlobStore

log = logging.getLogger("gateway.store")

__all__ = ["DELETE_BATCH", "PART_SIZE", "READ_AHEAD_MIN", "S3BlobSink", "S3RangeReader", "TAILS"]

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


