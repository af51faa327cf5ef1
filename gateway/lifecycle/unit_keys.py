"""Unit keys in the key store: one key per erasable unit (a call's parties, each event,
each recording, each legal hold), written in per-tenant segments that share one key-store
write per batch, and deleted from the key store when the unit is erased, with a deletion
ledger beside them.

Invariants:
- A new key is durable in the key store before `new_keys` returns, so before the rows
  sealed under it commit (a crash in between leaves a key that seals nothing: harmless).
- Writes are batched per tenant like the database's group commit: while one segment PUT
  is in flight, every key asked for joins the next segment, so the key store costs one
  fsync (file) or one PUT (S3) per batch, never one per call.
- A key store whose writes are dear (`unit_keys_ahead` > 0: S3, a network PUT and the
  server's CPU per segment) gets keys written ahead instead: each tenant's keys are handed
  out from segments already in the key store, the next one written in the background
  when half are used, so ingest waits for no PUT and pays one per `unit_keys_ahead` keys.
  A spare key never handed out seals nothing (like a key left by a crash); it stays in
  its segment until erasure or offboarding removes the segment.
- Names start with the tenant id: `<tenant>/units/<segment id>` (segments) and
  `<tenant>/ledger/<time>-<id>` (deletion receipts: ids only, never a number or a key).
- Erasing rewrites each touched segment without the erased entries under a fresh
  segment key (the key store's `put` shreds what it replaces) or deletes the segment when
  nothing is left, `REWRITE_GROUP` segments per key-store batch (`put_many`,
  `delete_many`), each group's segments locked in name order. Rewrites of one segment
  are serialised in this process (its lock lives while anyone holds or awaits it); across
  replicas two rewrites of one segment can race (each read the segment before the other
  wrote it) and the later write brings back a key the earlier one erased. Every replica
  repairs that periodically (`replay_recent`, gateway/lifecycle/ledger.py's job): the keys
  named by ledger entries of the last few minutes are deleted again, so a resurrected key
  lives at most one job interval; the start-up replay re-deletes every listed key.
- What a request loaded (`pin`) stays readable to it whatever the shared segment cache
  (`SEGMENT_CACHE` segments) evicts meanwhile: an erased-looking key is really erased,
  never a cache miss.
- Erasure writes the ledger entry before deleting keys and after the rows' commit (an
  erasure in several write units records each unit, then deletes all their keys), and
  start-up replays every ledger entry: rows named there that a restored database brings
  back are deleted again, and keys a restored key store brings back are deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import keys
from gateway.core.clock import Clock, isoformat

__all__ = ["UnitKeys", "UnitRefs", "segment_name", "LEDGER_PREFIX", "truncate_wal"]

UnitRefs = dict[tuple[uuid.UUID, uuid.UUID], keys.UnitKey]
LEDGER_PREFIX = "ledger"
# Opened segments kept in memory (each up to MAX_SEGMENT_ENTRIES keys): reads of recent
# calls hit the segment their batch wrote. 256 x ~1k entries is a few MiB.
SEGMENT_CACHE = 256
# How long an opened segment is trusted before it is read again, as for tenant rings
# (gateway/tenants/keyring.RING_CACHE_SECONDS): an erase on another replica removes the
# rows at once, the cached key only lives this long after.
SEGMENT_CACHE_SECONDS = 30.0
# An erasure's segments are locked, read and rewritten this many at a time (one key-store
# batch each way).
REWRITE_GROUP = 64
GROUPS_IN_FLIGHT = 3


async def truncate_wal(db: Any) -> None:
    """After a deletion batch: a SQLite database truncates its WAL (the deleted rows' old
    page images); PostgreSQL has nothing to do here (docs/retention-and-dsr.md)."""
    truncate = getattr(db, "truncate_wal", None)
    if truncate is not None:
        await truncate()


def segment_name(tenant_id: str, segment_id: uuid.UUID) -> str:
    return f"{uuid.UUID(tenant_id)}/units/{segment_id}"


async def _nothing() -> None:
    return None


class _Durable:
    """Awaitable any number of times (or never): done when the keys' segment write is; a
    waiter's cancellation never cancels the write others wait for."""

    __slots__ = ("_done",)

    def __init__(self, done: asyncio.Future[None] | None) -> None:
        self._done = done

    def __await__(self):
        if self._done is None:
            return _nothing().__await__()
        return asyncio.shield(self._done).__await__()


_DONE = _Durable(None)


class _Batch:
    __slots__ = ("segment_id", "units", "done")

    def __init__(self) -> None:
        self.segment_id = uuid.uuid4()
        self.units: list[keys.UnitKey] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _TenantView:
    __slots__ = ("_owner", "_tenant_id")

    def __init__(self, owner: UnitKeys, tenant_id: str) -> None:
        self._owner = owner
        self._tenant_id = tenant_id

    def get(self, ref: tuple[uuid.UUID, uuid.UUID]) -> keys.UnitKey | None:
        cached = self._owner._cache.get(segment_name(self._tenant_id, ref[0]))
        return cached[0].get(ref[1]) if cached is not None else None


class _Pinned:
    """Unit keys one request loaded (`UnitKeys.pin`), looked up before the shared cache:
    the cache may evict a segment before the request opens its records (a subject on
    more segments than the cache holds, or other requests loading meanwhile)."""

    __slots__ = ("_refs", "_view")

    def __init__(self, refs: UnitRefs, view: _TenantView) -> None:
        self._refs = refs
        self._view = view

    def get(self, ref: tuple[uuid.UUID, uuid.UUID]) -> keys.UnitKey | None:
        unit = self._refs.get(ref)
        return unit if unit is not None else self._view.get(ref)


class UnitKeys:
    def __init__(self, key_store: Any, wrapping_key: Any, clock: Clock) -> None:
        self.key_store = key_store
        # async (tenant id) -> keys.RootKeyProvider: the tenant root key (KeyRing.wrapping_key)
        self.wrapping_key = wrapping_key
        self.clock = clock
        self._open: dict[str, _Batch] = {}
        self._flush_locks: dict[str, asyncio.Lock] = {}
        self._segment_locks: dict[str, list[Any]] = {}   # name -> [lock, holders]
        self._cache: OrderedDict[str, tuple[Mapping[uuid.UUID, keys.UnitKey], float]] = \
            OrderedDict()
        # Keys written ahead (see the invariants): spare keys per tenant, the refill in
        # flight per tenant, and a generation per tenant that offboarding bumps so a refill
        # finishing afterwards adds nothing.
        self._ahead = min(int(getattr(key_store, "unit_keys_ahead", 0)),
                          keys.MAX_SEGMENT_ENTRIES)
        self._spare: dict[str, deque[keys.UnitKey]] = {}
        self._refilling: dict[str, asyncio.Future[None]] = {}
        self._generation: dict[str, int] = {}
        # Ledger entries read by `replay_recent`, per tenant: name -> the keys it names.
        self._recent: dict[str, dict[str, list[tuple[uuid.UUID, uuid.UUID]]]] = {}

    # -- new keys ------------------------------------------------------------------------
    async def new_keys(self, tenant_id: str, count: int) -> list[keys.UnitKey]:
        """`count` new unit keys, durable in the key store when this returns."""
        units, durable = await self.reserve_keys(tenant_id, count)
        await durable
        return units

    async def reserve_keys(self, tenant_id: str, count: int
                           ) -> tuple[list[keys.UnitKey], Awaitable[None]]:
        """`count` new unit keys now, and what to await before anything sealed under them
        may become durable (a recording: before its blob is committed or checkpointed).
        The key-store write then overlaps the caller's own first commit."""
        if count <= 0:
            return [], _DONE
        if self._ahead:
            return await self._take_spare(tenant_id, count), _DONE
        batch = self._open.get(tenant_id)
        if batch is None or len(batch.units) + count > keys.MAX_SEGMENT_ENTRIES:
            batch = self._open[tenant_id] = _Batch()
            asyncio.get_running_loop().create_task(self._flush(tenant_id, batch))
        units = keys.new_unit_keys(batch.segment_id, count)
        batch.units.extend(units)
        return units, _Durable(batch.done)

    async def _flush(self, tenant_id: str, batch: _Batch) -> None:
        lock = self._flush_locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            # From here on this batch is closed: later keys start the next one, which
            # waits for this PUT (one write in flight per tenant, the group commit).
            if self._open.get(tenant_id) is batch:
                del self._open[tenant_id]
            try:
                data = keys.encode_segment(await self.wrapping_key(tenant_id),
                                           uuid.UUID(tenant_id), batch.segment_id, batch.units)
                await self.key_store.put(segment_name(tenant_id, batch.segment_id), data)
            except BaseException as exc:
                batch.done.set_exception(exc)
                batch.done.exception()   # retrieved: waiters re-raise it
                return
            self._remember(segment_name(tenant_id, batch.segment_id),
                           {u.entry_id: u for u in batch.units})
            batch.done.set_result(None)

    async def _take_spare(self, tenant_id: str, count: int) -> list[keys.UnitKey]:
        spare = self._spare.setdefault(tenant_id, deque())
        while len(spare) < count:
            await asyncio.shield(self._refill(tenant_id, count - len(spare)))
            spare = self._spare.setdefault(tenant_id, deque())
        units = [spare.popleft() for _ in range(count)]
        if len(spare) < self._ahead // 2 and tenant_id not in self._refilling:
            self._refill(tenant_id, 0)     # in the background: nobody waits for it
        return units

    def _refill(self, tenant_id: str, wanted: int) -> asyncio.Future[None]:
        """The one segment write in flight for this tenant (started if none): at least
        `unit_keys_ahead` new keys, durable, added to the spares when it completes."""
        running = self._refilling.get(tenant_id)
        if running is not None:
            return running
        size = min(max(self._ahead, wanted), keys.MAX_SEGMENT_ENTRIES)
        generation = self._generation.get(tenant_id, 0)

        async def write() -> None:
            try:
                segment_id = uuid.uuid4()
                units = keys.new_unit_keys(segment_id, size)
                data = keys.encode_segment(await self.wrapping_key(tenant_id),
                                           uuid.UUID(tenant_id), segment_id, units)
                name = segment_name(tenant_id, segment_id)
                await self.key_store.put(name, data)
                if self._generation.get(tenant_id, 0) == generation:
                    self._remember(name, {u.entry_id: u for u in units})
                    self._spare.setdefault(tenant_id, deque()).extend(units)
            finally:
                self._refilling.pop(tenant_id, None)

        task = asyncio.get_running_loop().create_task(write())
        # A background refill's failure is retried by the next caller that needs keys.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._refilling[tenant_id] = task
        return task

    async def store_units(self, tenant_id: str, segment_id: uuid.UUID,
                          units: list[keys.UnitKey]) -> None:
        """Write one segment holding exactly `units` (all of `segment_id`), durable when
        this returns: keys made outside `new_keys` (a recording's data key moved in from
        the database, gateway/calls/recordings.migrate_recording_keys)."""
        name = segment_name(tenant_id, segment_id)
        await self.key_store.put(name, keys.encode_segment(
            await self.wrapping_key(tenant_id), uuid.UUID(tenant_id), segment_id, units))
        self._remember(name, {u.entry_id: u for u in units})

    # -- reading -------------------------------------------------------------------------
    def view(self, tenant_id: str) -> _TenantView:
        """What a tenant's ring looks unit keys up in (keys.open_tenant_keys(units=...)):
        the segments loaded so far; `load` (or `pin`) fills it before a read."""
        return _TenantView(self, tenant_id)

    async def pin(self, tenant_id: str, sealed: Iterable[bytes | None]) -> _Pinned:
        """Load the unit keys these sealed values need and return where to look them up
        (`TenantKeys.open_record(units=...)`): those keys whatever the cache evicts
        meanwhile, then the tenant's cached segments."""
        return _Pinned(await self.load(tenant_id, sealed), self.view(tenant_id))

    def _remember(self, name: str, entries: Mapping[uuid.UUID, keys.UnitKey]) -> None:
        self._cache[name] = (entries, time.monotonic())
        self._cache.move_to_end(name)
        while len(self._cache) > SEGMENT_CACHE:
            self._cache.popitem(last=False)

    async def _segments(self, tenant_id: str, segment_ids: list[uuid.UUID]
                        ) -> list[Mapping[uuid.UUID, keys.UnitKey]]:
        """These segments' entries, in order: from the cache while fresh, the others read
        in one key-store batch (`get_many`); a missing segment has none."""
        out: list[Mapping[uuid.UUID, keys.UnitKey] | None] = []
        missing: list[int] = []
        now = time.monotonic()
        for i, segment_id in enumerate(segment_ids):
            cached = self._cache.get(segment_name(tenant_id, segment_id))
            if cached is not None and now - cached[1] < SEGMENT_CACHE_SECONDS:
                out.append(cached[0])
            else:
                out.append(None)
                missing.append(i)
        if missing:
            found = await self.key_store.get_many(
                [segment_name(tenant_id, segment_ids[i]) for i in missing])
            wrapping = await self.wrapping_key(tenant_id)
            tenant = uuid.UUID(tenant_id)
            for i, data in zip(missing, found, strict=True):
                entries: Mapping[uuid.UUID, keys.UnitKey] = {} if data is None else \
                    keys.decode_segment(wrapping, tenant, segment_ids[i], data)
                self._remember(segment_name(tenant_id, segment_ids[i]), entries)
                out[i] = entries
        return out  # type: ignore[return-value]

    async def load(self, tenant_id: str, sealed: Iterable[bytes | None]) -> UnitRefs:
        """The unit keys that open these sealed values (format-2 records); an erased unit's
        key is simply absent, so opening its record fails like any tampered record."""
        wanted: dict[uuid.UUID, set[uuid.UUID]] = {}
        for value in sealed:
            ref = keys.unit_ref(bytes(value)) if value is not None else None
            if ref is not None:
                wanted.setdefault(ref[0], set()).add(ref[1])
        out: UnitRefs = {}
        ordered = list(wanted)
        # A group of segments at a time: only their entries, not the whole segments,
        # stay in memory after (a subject on thousands of segments).
        for start in range(0, len(ordered), REWRITE_GROUP):
            group = ordered[start:start + REWRITE_GROUP]
            for segment_id, segment in zip(group, await self._segments(tenant_id, group),
                                           strict=True):
                self._pick(wanted[segment_id], segment, out)
        return out

    @staticmethod
    def _pick(entries: set[uuid.UUID], segment: Mapping[uuid.UUID, keys.UnitKey],
              out: UnitRefs) -> None:
        for entry in entries:
            unit = segment.get(entry)
            if unit is not None:
                out[unit.ref] = unit

    # -- erasing -------------------------------------------------------------------------
    async def erase(self, tenant_id: str, sealed: Iterable[bytes | None], *,
                    rows: dict[str, list[str]] | None = None) -> int:
        """Delete the unit keys of these sealed values from the key store, after writing a
        ledger entry naming them and the deleted `rows` ({"calls": [...], "events":
        [...]}). Returns how many keys were deleted."""
        return await self.delete_recorded(
            tenant_id, await self.record_erasure(tenant_id, sealed, rows=rows))

    async def record_erasure(self, tenant_id: str, sealed: Iterable[bytes | None], *,
                             rows: dict[str, list[str]] | None = None
                             ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """`erase`'s first half: the ledger entry naming these values' unit keys and the
        deleted `rows`; returns the keys, for `delete_recorded` (an erasure in several
        write units records each after its commit and deletes all keys once, so a
        segment holding keys of several units is rewritten once)."""
        refs = sorted({ref for value in sealed if value is not None
                       for ref in [keys.unit_ref(bytes(value))] if ref is not None})
        if refs or any((rows or {}).values()):
            await self._write_ledger(tenant_id, refs, rows or {})
        return refs

    async def delete_recorded(self, tenant_id: str,
                              refs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> int:
        """`erase`'s second half: delete keys a ledger entry already names (a crash before
        this leaves them to the start-up replay). Returns how many were deleted."""
        return await self._delete_refs(tenant_id, refs)

    async def discard(self, tenant_id: str, sealed: Iterable[bytes | None]) -> int:
        """Delete the unit keys of these values without a ledger entry: keys that never
        sealed anything a tenant saw (a data key moved in twice by racing processes)."""
        return await self._delete_refs(tenant_id, [
            ref for value in sealed if value is not None
            for ref in [keys.unit_ref(bytes(value))] if ref is not None])

    def _stamp(self, seconds_ago: float = 0.0) -> str:
        """A ledger name's time part; names sort by it (fixed width, UTC)."""
        return isoformat(self.clock.now() - timedelta(seconds=seconds_ago)
                         ).replace(":", "").replace("-", "")

    async def _write_ledger(self, tenant_id: str, refs: list[tuple[uuid.UUID, uuid.UUID]],
                            rows: dict[str, list[str]]) -> None:
        stamp = self._stamp()
        body = {"at": isoformat(self.clock.now()),
                "units": [f"{s}.{e}" for s, e in refs],
                **{k: sorted(v) for k, v in rows.items() if v}}
        await self.key_store.put(
            f"{uuid.UUID(tenant_id)}/{LEDGER_PREFIX}/{stamp}-{uuid.uuid4().hex}",
            json.dumps(body, separators=(",", ":")).encode())

    async def _delete_refs(self, tenant_id: str, refs: Iterable[tuple[uuid.UUID, uuid.UUID]]
                           ) -> int:
        by_segment: dict[uuid.UUID, set[uuid.UUID]] = {}
        for segment_id, entry in refs:
            by_segment.setdefault(segment_id, set()).add(entry)
        # Segments in name order, in groups: each group's segments are locked in that
        # order (two erasures never wait on each other in a circle), read together, and
        # rewritten or deleted in one key-store batch (files: one directory fsync; S3:
        # concurrent PUTs) instead of one write after another. A few groups run at once
        # (disjoint segments): one's encryption while another's reads and fsyncs wait.
        ordered = sorted(by_segment, key=lambda s: segment_name(tenant_id, s))
        gate = asyncio.Semaphore(GROUPS_IN_FLIGHT)

        async def one(group: list[uuid.UUID]) -> int:
            async with gate:
                return await self._rewrite_group(tenant_id, {s: by_segment[s] for s in group})
        # Every group runs to its end; then the first failure (as raised: a 503 stays one).
        done = await asyncio.gather(*(one(ordered[start:start + REWRITE_GROUP])
                                      for start in range(0, len(ordered), REWRITE_GROUP)),
                                    return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):
                raise result
        return sum(done)

    async def _rewrite_group(self, tenant_id: str, group: dict[uuid.UUID, set[uuid.UUID]]
                             ) -> int:
        names = {s: segment_name(tenant_id, s) for s in group}
        async with contextlib.AsyncExitStack() as stack:
            for segment_id in group:
                await stack.enter_async_context(self._segment_lock(names[segment_id]))
            for name in names.values():
                self._cache.pop(name, None)     # read what the key store holds now
            current = await self._segments(tenant_id, list(group))
            wrapping = await self.wrapping_key(tenant_id)
            tenant = uuid.UUID(tenant_id)
            rewrites: dict[str, bytes] = {}
            kept: dict[str, Mapping[uuid.UUID, keys.UnitKey]] = {}
            emptied: list[str] = []
            deleted = 0
            for (segment_id, entries), segment in zip(group.items(), current, strict=True):
                gone = [e for e in entries if e in segment]
                if not gone:
                    continue
                deleted += len(gone)
                name = names[segment_id]
                if len(gone) == len(segment):
                    emptied.append(name)
                    continue
                remaining = (segment.without(gone) if isinstance(segment, keys.SegmentEntries)
                             else {e: u for e, u in segment.items() if e not in entries})
                kept[name] = remaining
                rewrites[name] = (remaining.encode(wrapping, tenant)
                                  if isinstance(remaining, keys.SegmentEntries)
                                  else keys.encode_segment(wrapping, tenant, segment_id,
                                                           remaining.values()))
            for name in (*rewrites, *emptied):
                self._cache.pop(name, None)
            if rewrites:
                await self.key_store.put_many(rewrites)
                for name, remaining in kept.items():
                    self._remember(name, remaining)
            if emptied:
                await self.key_store.delete_many(emptied)
            return deleted

    @contextlib.asynccontextmanager
    async def _segment_lock(self, name: str):
        """Rewrites of one segment one at a time in this process; the lock lives while
        anyone holds or waits for it (dropping it earlier would let a newcomer in)."""
        entry = self._segment_locks.get(name)
        if entry is None:
            entry = self._segment_locks[name] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._segment_locks[name]

    async def ledger(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every deletion receipt of the tenant's ledger, oldest first."""
        out = []
        for name in await self.key_store.list(f"{uuid.UUID(tenant_id)}/{LEDGER_PREFIX}/"):
            data = await self.key_store.get(name)
            if data is not None:
                out.append(json.loads(data))
        return out

    async def replay_refs(self, tenant_id: str, entries: list[dict[str, Any]]) -> int:
        """Delete again every key a ledger entry names (a restored key store, or a segment
        rewrite another replica lost)."""
        refs = []
        for entry in entries:
            for text in entry.get("units", []):
                segment, _, unit = text.partition(".")
                refs.append((uuid.UUID(segment), uuid.UUID(unit)))
        return await self._delete_refs(tenant_id, refs) if refs else 0

    async def replay_recent(self, tenant_id: str, window_seconds: float) -> int:
        """Delete again the keys named by ledger entries written in the last
        `window_seconds` (the periodic repair of a lost segment update, see the
        invariants); entries already read are kept in memory, so a tick reads the listing,
        new entries and the touched segments. Returns how many keys were found again."""
        prefix = f"{uuid.UUID(tenant_id)}/{LEDGER_PREFIX}/"
        since = prefix + self._stamp(window_seconds)
        seen = self._recent.setdefault(tenant_id, {})
        names = [n for n in await self.key_store.list(prefix) if n >= since]
        for name in list(seen):
            if name < since:
                del seen[name]
        refs: set[tuple[uuid.UUID, uuid.UUID]] = set()
        for name in names:
            if name not in seen:
                data = await self.key_store.get(name)
                seen[name] = [] if data is None else [
                    (uuid.UUID(s), uuid.UUID(e)) for s, _, e in
                    (text.partition(".") for text in json.loads(data).get("units", []))]
            refs.update(seen[name])
        return await self._delete_refs(tenant_id, sorted(refs)) if refs else 0

    async def forget_tenant(self, tenant_id: str) -> int:
        """Offboarding: delete every segment and ledger entry of the tenant."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._spare.pop(tenant_id, None)
        names = await self.key_store.list(f"{uuid.UUID(tenant_id)}/")
        for name in names:
            await self.key_store.delete(name)
            self._cache.pop(name, None)
        return len(names)
