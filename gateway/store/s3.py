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
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from botocore import exceptions as boto_errors

from gateway.store.files import _ID_RE
from gateway.store.s3_client import (
    ObjectStoreError,
    S3Client,
    S3Settings,
    StoreUnavailable,
    error_code,
)
from gateway.store.s3_io import (
    DELETE_BATCH,
    PART_SIZE,
    READ_AHEAD_MIN,
    TAILS,
    S3BlobSink,
    S3RangeReader,
)

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

class S3BlobStore(S3Client):
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
            if error_code(exc) != "InvalidRange":
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
