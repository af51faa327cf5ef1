"""Live recordings: one per media stream, from its start to its end or the crash that cut it.

A `LiveRecording` links the stream to its call (created if the platform's webhooks have not
done so), opens a `RecordingWriter` (encrypted blob, constant memory), runs the
`AudioPipeline` (order, silence fill, channels, stats) and writes its output in batches.

Durability: every `checkpoint_seconds` it fsyncs the temp blob and records, in one row,
how many ciphertext bytes are on disk, the audio format and the stats so far. At the end it
writes the true WAV header into the recording's sealed metadata (`prefix`: the blob is
append-only, so the header is served in front of it) and flips the row visible.

Crash recovery (`recover_stream`, the "stream" recovery handler): a 'writing' stream row
whose lease ran out keeps exactly its checkpointed segments (opened with the recording's
own key from the key store, which also seals the new metadata): the temp blob is cut to them,
the last one is re-sealed as last (keys.BlobReader.reseal_truncated), and the row becomes
an 'incomplete' recording with a header for that length. Nothing durable -> deleted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import uuid
from typing import Any

import keys
from adapters.events import CallEvent
from adapters.media import MediaProtocolError, policy_violation
from gateway.calls.recordings import META_RECORD, RecordingWriter
from gateway.core.clock import isoformat
from gateway.core.jobs import PeriodicJob
from gateway.ingest.integrations import Integration
from gateway.media import wav
from gateway.media.metrics import MediaMetrics
from gateway.media.pipeline import AudioPipeline
from gateway.media.settings import MediaConfig
from gateway.media.tokens import IngestTokens

log = logging.getLogger("gateway.media")

CONTENT_TYPE = "audio/wav"
SOURCE = "stream"
# Pipeline output is handed to the blob writer in pieces of this size: one await per
# ~0.5 s of 8 kHz audio instead of one per frame; held in memory at most this much.
WRITE_BATCH = 16 * 1024
# How often expired live-recording leases are looked for while the gateway runs (a crashed
# sibling process's streams become 'incomplete' within lease + this).
SWEEP_SECONDS = 60.0


class LiveRecording:
    """The recording side of one live stream. Not thread-safe; one task drives it."""

    def __init__(self, media: MediaService, integration: Integration, call_id: str,
                 platform: str, pipeline: AudioPipeline,
                 writer: RecordingWriter | None) -> None:
        self.media = media
        self.integration = integration
        self.call_id = call_id
        self.platform = platform
        self.pipeline = pipeline
        self.writer = writer
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._last_arrival: float | None = None
        self.longest_gap = 0.0
        # The first checkpoint falls anywhere in [0.5, 1.5) intervals: streams that start
        # together (a busy minute, a restart of the platform) do not all fsync together.
        self._next_checkpoint = self._started + media.config.checkpoint_seconds * (
            0.5 + random.random())
        self._durable = 0
        self._limit = min(media.max_recording_bytes, wav.MAX_DATA_BYTES)
        self.result: dict[str, Any] | None = None
        # Ends the transport (closes the WebSocket / peer connection) at shutdown; the task
        # driving the stream then finishes the recording.
        self.closer: Any = None
        self._finishing: asyncio.Future | None = None
        # Watched streams are closed by MediaService's watchdog after idle_timeout_seconds
        # without a frame (`idle` then tells why); WebRTC sessions time out on their own.
        self.watched = False
        self.idle = False

    # -- hot path -------------------------------------------------------------------------
    def feed(self, track: str, payload: bytes, sequence: int | None = None,
             timestamp_ms: int | None = None, position: int | None = None) -> bool:
        """Add one chunk (synchronous: 50 calls a second per stream). True when output or a
        checkpoint is due: the caller then awaits `service()`."""
        if self.closed:
            raise policy_violation("closed", "the recording has ended")
        now = self._loop.time()
        last = self._last_arrival
        if last is not None and now - last > self.longest_gap:
            self.longest_gap = now - last
        self._last_arrival = now
        self.pipeline.push(track, payload, sequence, timestamp_ms, position)
        return len(self.pipeline.out) >= WRITE_BATCH or now >= self._next_checkpoint

    async def service(self) -> None:
        if len(self.pipeline.out) >= WRITE_BATCH:
            await self._write()
        if self._loop.time() >= self._next_checkpoint:
            await self.checkpoint()

    async def push(self, track: str, payload: bytes, sequence: int | None = None,
                   timestamp_ms: int | None = None, position: int | None = None) -> None:
        if self.feed(track, payload, sequence, timestamp_ms, position):
            await self.service()

    async def _write(self) -> None:
        out = self.pipeline.out
        if not out:
            return
        data = bytes(out)
        out.clear()
        if self.writer is None:
            return   # store_audio is off: stats only
        room = self._limit - self.writer.length
        if len(data) > room:
            data = data[:room - room % (self.pipeline.width * self.pipeline.channels)]
            await self.writer.write(data)
            raise policy_violation("size_limit", "recording reached its size limit")
        await self.writer.write(data)

    # -- durability -----------------------------------------------------------------------
    async def checkpoint(self) -> None:
        self._next_checkpoint = self._loop.time() + self.media.config.checkpoint_seconds
        if self.writer is None or self.closed:
            return
        await self._write()
        durable = await self.writer.sync()
        if durable == self._durable:
            return
        self._durable = durable
        stats = self.stats(None)
        fmt = json.dumps(self.pipeline.format())
        now = isoformat(self.media.clock.now())
        rid, tenant = self.writer.id, self.writer.tenant_id
        await self.media.db.write(lambda tx: tx.execute(
            "INSERT INTO media_checkpoints (recording_id, tenant_id, format, durable_bytes,"
            " stats, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (recording_id) DO"
            " UPDATE SET format = excluded.format, durable_bytes = excluded.durable_bytes,"
            " stats = excluded.stats, updated_at = excluded.updated_at",
            (rid, tenant, fmt, durable, json.dumps(stats), now)))
        self.media.metrics.checkpoints.inc()

    def stats(self, end_reason: str | None) -> dict[str, Any]:
        stats = self.pipeline.snapshot_counters().to_dict(self.pipeline.format(),
                                                         end_reason=end_reason)
        stats["longest_gap_ms"] = round(self.longest_gap * 1000, 1)
        return stats

    # -- end ------------------------------------------------------------------------------
    async def finish(self, end_reason: str, *, complete: bool) -> dict[str, Any] | None:
        """End the recording: 'available' when the stream ended as the platform intends,
        'incomplete' otherwise. Never raises (a failure is logged and counted). Runs as its
        own task: if the caller is cancelled (aiohttp may cancel a handler whose connection
        dropped) the recording is still finished, not abandoned."""
        if self._finishing is None:
            self.closed = True
            self._finishing = asyncio.ensure_future(self._finish(end_reason, complete))
            self.media.finishing.add(self._finishing)
            self._finishing.add_done_callback(self.media.finishing.discard)
        return await asyncio.shield(self._finishing)

    async def _finish(self, end_reason: str, complete: bool) -> dict[str, Any] | None:
        self.media.active.discard(self)
        metrics = self.media.metrics
        metrics.active.labels(self.platform).dec()
        metrics.streams.labels(self.platform, end_reason).inc()
        try:
            try:
                self.pipeline.finish()
                await self._write()
            except MediaProtocolError:
                complete = False     # the size limit cut it; keep what was written
            stats = self.stats(end_reason)
            metrics.frames.labels(self.platform).inc(stats["frames_received"])
            metrics.frames_lost.labels(self.platform).inc(stats["frames_lost"] or 0)
            if self.writer is None:
                await self.media.stats_event(self, stats)
                return None
            if self.writer.length == 0 and stats["frames_received"] == 0:
                await self.writer.abort()      # a stream that carried no audio at all
                await self.media.forget_checkpoint(self.writer.id)
                return None
            fmt = self.pipeline.format()
            prefix = wav.header(fmt["wav_format"], fmt["channels"], fmt["sample_rate"],
                                self.writer.length)
            self.result = await self.writer.finish(
                CONTENT_TYPE, state="available" if complete else "incomplete", stats=stats,
                extra_meta={"prefix": base64.b64encode(prefix).decode(), "format": fmt})
            await self.media.forget_checkpoint(self.writer.id)
            return self.result
        except Exception:
            log.exception("finishing a live recording failed",
                          extra={"route": self.platform})
            if self.writer is not None and not self.writer.closed:
                try:
                    await self.writer.abort()
                except Exception:
                    log.exception("aborting a live recording failed")
            return None


class MediaService:
    """Shared state of the live-audio feature (one per gateway process)."""

    def __init__(self, services: Any, config: MediaConfig) -> None:
        self.services = services
        self.config = config
        self.db = services.db
        self.clock = services.clock
        self.metrics = MediaMetrics(services.metrics.registry)
        self.tokens = IngestTokens(services.db, services.clock)
        self.max_recording_bytes = services.config.limits.max_recording_bytes
        self.active: set[LiveRecording] = set()
        self.finishing: set[asyncio.Future] = set()
        self.stopping = False
        self.webrtc: Any = None        # webrtc.WebRtcService, created at startup
        self.whatsapp: Any = None      # whatsapp.WhatsAppCalls, created on first use
        # Idle streams are closed within a quarter of the idle timeout (at most 1 s late).
        self.watchdog = PeriodicJob("media-watchdog", self._watch,
                                    min(1.0, config.idle_timeout_seconds / 4))
        self.recovery_sweep = PeriodicJob("media-recovery-sweep", self._sweep_tick,
                                          SWEEP_SECONDS)

    # -- streams --------------------------------------------------------------------------
    def at_capacity(self) -> bool:
        return len(self.active) >= self.config.max_streams

    async def link_call(self, integration: Integration, platform_call_id: str,
                        stream_id: str, kind: str) -> str:
        """The call a stream belongs to: the one the platform's webhooks created for this
        platform call id, or a new one (status in-progress: media is flowing)."""
        event = CallEvent(platform=integration.platform,
                          dedupe_key=f"media:{kind}:{stream_id}:start",
                          platform_call_id=platform_call_id, status="in-progress",
                          occurred_at=self.clock.now(), diagnostics={"media": kind})
        result = await self.services.ingest.ingest_events(integration, [event])
        if result.call_ids:
            return result.call_ids[0]
        # A duplicate (the platform reconnected the same stream): look the call up on the
        # writer connection. The shared reader may still be inside an older snapshot while
        # other reads are in flight, and would not see a call committed a moment ago.
        row = await self.db.write(lambda tx: tx.fetchone(
            "SELECT id FROM calls WHERE integration_id = ? AND platform_call_id = ?",
            (integration.id, platform_call_id)))
        return row["id"]

    async def start(self, integration: Integration, call_id: str, platform: str,
                    pipeline: AudioPipeline) -> LiveRecording:
        writer = None
        if integration.options.get("store_audio", True):
            writer = await self.services.recordings.begin(integration.tenant_id, call_id, SOURCE)
        session = LiveRecording(self, integration, call_id, platform, pipeline, writer)
        self.active.add(session)
        self.metrics.active.labels(platform).inc()
        return session

    def pipeline(self, make_decoder, *, tracks, sequenced: bool) -> AudioPipeline:
        return AudioPipeline(make_decoder, tracks=tracks, sequenced=sequenced,
                             reorder_window=self.config.reorder_window_frames,
                             silence_threshold_dbfs=self.config.silence_threshold_dbfs)

    async def stats_event(self, session: LiveRecording, stats: dict[str, Any]) -> None:
        """store_audio is off: the technical stats still reach the call, as an event."""
        event = CallEvent(platform=session.integration.platform,
                          dedupe_key=f"media:stats:{uuid.uuid4()}",
                          platform_call_id=await self._platform_call_id(session.call_id),
                          occurred_at=self.clock.now(), diagnostics={"media_stats": stats})
        await self.services.ingest.ingest_events(session.integration, [event])

    async def _platform_call_id(self, call_id: str) -> str:
        row = await self.db.fetchone("SELECT platform_call_id FROM calls WHERE id = ?",
                                     (call_id,))
        return row["platform_call_id"]

    async def forget_checkpoint(self, recording_id: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM media_checkpoints WHERE recording_id = ?", (recording_id,)))

    async def shutdown(self) -> None:
        """The gateway stops: every live recording ends 'incomplete' with what it has."""
        self.stopping = True
        await self.watchdog.stop()
        await self.recovery_sweep.stop()
        if self.whatsapp is not None:
            await self.whatsapp.close()
        if self.webrtc is not None:
            await self.webrtc.close_all()
        for session in list(self.active):
            if session.closer is not None:
                try:
                    await session.closer(code=1001, message=b"shutting down")
                except Exception:
                    pass
        # The tasks driving the streams finish their recordings; give them a moment.
        for _ in range(50):
            if not self.active:
                break
            await asyncio.sleep(0.1)
        for session in list(self.active):
            await session.finish("shutdown", complete=False)
        if self.finishing:
            await asyncio.gather(*self.finishing, return_exceptions=True)

    # -- crash recovery -------------------------------------------------------------------
    async def start_jobs(self) -> None:
        """Start the idle watchdog and the sweep of crashed siblings' live recordings."""
        await self.watchdog.start()
        await self.recovery_sweep.start()

    async def _watch(self) -> None:
        self.close_idle()

    async def _sweep_tick(self) -> None:
        await self.sweep()

    def close_idle(self) -> None:
        """Close watched streams that sent nothing for idle_timeout_seconds; their tasks
        then finish the recordings as 'incomplete' (idle_timeout)."""
        now = asyncio.get_running_loop().time()
        limit = self.config.idle_timeout_seconds
        for session in list(self.active):
            last = session._last_arrival or session._started
            if session.watched and not session.idle and now - last > limit:
                session.idle = True
                if session.closer is not None:
                    task = asyncio.ensure_future(session.closer(code=1001, message=b"idle"))
                    self.finishing.add(task)
                    task.add_done_callback(self.finishing.discard)

    async def sweep(self) -> dict[str, int]:
        """Recover live recordings whose writer's lease ran out (another process crashed)."""
        now = isoformat(self.clock.now())
        rows = await self.db.fetchall(
            "SELECT id, tenant_id, call_id, source FROM recordings WHERE state = 'writing'"
            " AND source = ? AND lease_until < ?", (SOURCE, now))
        counts: dict[str, int] = {}
        for row in rows:
            outcome = await self.recover_stream(dict(row))
            counts[outcome] = counts.get(outcome, 0) + 1
            self.services.metrics.recovered.labels(f"recording_{outcome}").inc()
        return counts

    async def recover_stream(self, row: dict[str, Any]) -> str:
        recordings = self.services.recordings
        rid, tenant = row["id"], row["tenant_id"]
        checkpoint = await self.db.fetchone(
            "SELECT format, durable_bytes, stats FROM media_checkpoints WHERE recording_id = ?",
            (rid,))
        key = await self.db.fetchone(
            "SELECT r.id, r.key_ref, k.wrapped FROM recordings r LEFT JOIN blob_keys k"
            " ON k.object_id = r.id WHERE r.id = ?", (rid,))
        length = None
        units = None
        if checkpoint is not None and key is not None:
            try:
                # The recording's own key (in the key store; a legacy row: blob_keys).
                reader, units = await recordings.blob_reader(tenant, dict(key))
                length = await self._seal_blob(tenant, rid, reader,
                                               int(checkpoint["durable_bytes"]))
            except (keys.DecryptionError, OSError):
                log.warning("a live recording's temp blob did not survive; removing it")
                length = None
        if length is None:
            await recordings.forget_unfinished(tenant, rid)
            return "deleted"
        fmt = json.loads(checkpoint["format"])
        block = fmt["channels"] * fmt["sample_width"]
        length -= length % block
        prefix = wav.header(fmt["wav_format"], fmt["channels"], fmt["sample_rate"], length)
        stats = json.loads(checkpoint["stats"]) if checkpoint["stats"] else {}
        stats["end_reason"] = "recovered"
        stats["duration_seconds"] = round(length / block / fmt["sample_rate"], 3)
        meta = {"content_type": CONTENT_TYPE, "length": length,
                "prefix": base64.b64encode(prefix).decode(), "format": fmt}
        ring = await self.services.keyring.for_tenant(tenant)
        unit_key = next(iter(units.values()), None) if units else None
        sealed = ring.seal_record(META_RECORD, rid, json.dumps(meta).encode(), unit=unit_key)
        now = isoformat(self.clock.now())

        def unit(tx) -> None:
            tx.execute("UPDATE recordings SET state = 'incomplete', meta = ?, stats = ?,"
                       " lease_until = NULL, updated_at = ? WHERE id = ? AND state = 'writing'",
                       (sealed, json.dumps(stats), now, rid))
            tx.execute("DELETE FROM media_checkpoints WHERE recording_id = ?", (rid,))

        await self.db.write(unit)
        return "incomplete"

    async def _seal_blob(self, tenant: str, rid: str, reader: keys.BlobReader,
                         durable: int) -> int | None:
        """Cut the interrupted blob to its durable segments, re-seal the last one, and make
        it the recording's blob (through the blob-store seam: files or S3). Returns the
        plaintext length, or None when nothing is recoverable. Safe to run again after a
        crash in the middle: commit_partial replaces the blob atomically."""
        blobs = self.services.blobs
        opened = await blobs.open_partial(tenant, rid)
        if opened is None:
            return None
        state, fileobj = opened
        try:
            if state == "complete":
                # finish() had committed the whole blob when the process died: keep all of it.
                return await asyncio.to_thread(self._complete_length, reader, fileobj)
            sealed = await asyncio.to_thread(reader.reseal_truncated, fileobj, durable)
        finally:
            await asyncio.to_thread(fileobj.close)
        if sealed is None:
            return None
        keep, tail, length = sealed
        await blobs.commit_partial(tenant, rid, keep, tail)
        return length

    @staticmethod
    def _complete_length(reader: keys.BlobReader, fileobj: Any) -> int:
        size = fileobj.seek(0, 2)
        segment, header = reader.segment_size, reader.header_length
        whole, rest = divmod(size - header, segment + 16)
        length = whole * segment + (rest - 16 if rest else 0)
        for _ in reader.read_range(fileobj, length, max(0, length - 1), length):
            pass    # authenticates the last segment: a torn blob fails here
        return length

