"""Recordings: audio in, encrypted blob out, and back again for the tenant.

Keys: each recording has its own unit key in the key store (gateway/lifecycle/unit_keys.py),
which is its blob's data key and seals its metadata; the row keeps only the key's
reference (`key_ref`, not secret). Deleting the recording deletes the key from the key
store (ledger entry first), so no database or blob backup can open it afterwards.
Recordings stored before unit keys have a wrapped data key in `blob_keys` instead; they
keep opening through it until `migrate_recording_keys` (run at start, resumable) has
moved each such key into a segment and deleted its row.

Write path (upload, platform fetch, live stream all use `RecordingWriter`):
  1. one durable commit inserts the row (state 'writing', with a lease) and the
     reference of the recording's new unit key, so no blob can ever exist that the
     database does not know about; the key's key-store write (batched with other new keys)
     runs meanwhile and is awaited before the blob is committed or checkpointed, so a
     readable blob never outlives its key's write (a crash before leaves a row whose key
     is missing: recovery deletes it like any unfinished upload);
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
import contextlib
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
from gateway.lifecycle.unit_keys import truncate_wal
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
# Legacy data keys moved into the key store per segment write (one segment each).
MIGRATE_BATCH = 500


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
                 recording_id: str, blob_writer: keys.BlobWriter, sink: Any, source: str,
                 unit: keys.UnitKey | None = None, key_durable: Any = None) -> None:
        self.service = service
        self.unit = unit      # the recording's unit key (None: a key store-less setup)
        self._key_durable = key_durable   # awaitable: the unit key is in the key store
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
        await self._await_key()
        return await self._sink.sync()

    async def _await_key(self) -> None:
        if self._key_durable is not None:
            await self._key_durable
            self._key_durable = None

    async def _settle_key(self) -> None:
        """Before deleting the key of an aborted recording: its write has ended (or failed),
        so the deletion cannot run ahead of the write and leave the key behind."""
        with contextlib.suppress(Exception):
            await self._await_key()

    async def finish(self, content_type: str | None, *, state: str = "available",
                     stats: dict[str, Any] | None = None,
                     extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("recording writer is closed")
        self.closed = True
        try:
            await self._sink.write(self._blob.finalize())
            await self._await_key()
            await self._sink.commit()
        except BaseException:
            await self._sink.abort()
            await self._settle_key()
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
        await self._settle_key()
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
        units = self.keyring.units
        unit_key: keys.UnitKey | None = None
        wrapped_dek = key_ref = None
        key_durable: Any = None
        if units is not None:
            # The key's segment write runs while the row commits; it is awaited before the
            # blob is committed or checkpointed (see the write path above).
            (unit_key,), key_durable = await units.reserve_keys(tenant_id, 1)
            blob_writer, key_ref = keys.new_unit_blob(unit_key, uuid.UUID(tenant_id),
                                                      uuid.UUID(recording_id))
        else:
            blob_writer, wrapped_dek = ring.new_blob(uuid.UUID(recording_id))
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> None:
            if wrapped_dek is not None:
                tx.execute(
                    "INSERT INTO blob_keys (object_id, tenant_id, kek_version, wrapped,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (recording_id, tenant_id, keys.sealed_version(wrapped_dek), wrapped_dek,
                     now))
            tx.execute(
                "INSERT INTO recordings (id, tenant_id, call_id, state, source, lease_until,"
                " created_at, updated_at, key_ref) VALUES (?, ?, ?, 'writing', ?, ?, ?, ?, ?)",
                (recording_id, tenant_id, call_id, source, self._lease(), now, now, key_ref))

        await self.db.write(unit)
        try:
            sink = await self.blobs.create(tenant_id, recording_id)
        except BaseException:
            await self.forget_unfinished(tenant_id, recording_id)
            raise
        return RecordingWriter(self, tenant_id, call_id, recording_id, blob_writer, sink, source,
                               unit_key, key_durable)

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
        sealed = ring.seal_record(META_RECORD, writer.id, json.dumps(meta).encode(),
                                  unit=writer.unit)
        now = isoformat(self.clock.now())
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recordings SET state = ?, meta = ?, stats = ?, lease_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (state, sealed, json.dumps(stats) if stats is not None else None, now, writer.id)))

    async def forget_unfinished(self, tenant_id: str, recording_id: str) -> None:
        """Remove a recording that never became visible: key first (crypto-shred: out of
        the key store, ledger entry first; or a legacy `blob_keys` row), then blob, then
        row, so an interruption at any point leaves nothing readable."""
        row = await self.db.fetchone("SELECT key_ref FROM recordings WHERE id = ?",
                                     (recording_id,))
        if row is not None and row["key_ref"] is not None and self.keyring.units is not None:
            await self.keyring.units.erase(tenant_id, [bytes(row["key_ref"])],
                                           rows={"recordings": [recording_id]})
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM blob_keys WHERE object_id = ?", (recording_id,)))
        await self.blobs.delete(tenant_id, recording_id)
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM recordings WHERE id = ?", (recording_id,)))

    async def open(self, tenant_id: str, recording_id: str,
                   states: tuple[str, ...] = VISIBLE_RECORDING_STATES) -> OpenedRecording:
        row = await self.db.fetchone(
            "SELECT r.id, r.call_id, r.state, r.source, r.stats, r.meta, r.key_ref, k.wrapped"
            " FROM recordings r LEFT JOIN blob_keys k ON k.object_id = r.id"
            f" WHERE r.id = ? AND r.tenant_id = ? AND r.state IN ({','.join('?' * len(states))})",
            (recording_id, tenant_id, *states))
        if row is None:
            raise not_found("recording")
        try:
            reader, units = await self.blob_reader(tenant_id, dict(row))
            ring = await self.keyring.for_tenant(tenant_id)
            meta = json.loads(ring.open_record(META_RECORD, row["id"], bytes(row["meta"]),
                                               units=units))
        except keys.DecryptionError:
            if row["key_ref"] is None:
                raise
            # Its unit key left the key store: a row a restored backup brought back before
            # the deletion ledger's replay removes it. Never a 500, never audio.
            raise not_found("recording") from None
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

    async def blob_reader(self, tenant_id: str, row: dict[str, Any]
                          ) -> tuple[keys.BlobReader, Any]:
        """The reader of a recording's blob from its row (`id`, `key_ref`, and `wrapped`
        from a legacy `blob_keys` row), and the unit keys loaded for it (they also open
        its metadata). DecryptionError if the key is gone (erased) or does not open."""
        object_id = uuid.UUID(row["id"])
        if row.get("key_ref") is not None:
            key_ref = bytes(row["key_ref"])
            units = await self.keyring.units.load(tenant_id, [key_ref]) \
                if self.keyring.units is not None else {}
            return keys.open_unit_blob(units, uuid.UUID(tenant_id), object_id, key_ref), units
        if row.get("wrapped") is None:
            raise keys.DecryptionError()
        ring = await self.keyring.for_tenant(tenant_id)
        return ring.open_blob(object_id, bytes(row["wrapped"])), None

    async def migrate_recording_keys(self) -> int:
        """Move every recording's data key still wrapped in `blob_keys` (stored before unit
        keys) into the key store: one segment per batch holding the same DEKs (the blobs
        are not touched), then one commit sets the rows' `key_ref` and deletes their
        `blob_keys` rows (secure_delete zeroes them; the WAL is truncated at the end).
        Resumable and safe beside other replicas: a crash leaves keys that open nothing
        new, a row another process moved or deleted meanwhile gets its spare key deleted.
        Returns how many recordings moved."""
        units = self.keyring.units
        if units is None:
            return 0
        moved = 0
        after = ""
        while True:
            rows = await self.db.fetchall(
                "SELECT k.object_id, k.tenant_id, k.wrapped FROM blob_keys k"
                " JOIN recordings r ON r.id = k.object_id WHERE r.key_ref IS NULL"
                " AND k.object_id > ? ORDER BY k.object_id LIMIT ?", (after, MIGRATE_BATCH))
            if not rows:
                break
            after = rows[-1]["object_id"]
            by_tenant: dict[str, list[Any]] = {}
            for row in rows:
                by_tenant.setdefault(row["tenant_id"], []).append(row)
            for tenant_id, tenant_rows in by_tenant.items():
                moved += await self._migrate_tenant_keys(tenant_id, tenant_rows)
        if moved:
            await truncate_wal(self.db)
            log.info("recording keys moved into the key store: %d", moved)
        return moved

    async def _migrate_tenant_keys(self, tenant_id: str, rows: list[Any]) -> int:
        units = self.keyring.units
        assert units is not None
        ring = await self.keyring.for_tenant(tenant_id)
        segment_id = uuid.uuid4()
        adopted: list[keys.UnitKey] = []
        refs: dict[str, bytes] = {}
        for row in rows:
            try:
                unit_key, key_ref = keys.adopt_wrapped_dek(
                    ring, segment_id, uuid.UUID(row["object_id"]), bytes(row["wrapped"]))
            except keys.DecryptionError:
                log.warning("a recording's data key does not open; left in blob_keys")
                continue
            adopted.append(unit_key)
            refs[row["object_id"]] = key_ref
        if not adopted:
            return 0
        await units.store_units(tenant_id, segment_id, adopted)

        def unit(tx: WriteTx) -> list[str]:
            lost = []
            for object_id, key_ref in refs.items():
                if not tx.execute("UPDATE recordings SET key_ref = ? WHERE id = ?"
                                  " AND key_ref IS NULL", (key_ref, object_id)):
                    lost.append(object_id)
            tx.execute(f"DELETE FROM blob_keys WHERE object_id IN ({','.join('?' * len(refs))})",
                       list(refs))
            return lost

        lost = await self.db.write(unit)
        if lost:
            # Deleted or moved by another process meanwhile: its copy here must not live on.
            await units.discard(tenant_id, [refs[o] for o in lost])
        return len(refs) - len(lost)

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


