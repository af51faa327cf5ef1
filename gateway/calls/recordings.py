"""Recordings: audio in, encrypted blob out, and back again for the tenant.

Write path (upload, platform fetch, live stream all use `RecordingWriter`):
  1. one durable commit inserts the row (state 'writing', with a lease) and the wrapped
     data key, so no blob can ever exist that the database does not know about;
  2. plaintext is encrypted segment by segment (keys.BlobWriter, constant memory) into a
     temp file; nothing plaintext touches the disk;
  3. the temp file is fsync'd and renamed into place, then one commit flips the row to
     'available' with its sealed metadata (content type, true length).
A crash anywhere leaves a 'writing' row whose lease runs out; `recover()` at start and
then periodically (`abandoned_upload_sweep()`, a PeriodicJob, so an abandoned upload never
waits for the next restart) removes its key, blob, temp file and row, counted in
`gateway_recovered_total`. Readers only ever see 'available' and 'incomplete' rows.
Out of space is the blob store's 507 (or the database's 503) to the uploader; what was
written so far is aborted, or left to the sweep if even the abort cannot write.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import keys
from gateway.calls.service import VISIBLE_RECORDING_STATES
from gateway.core.clock import Clock, isoformat
from gateway.core.jobs import PeriodicJob
from gateway.core.metrics import Metrics
from gateway.errors import DomainError, insufficient_storage, not_found
from gateway.store import BlobStore, Database, StoreUnavailable, WriteTx, sealed
from gateway.store.ids import new_id
from gateway.tenants.keyring import KeyRing

log = logging.getLogger("gateway.recordings")

META_RECORD = "recording-meta"
# Key rotation reseals this column (gateway/store/sealed.py).
sealed.register(sealed.SealedColumn("recordings", "meta", META_RECORD, keyset=("created_at", "id")))
# A writer renews its lease this often; recovery treats a 'writing' row whose lease ran out
# as abandoned by a crashed process. The lease is several renewals long so a busy process
# is never mistaken for a dead one.
LEASE_RENEW_SECONDS = 30.0
LEASE_SECONDS = 300.0
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def technical_stats(raw: str | bytes | None) -> dict[str, Any] | None:
    """The `recordings.stats` column as the tenant sees it: what the gateway measured about
    the audio while it arrived (duration, codec, levels, clipping, silence, one-way audio,
    loss, level envelope; gateway/media/stats.py). None when nothing was measured: uploads
    and platform downloads are stored as the bytes received, in any format."""
    if not raw:
        return None
    stats = json.loads(raw)
    return stats if isinstance(stats, dict) else None


@dataclass(frozen=True)
class OpenedRecording:
    id: str
    call_id: str
    content_type: str
    length: int
    state: str
    _iter: Callable[[int, int], AsyncIterator[bytes]]
    source: str | None = None
    stats: dict[str, Any] | None = None

    def iter_range(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._iter(start, self.length if end is None else end)

    def describe(self) -> dict[str, Any]:
        """The tenant's view of the recording (GET /v1/recordings/{id}): never the audio."""
        return {"id": self.id, "call_id": self.call_id, "state": self.state,
                "source": self.source, "content_type": self.content_type,
                "length": self.length, "stats": self.stats,
                "audio_url": f"/v1/recordings/{self.id}/audio"}


class RecordingWriter:
    """Streams one recording into the encrypted blob store. Use `finish()` or `abort()`."""

    def __init__(self, service: RecordingService, tenant_id: str, call_id: str,
                 recording_id: str, blob_writer: keys.BlobWriter, sink: Any, source: str
                 ) -> None:
        self.service = service
        self.tenant_id = tenant_id
        self.call_id = call_id
        self.id = recording_id
        self.source = source
        self._blob = blob_writer
        self._sink = sink
        self._next_renewal = time.monotonic() + LEASE_RENEW_SECONDS
        self.closed = False

    @property
    def length(self) -> int:
        return self._blob.plaintext_length

    async def write(self, data: bytes | memoryview) -> None:
        if self.closed:
            raise RuntimeError("recording writer is closed")
        ciphertext = self._blob.update(data)
        self.service.metrics.bytes_encrypted.inc(len(data))
        if ciphertext:
            await self._sink.write(ciphertext)
        if time.monotonic() >= self._next_renewal:
            self._next_renewal = time.monotonic() + LEASE_RENEW_SECONDS
            await self.service._renew_lease(self.id)

    async def sync(self) -> int:
        """Make what the blob format has released so far durable in the temp blob (a live
        stream's checkpoint); returns the durable ciphertext length. The segment the blob
        writer holds back is not included."""
        if self.closed:
            raise RuntimeError("recording writer is closed")
        return await self._sink.sync()

    async def finish(self, content_type: str | None, *, state: str = "available",
                     stats: dict[str, Any] | None = None,
                     extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("recording writer is closed")
        self.closed = True
        try:
            await self._sink.write(self._blob.finalize())
            await self._sink.commit()
        except BaseException:
            await self._sink.abort()
            await self.service.forget_unfinished(self.tenant_id, self.id)
            raise
        meta = {"content_type": content_type or DEFAULT_CONTENT_TYPE,
                "length": self._blob.plaintext_length, **(extra_meta or {})}
        await self.service._mark_finished(self, meta, state, stats)
        self.service.metrics.recordings_stored.labels(self.source).inc()
        return {"id": self.id, "call_id": self.call_id, "state": state,
                "content_type": meta["content_type"], "length": meta["length"]}

    async def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self._sink.abort()
        await self.service.forget_unfinished(self.tenant_id, self.id)


# Decrypted segments handed from the worker thread to the event loop at once (32 x 64 KiB),
# joined into one piece there: the event loop then makes one response write (one drain
# check) per hop instead of one per segment, and the copy happens off the loop.
SEGMENTS_PER_HOP = 32


def _take(pieces: Iterator[bytes], n: int) -> bytes:
    return b"".join(itertools.islice(pieces, n))


class RecordingService:
    def __init__(self, db: Database, keyring: KeyRing, blobs: BlobStore, clock: Clock,
                 metrics: Metrics) -> None:
        self.db = db
        self.keyring = keyring
        self.blobs = blobs
        self.clock = clock
        self.metrics = metrics
        # How recovery treats an abandoned 'writing' row, by source. The default deletes it;
        # a live stream may instead keep what was written as an 'incomplete' recording.
        self.recovery_handlers: dict[str, Callable[[dict[str, Any]], Awaitable[str]]] = {}
        self.sweep: PeriodicJob | None = None    # set by abandoned_upload_sweep()

    def _lease(self) -> str:
        return isoformat(self.clock.now() + timedelta(seconds=LEASE_SECONDS))

    async def begin(self, tenant_id: str, call_id: str, source: str) -> RecordingWriter:
        ring = await self.keyring.for_tenant(tenant_id)
        recording_id = new_id()
        blob_writer, wrapped_dek = ring.new_blob(uuid.UUID(recording_id))
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> None:
            tx.execute(
                "INSERT INTO blob_keys (object_id, tenant_id, kek_version, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)", (recording_id, tenant_id,
                                            keys.sealed_version(wrapped_dek), wrapped_dek, now))
            tx.execute(
                "INSERT INTO recordings (id, tenant_id, call_id, state, source, lease_until,"
                " created_at, updated_at) VALUES (?, ?, ?, 'writing', ?, ?, ?, ?)",
                (recording_id, tenant_id, call_id, source, self._lease(), now, now))

        await self.db.write(unit)
        try:
            sink = await self.blobs.create(tenant_id, recording_id)
        except BaseException:
            await self.forget_unfinished(tenant_id, recording_id)
            raise
        return RecordingWriter(self, tenant_id, call_id, recording_id, blob_writer, sink, source)

    async def store_stream(self, tenant_id: str, call_id: str, content_type: str | None,
                           chunks: AsyncIterator[bytes], *, source: str = "upload",
                           max_bytes: int | None = None) -> dict[str, Any]:
        """Store a whole recording from an async byte stream (upload, fetch). Out of space
        anywhere (the database's row, the blob) is one 507 (insufficient storage)."""
        try:
            return await self._store_stream(tenant_id, call_id, content_type, chunks,
                                            source=source, max_bytes=max_bytes)
        except StoreUnavailable as exc:
            if getattr(exc, "out_of_space", False):
                raise insufficient_storage("database") from None
            raise

    async def _store_stream(self, tenant_id: str, call_id: str, content_type: str | None,
                            chunks: AsyncIterator[bytes], *, source: str,
                            max_bytes: int | None) -> dict[str, Any]:
        writer = await self.begin(tenant_id, call_id, source)
        try:
            async for chunk in chunks:
                if max_bytes is not None and writer.length + len(chunk) > max_bytes:
                    raise DomainError(413, "payload-too-large", "recording too large",
                                  f"the limit is {max_bytes} bytes", limit=max_bytes)
                await writer.write(chunk)
            return await writer.finish(content_type)
        except BaseException:
            try:
                await writer.abort()
            except Exception as exc:   # e.g. a full disk: the lease expires, the sweep cleans
                log.warning("upload abort deferred to the sweep (%s)", type(exc).__name__)
            raise

    def abandoned_upload_sweep(self) -> PeriodicJob:
        """The job that runs `recover()` every lease renewal period: a 'writing' row (with
        its temp file) left by a crashed process or a killed client is removed once its
        lease has expired, whether or not the process restarts."""
        self.sweep = PeriodicJob("recordings-abandoned-uploads", self.recover,
                                 interval=LEASE_RENEW_SECONDS)
        return self.sweep

    async def _renew_lease(self, recording_id: str) -> None:
        lease = self._lease()
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recordings SET lease_until = ? WHERE id = ? AND state = 'writing'",
            (lease, recording_id)))

    async def _mark_finished(self, writer: RecordingWriter, meta: dict[str, Any], state: str,
                             stats: dict[str, Any] | None) -> None:
        ring = await self.keyring.for_tenant(writer.tenant_id)
        sealed = ring.seal_record(META_RECORD, writer.id, json.dumps(meta).encode())
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recordings SET state = ?, meta = ?, stats = ?, lease_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (state, sealed, json.dumps(stats) if stats is not None else None, now, writer.id)))

    async def forget_unfinished(self, tenant_id: str, recording_id: str) -> None:
        """Remove a recording that never became visible: key first (crypto-shred), then
        blob, then row, so an interruption at any point leaves nothing readable."""
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM blob_keys WHERE object_id = ?", (recording_id,)))
        await self.blobs.delete(tenant_id, recording_id)
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM recordings WHERE id = ?", (recording_id,)))

    async def open(self, tenant_id: str, recording_id: str,
                   states: tuple[str, ...] = VISIBLE_RECORDING_STATES) -> OpenedRecording:
        row = await self.db.fetchone(
            "SELECT r.id, r.call_id, r.state, r.source, r.stats, r.meta, k.wrapped"
            " FROM recordings r"
            " JOIN blob_keys k ON k.object_id = r.id"
            f" WHERE r.id = ? AND r.tenant_id = ? AND r.state IN ({','.join('?' * len(states))})",
            (recording_id, tenant_id, *states))
        if row is None:
            raise not_found("recording")
        ring = await self.keyring.for_tenant(tenant_id)
        meta = json.loads(ring.open_record(META_RECORD, row["id"], bytes(row["meta"])))
        reader = ring.open_blob(uuid.UUID(row["id"]), bytes(row["wrapped"]))
        # A recording written as a stream may carry a `prefix` in its sealed metadata: bytes
        # served before the blob's plaintext (live audio: the WAV header, known only at the
        # end, while the blob is append-only). The served length includes it.
        prefix = base64.b64decode(meta["prefix"]) if meta.get("prefix") else b""
        blob_length = int(meta["length"])
        length = len(prefix) + blob_length

        async def iterate(start: int, end: int) -> AsyncIterator[bytes]:
            if start < len(prefix):
                yield prefix[start:min(end, len(prefix))]
            start, end = max(0, start - len(prefix)), max(0, end - len(prefix))
            if prefix and end <= start:
                return
            fileobj = await self.blobs.open(tenant_id, recording_id)
            try:
                pieces = reader.read_range(fileobj, blob_length, start, end)
                while True:
                    # Several segments per thread hop: a hop costs more than decrypting one
                    # 64 KiB segment, and an S3 reader fetches ranges far larger than that.
                    piece = await asyncio.to_thread(_take, pieces, SEGMENTS_PER_HOP)
                    if not piece:
                        break
                    self.metrics.bytes_decrypted.inc(len(piece))
                    yield piece
            finally:
                await asyncio.to_thread(fileobj.close)

        return OpenedRecording(row["id"], row["call_id"], meta["content_type"], length,
                               row["state"], iterate, row["source"],
                               technical_stats(row["stats"]))

    async def recover(self) -> dict[str, int]:
        """Clean up what crashed writers left: 'writing' rows past their lease and temp files
        no live writer owns. Safe to run while other processes write (leases protect them)."""
        now = isoformat(self.clock.now())
        rows = await self.db.fetchall(
            "SELECT id, tenant_id, call_id, source FROM recordings WHERE state = 'writing'"
            " AND (lease_until IS NULL OR lease_until < ?)", (now,))
        counts: dict[str, int] = {}
        for row in rows:
            handler = self.recovery_handlers.get(row["source"])
            outcome = "deleted"
            if handler is not None:
                outcome = await handler(dict(row))
            else:
                await self.forget_unfinished(row["tenant_id"], row["id"])
            counts[outcome] = counts.get(outcome, 0) + 1
            self.metrics.recovered.labels(f"recording_{outcome}").inc()
        live = {r["id"] for r in await self.db.fetchall(
            "SELECT id FROM recordings WHERE state = 'writing'")}
        for object_id, _age in await self.blobs.incomplete_uploads():
            if object_id not in live and await self.blobs.discard_incomplete(object_id):
                counts["temp_files"] = counts.get("temp_files", 0) + 1
                self.metrics.recovered.labels("recording_temp_file").inc()
        if counts:
            log.info("recovery: %s", json.dumps(counts))
        return counts


