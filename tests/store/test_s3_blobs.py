"""S3BlobStore against a real SeaweedFS: streaming at constant memory, Range reads that
fetch only what they cover (through keys.BlobReader, as gateway/calls/recordings.py
reads), nothing visible before commit or after abort, abandoned multipart uploads found
and discarded by the orphan scan, and clear errors when the store is away."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

import keys
from gateway.store import StoreUnavailable as SeamUnavailable
from gateway.store.s3 import (
    PART_SIZE,
    ObjectStoreError,
    S3BlobStore,
    StoreUnavailable,
)
from tests.support.seaweedfs import SeaweedS3, free_ports

MIB = 1024 * 1024


# -- helpers --------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class PeakRss:
    """Peak resident memory growth over a block: the kernel's high-water mark (reset
    through /proc/self/clear_refs) and, where that is refused, a 5 ms sampler."""

    def __enter__(self) -> PeakRss:
        self.base_kib = _status_kib("VmRSS")
        self.peak_kib = self.base_kib
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")     # reset VmHWM to the current RSS (Linux >= 4.0)
            self.hwm = True
        except OSError:
            self.hwm = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm:
            self.peak_kib = max(self.peak_kib, _status_kib("VmHWM"))

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.base_kib) / 1024


def plaintext_chunks(total: int, chunk: int = MIB) -> Iterator[bytes]:
    """`total` bytes of audio-like noise in `chunk`-sized pieces, each piece distinct,
    without ever holding more than one piece."""
    block = os.urandom(chunk)
    for i in range(0, total, chunk):
        piece = i.to_bytes(8, "big") + block[8:]
        yield piece[:min(chunk, total - i)]


async def store_encrypted(store: S3BlobStore, tenant: keys.TenantKeys, chunks: Iterator[bytes],
                          object_id: uuid.UUID | None = None
                          ) -> tuple[uuid.UUID, bytes, int, str]:
    """Encrypt and upload as RecordingWriter does: (object id, wrapped DEK, plaintext
    length, SHA-256 of the plaintext)."""
    object_id = object_id or uuid.uuid4()
    writer, wrapped = tenant.new_blob(object_id)
    sink = await store.create(str(tenant.tenant_id), str(object_id))
    digest = hashlib.sha256()
    try:
        for chunk in chunks:
            digest.update(chunk)
            ciphertext = writer.update(chunk)
            if ciphertext:
                await sink.write(ciphertext)
        await sink.write(writer.finalize())
        await sink.commit()
    except BaseException:
        await sink.abort()
        raise
    return object_id, wrapped, writer.plaintext_length, digest.hexdigest()


async def read_range(store: S3BlobStore, tenant: keys.TenantKeys, object_id: uuid.UUID,
                     wrapped: bytes, length: int, start: int = 0, end: int | None = None
                     ) -> AsyncIterator[bytes]:
    """Decrypt a byte range exactly as RecordingService.open's iterator does: read_range
    called on the loop, each segment pulled in a worker thread."""
    reader = tenant.open_blob(object_id, wrapped)
    fileobj = await store.open(str(tenant.tenant_id), str(object_id))
    try:
        pieces = reader.read_range(fileobj, length, start, end)
        while True:
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                break
            yield piece
    finally:
        await asyncio.to_thread(fileobj.close)


async def stored_keys(seaweedfs: SeaweedS3, store: S3BlobStore) -> list[str]:
    """Every object key under the store's prefix (blobs and checkpoint tails alike)."""
    answer = await asyncio.to_thread(seaweedfs.client().list_objects_v2,
                                     Bucket=store.bucket, Prefix=store.prefix + "/")
    return [item["Key"] for item in answer.get("Contents", [])]


async def open_uploads(seaweedfs: SeaweedS3, store: S3BlobStore) -> list[str]:
    """Keys of unfinished multipart uploads under the store's prefix, asked directly."""
    answer = await asyncio.to_thread(seaweedfs.client().list_multipart_uploads,
                                     Bucket=store.bucket, Prefix=store.prefix + "/")
    return [u["Key"] for u in answer.get("Uploads", [])]


# -- streaming and range reads ----------------------------------------------------------------
async def test_200_mib_streams_up_and_down_at_constant_memory(
        blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    total = 200 * MIB
    tenant_id = str(tenant.tenant_id)
    object_id = uuid.uuid4()
    writer, wrapped = tenant.new_blob(object_id)
    # Open the client first (botocore loads the S3 model once per process): the bound is on
    # what streaming adds, which must not depend on the size.
    assert await blob_store.ping()
    sink = await blob_store.create(tenant_id, str(object_id))
    digest = hashlib.sha256()
    started = time.monotonic()
    with PeakRss() as upload_rss:
        for chunk in plaintext_chunks(total):
            digest.update(chunk)
            await sink.write(writer.update(chunk))
        await sink.write(writer.finalize())
        # Every part but the last has been sent, and still nothing is visible.
        assert sink.bytes_written > 20 * PART_SIZE
        assert not await blob_store.exists(tenant_id, str(object_id))
        await sink.commit()
    upload_seconds = time.monotonic() - started

    reader = tenant.open_blob(object_id, wrapped)
    assert await blob_store.size(tenant_id, str(object_id)) == reader.ciphertext_length(total)

    back = hashlib.sha256()
    received = 0
    started = time.monotonic()
    with PeakRss() as download_rss:
        async for piece in read_range(blob_store, tenant, object_id, wrapped, total):
            back.update(piece)
            received += len(piece)
    download_seconds = time.monotonic() - started

    assert received == total
    assert back.hexdigest() == digest.hexdigest()
    assert upload_rss.growth_mib < 64, f"upload grew RSS by {upload_rss.growth_mib:.1f} MiB"
    assert download_rss.growth_mib < 64, f"download grew RSS by {download_rss.growth_mib:.1f} MiB"
    print(f"\n200 MiB: upload {total / MIB / upload_seconds:.0f} MiB/s "
          f"(RSS +{upload_rss.growth_mib:.1f} MiB), download "
          f"{total / MIB / download_seconds:.0f} MiB/s (RSS +{download_rss.growth_mib:.1f} MiB)")


async def test_a_range_read_fetches_only_the_segments_it_covers(
        blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    total = 24 * MIB + 12345
    object_id, wrapped, length, _ = await store_encrypted(
        blob_store, tenant, plaintext_chunks(total))
    whole = b"".join([p async for p in read_range(blob_store, tenant, object_id, wrapped,
                                                  length)])
    assert len(whole) == total

    start, end = 17 * MIB + 1000, 17 * MIB + 1000 + 3000
    reader = tenant.open_blob(object_id, wrapped)
    fileobj = await blob_store.open(str(tenant.tenant_id), str(object_id))
    pieces = reader.read_range(fileobj, length, start, end)     # on the loop, as recordings do
    got = b"".join(await asyncio.to_thread(list, pieces))
    fileobj.close()
    assert got == whole[start:end]
    # One GET at open (header prefetch) and one for the covered segment: well under 1 MiB
    # of a 24 MiB object.
    assert fileobj.requests == 2
    assert fileobj.bytes_fetched < 1 * MIB

    # The last byte, and an empty range, also decrypt only what they need.
    tail = [p async for p in read_range(blob_store, tenant, object_id, wrapped, length,
                                        total - 1, total)]
    assert b"".join(tail) == whole[-1:]
    assert [p async for p in read_range(blob_store, tenant, object_id, wrapped, length,
                                        5, 5)] == []


async def test_a_tampered_object_fails_to_decrypt(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    object_id, wrapped, length, _ = await store_encrypted(
        blob_store, tenant, plaintext_chunks(300_000, 100_000))
    key = f"{blob_store.prefix}/{tenant.tenant_id}/{object_id}"
    client = seaweedfs.client()
    body = bytearray(client.get_object(Bucket="gw-blobs", Key=key)["Body"].read())
    body[-100] ^= 1
    client.put_object(Bucket="gw-blobs", Key=key, Body=bytes(body))
    with pytest.raises(keys.DecryptionError):
        async for _ in read_range(blob_store, tenant, object_id, wrapped, length):
            pass


async def test_the_reader_refuses_to_block_the_event_loop(
        blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    object_id, _, _, _ = await store_encrypted(blob_store, tenant, plaintext_chunks(2 * MIB))
    fileobj = await blob_store.open(str(tenant.tenant_id), str(object_id))
    fileobj.seek(MIB)
    with pytest.raises(RuntimeError, match="worker thread"):
        fileobj.read(100)       # outside the prefetched head: would need a GET
    assert len(await asyncio.to_thread(fileobj.read, 100)) == 100
    fileobj.close()


# -- visibility: commit, abort, crash --------------------------------------------------------
async def test_small_blob_is_one_put_and_the_store_api_works(
        blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id = str(tenant.tenant_id)
    ids = []
    for _ in range(3):
        object_id, wrapped, length, digest = await store_encrypted(
            blob_store, tenant, plaintext_chunks(70_000, 7_000))
        ids.append(str(object_id))
    assert await blob_store.exists(tenant_id, ids[0])
    assert sorted(await blob_store.list_objects(tenant_id)) == sorted(ids)
    assert tenant_id in await blob_store.list_tenants()

    assert await blob_store.delete(tenant_id, ids[0]) is True
    assert await blob_store.delete(tenant_id, ids[0]) is False
    assert not await blob_store.exists(tenant_id, ids[0])
    with pytest.raises(FileNotFoundError):
        await blob_store.open(tenant_id, ids[0])
    with pytest.raises(FileNotFoundError):
        await blob_store.size(tenant_id, ids[0])

    assert await blob_store.delete_many(tenant_id, ids[1:2]) == 1
    assert await blob_store.list_objects(tenant_id) == [ids[2]]
    await blob_store.delete_tenant(tenant_id)
    assert await blob_store.list_objects(tenant_id) == []
    assert await blob_store.ping() is True

    with pytest.raises(ValueError):
        await blob_store.create(tenant_id, "../../etc/passwd")


async def test_abort_leaves_nothing_visible_and_no_upload(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id, object_id = str(tenant.tenant_id), str(uuid.uuid4())
    sink = await blob_store.create(tenant_id, object_id)
    for chunk in plaintext_chunks(3 * PART_SIZE + 1000):
        await sink.write(chunk)
    assert await sink.sync() == 3 * PART_SIZE + 1000    # parts and a tail are stored...
    assert await open_uploads(seaweedfs, blob_store)
    assert await stored_keys(seaweedfs, blob_store)
    await sink.abort()
    assert not await blob_store.exists(tenant_id, object_id)   # ...and none is visible
    assert await blob_store.list_objects(tenant_id) == []
    assert await open_uploads(seaweedfs, blob_store) == []
    assert await stored_keys(seaweedfs, blob_store) == []       # nor left behind
    assert await blob_store.incomplete_uploads() == []


async def test_a_crashed_upload_is_found_by_the_orphan_scan_and_discarded(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id = str(tenant.tenant_id)
    crashed, finished = str(uuid.uuid4()), str(uuid.uuid4())
    sink = await blob_store.create(tenant_id, crashed)
    for chunk in plaintext_chunks(PART_SIZE + MIB):
        await sink.write(chunk)
    await sink.sync()
    del sink                                         # the writer dies: no commit, no abort
    done = await blob_store.create(tenant_id, finished)
    for chunk in plaintext_chunks(PART_SIZE + MIB):
        await done.write(chunk)
    await done.commit()

    assert not await blob_store.exists(tenant_id, crashed)
    # Uploads begun after the cut-off (a live writer's) can be left out.
    assert await blob_store.incomplete_uploads(datetime.now(UTC) - timedelta(hours=1)) == []
    found = await blob_store.incomplete_uploads()
    assert [object_id for object_id, _ in found] == [crashed]
    assert 0 <= found[0][1] < 300                   # seconds since the upload began

    assert await blob_store.discard_incomplete(crashed) is True
    assert await blob_store.discard_incomplete(crashed) is False
    assert await blob_store.incomplete_uploads() == []
    assert await open_uploads(seaweedfs, blob_store) == []
    assert await blob_store.list_objects(tenant_id) == [finished]
    assert await stored_keys(seaweedfs, blob_store) == [
        f"{blob_store.prefix}/{tenant_id}/{finished}"]            # its tail went too

    # Offboarding also removes a tenant's unfinished uploads.
    again = await blob_store.create(tenant_id, crashed)
    for chunk in plaintext_chunks(PART_SIZE + MIB):
        await again.write(chunk)
    await again.sync()
    await blob_store.delete_tenant(tenant_id)
    assert await open_uploads(seaweedfs, blob_store) == []
    assert await blob_store.list_objects(tenant_id) == []


# -- failures -------------------------------------------------------------------------------
async def test_an_unreachable_store_raises_store_unavailable_quickly(
        seaweedfs: SeaweedS3, tenant: keys.TenantKeys) -> None:
    (closed_port,) = free_ports(1)
    store = S3BlobStore("gw-blobs", "x", endpoint_url=f"http://127.0.0.1:{closed_port}",
                        connect_timeout=1, max_attempts=2)
    started = time.monotonic()
    try:
        assert await store.ping() is False
        sink = await store.create(str(tenant.tenant_id), str(uuid.uuid4()))
        await sink.write(b"x" * 1000)
        with pytest.raises(StoreUnavailable) as raised:
            await sink.commit()
        await sink.abort()
        with pytest.raises(StoreUnavailable):
            await store.exists(str(tenant.tenant_id), str(uuid.uuid4()))
        with pytest.raises(StoreUnavailable):
            await store.incomplete_uploads()
    finally:
        await store.close()
    assert time.monotonic() - started < 30
    assert "gw-blobs" in str(raised.value)          # for the log
    # ...and for the client, the seam's 503 that names only the component.
    assert isinstance(raised.value, SeamUnavailable)
    assert raised.value.status_hint == 503 and raised.value.hints["retry_after"]
    assert "gw-blobs" not in raised.value.detail and "blob store" in raised.value.detail


async def test_wrong_credentials_are_an_error_that_names_no_secret(
        seaweedfs: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tenant: keys.TenantKeys) -> None:
    secret = "wrong-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = S3BlobStore("gw-blobs", "x", endpoint_url=seaweedfs.endpoint_url)
    try:
        assert await store.ping() is False
        sink = await store.create(str(tenant.tenant_id), str(uuid.uuid4()))
        await sink.write(b"x" * 1000)
        with pytest.raises(ObjectStoreError) as raised:
            await sink.commit()
    finally:
        await store.close()
    assert not isinstance(raised.value, StoreUnavailable)
    assert secret not in str(raised.value) and "nobody" not in str(raised.value)


def test_bucket_names_are_checked() -> None:
    with pytest.raises(ValueError):
        S3BlobStore("ab")
    with pytest.raises(ValueError):
        S3BlobStore("Bad_Bucket")


# -- checkpoints and salvage of an interrupted live stream ------------------------------------
async def test_a_crashed_live_upload_is_salvaged_to_its_last_checkpoint(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id, object_id = str(tenant.tenant_id), str(uuid.uuid4())
    assert await blob_store.open_partial(tenant_id, object_id) is None
    data = b"".join(plaintext_chunks(PART_SIZE + 3 * MIB))
    sink = await blob_store.create(tenant_id, object_id)
    await sink.write(data[:PART_SIZE + MIB])
    assert await sink.sync() == PART_SIZE + MIB     # a part, and a 1 MiB tail
    await sink.write(data[PART_SIZE + MIB:])
    assert await sink.sync() == len(data)           # and a second tail of 2 MiB
    await sink.write(b"lost: written after the last checkpoint")
    del sink                                        # the process dies

    state, partial = await blob_store.open_partial(tenant_id, object_id)
    assert state == "partial" and partial.size == len(data)
    assert await asyncio.to_thread(partial.read) == data
    partial.close()
    keep = len(data) - 1000
    await blob_store.commit_partial(tenant_id, object_id, keep, b"new tail")
    whole = await blob_store.open(tenant_id, object_id)
    assert await asyncio.to_thread(whole.read) == data[:keep] + b"new tail"
    whole.close()
    assert await open_uploads(seaweedfs, blob_store) == []
    assert await stored_keys(seaweedfs, blob_store) == [
        f"{blob_store.prefix}/{tenant_id}/{object_id}"]
    assert await blob_store.incomplete_uploads() == []

    state, complete = await blob_store.open_partial(tenant_id, object_id)
    assert state == "complete"
    complete.close()


async def test_a_live_upload_smaller_than_a_part_is_salvaged_from_its_tails(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id, object_id = str(tenant.tenant_id), str(uuid.uuid4())
    sink = await blob_store.create(tenant_id, object_id)
    pieces = [os.urandom(40_000) for _ in range(3)]
    for piece in pieces:
        await sink.write(piece)
        await sink.sync()                           # one small tail per checkpoint
    assert [o for o, _ in await blob_store.incomplete_uploads()] == [object_id]
    del sink

    state, partial = await blob_store.open_partial(tenant_id, object_id)
    assert state == "partial"
    assert await asyncio.to_thread(partial.read) == b"".join(pieces)
    partial.close()
    assert await stored_keys(seaweedfs, blob_store) == [
        f"{blob_store.prefix}/{tenant_id}/{object_id}"]


async def test_a_finished_stream_leaves_no_checkpoint_tails(
        seaweedfs: SeaweedS3, blob_store: S3BlobStore, tenant: keys.TenantKeys) -> None:
    tenant_id, object_id = str(tenant.tenant_id), str(uuid.uuid4())
    sink = await blob_store.create(tenant_id, object_id)
    data = b"".join(plaintext_chunks(2 * PART_SIZE + 5000, 700_000))
    for i in range(0, len(data), 700_000):
        await sink.write(data[i:i + 700_000])
        await sink.sync()
    await sink.commit()
    assert await stored_keys(seaweedfs, blob_store) == [
        f"{blob_store.prefix}/{tenant_id}/{object_id}"]
    whole = await blob_store.open(tenant_id, object_id)
    assert await asyncio.to_thread(whole.read) == data
    whole.close()
