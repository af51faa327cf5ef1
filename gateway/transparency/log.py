"""The per-tenant transparency log as a service: durable appends, proofs, signed checkpoints.

Storage (migration 0003): `audit_entries` holds each entry's exact bytes, `audit_nodes` the
hash of every complete subtree (docs/transparency.md §1 "Storage"), `audit_heads` each
log's size, and `audit_checkpoints` the signed notes. The pure formats live in
`gateway.transparency`; this module adds the database, the clock and the operator key.

Guarantees:

* **Durable before it returns.** `append` returns once the group commit carrying the entry
  and its nodes is fsync'd; `append_in_tx` writes inside the caller's write unit, so the
  entry is durable exactly when the caller's own writes are (atomic with them).
* **O(log n) appends.** Appending leaf n reads one left sibling per trailing 1-bit of n and
  writes the leaf plus the subtrees it completes (`merkle.append_leaves`); nothing is
  recomputed over the whole tree.
* **No fork.** The head row is read and advanced inside the writer's transaction (BEGIN
  IMMEDIATE serialises processes sharing the file), and `(tenant_id, seq)` is a primary
  key, so even a writer that bypassed the head could not add a second entry at a seq.
* **Proofs in one read.** Which nodes a proof or root needs depends only on the sizes, so
  the node set is planned first and fetched in one query.

Checkpoints are signed when the tree grew: on `checkpoint()` (the tenant's
`GET /v1/transparency/checkpoint`), every `checkpoint_every` appends, and every
`checkpoint_interval` seconds from the background task started by `start()`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter

from gateway.core.clock import Clock
from gateway.core.jobs import PeriodicJob, start_for_app_lifetime
from gateway.store import Database, WriteTx
from gateway.transparency import merkle
from gateway.transparency.checkpoint import (
    format_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key_string,
)
from gateway.transparency.entries import encode_entry, format_time
from gateway.transparency.verify import ExpiredEntry, VerifyReport, build_bundle, verify_bundle

log = logging.getLogger("gateway.audit")

__all__ = ["AuditLog", "AuditLogDamaged", "StoredCheckpoint", "get_audit_log",
           "origin_prefix_from_url", "verify_stored_log"]

# A checkpoint is signed at least every this many appends to one log, so a busy log never
# has a long unsigned tail; and at least every CHECKPOINT_INTERVAL_SECONDS while it grows.
# Signing costs ~50 us plus one durable write: cheap next to 1000 appends.
CHECKPOINT_EVERY = 1000
CHECKPOINT_INTERVAL_SECONDS = 60.0

# Entry pages served at once (GET /entries, the export's page size): at most 256 KiB each
# (entries.MAX_ENTRY_SIZE), usually ~500 bytes.
MAX_ENTRIES_PAGE = 1000

# Placeholder seq/time used to encode an entry before its seq is known: the canonical
# encoding always ends with these two fields (keys sorted: ... scope, seq, time), so the
# writer only swaps the tail inside the transaction instead of re-encoding.
_PLACEHOLDER_TIME = "1970-01-01T00:00:00.000000Z"
_PLACEHOLDER_TAIL = ('"seq":0,"time":"' + _PLACEHOLDER_TIME + '"}').encode()


class AuditLogDamaged(RuntimeError):
    """The stored tree is missing a node it must have (tampering or a broken restore)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "root": base64.b64encode(self.root).decode(),
                "note": self.note, "created_at": self.created_at}


def origin_prefix_from_url(public_base_url: str) -> str:
    """The operator host part of every origin: `gateway.example.com` (with a port if the
    URL has one)."""
    netloc = urlsplit(public_base_url).netloc
    return netloc.rsplit("@", 1)[-1] or "gateway"


def _now_text(clock: Clock) -> str:
    return format_time(clock.now())


def _prepare(entry: dict[str, Any]) -> bytes:
    """Validate and encode everything but seq and time (EntryError if invalid). Done on the
    caller's side so the writer thread only glues the tail on."""
    body = {k: v for k, v in entry.items() if k not in ("seq", "time")}
    data = encode_entry({**body, "seq": 0, "time": _PLACEHOLDER_TIME})
    if not data.endswith(_PLACEHOLDER_TAIL):  # pragma: no cover - the format guarantees it
        raise AssertionError("canonical entry does not end with seq and time")
    return data[: -len(_PLACEHOLDER_TAIL)]


def _finish(prefix: bytes, seq: int, time_text: str) -> bytes:
    return prefix + b'"seq":%d,"time":"%s"}' % (seq, time_text.encode())


class AuditLog:
    """One append-only Merkle log per tenant. See the module docstring."""

    def __init__(self, db: Database, signing_key: Any, clock: Clock, *, origin_prefix: str,
                 checkpoint_every: int = CHECKPOINT_EVERY,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL_SECONDS,
                 registry: CollectorRegistry | None = None) -> None:
        if not origin_prefix or any(c in origin_prefix for c in " +\n"):
            raise ValueError("origin_prefix must be a host name without spaces or '+'")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive")
        self.db = db
        self.signing_key = signing_key
        self.clock = clock
        self.origin_prefix = origin_prefix
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._public_key: bytes = signing_key.public_key_raw()
        # Signs a checkpoint for every log that grew: on its interval, or at once when a
        # log crosses a multiple of checkpoint_every.
        self._checkpoints_job = PeriodicJob("audit-checkpoints", self.sign_due,
                                            checkpoint_interval)
        # append(): entries waiting for their log's next write unit, and the flush tasks.
        self._pending: dict[str, list[tuple[bytes, asyncio.Future[int]]]] = {}
        self._flushes: set[asyncio.Task] = set()
        self._appends = self._failures = self._checkpoints = None
        if registry is not None:
            self._appends = Counter("gateway_audit_appends", "Audit entries appended",
                                    registry=registry)
            self._failures = Counter("gateway_audit_append_failures",
                                     "Audit appends that failed (the access was refused)",
                                     registry=registry)
            self._checkpoints = Counter("gateway_audit_checkpoints",
                                        "Checkpoints signed", registry=registry)

    # -- names and keys ------------------------------------------------------------------
    def default_origin(self, tenant_id: str) -> str:
        return f"{self.origin_prefix}/tenants/{tenant_id}"

    async def origin(self, tenant_id: str) -> str:
        """The log's origin line (also its signed-note key name). Fixed at the first
        append, so a later change of public_base_url does not split a log in two."""
        row = await self.db.fetchone("SELECT origin FROM audit_heads WHERE tenant_id = ?",
                                     (tenant_id,))
        return row["origin"] if row is not None else self.default_origin(tenant_id)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    async def verifier_key(self, tenant_id: str) -> str:
        """The string a tenant pins: `<origin>+<key hash>+<base64(0x01 || key)>`."""
        return verifier_key_string(await self.origin(tenant_id), self._public_key)

    # -- appends -------------------------------------------------------------------------
    async def append(self, tenant_id: str, entry: dict[str, Any]) -> int:
        """Append one entry; returns its seq once it is durable. `EntryError` (a ValueError)
        if the entry is invalid; any database error propagates (nothing was appended).

        Appends to one log that arrive together (in one turn of the event loop) share one
        write unit, in arrival order: the writer then does one head read and one insert
        per table for all of them instead of one each."""
        prefix = _prepare(entry)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = self._pending.get(tenant_id)
        if pending is None:
            pending = self._pending[tenant_id] = []
            task = asyncio.create_task(self._flush(tenant_id))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        pending.append((prefix, future))
        return await future

    async def _flush(self, tenant_id: str) -> None:
        batch = [(p, f) for p, f in self._pending.pop(tenant_id, []) if not f.cancelled()]
        if not batch:
            return
        prefixes = [p for p, _ in batch]
        now = _now_text(self.clock)
        try:
            first = await self.db.write(
                lambda tx: self._append_prepared(tx, tenant_id, prefixes, now))
        except BaseException as exc:
            if self._failures is not None:
                self._failures.inc(len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception)
                                         else RuntimeError("audit append interrupted"))
            if not isinstance(exc, Exception):
                raise
            return
        for i, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(first + i)

    async def append_many(self, tenant_id: str, entries: Sequence[dict[str, Any]]
                          ) -> list[int]:
        """Append several entries in one write unit (one durable commit); their seqs."""
        prefixes = [_prepare(e) for e in entries]
        if not prefixes:
            return []
        now = _now_text(self.clock)
        try:
            first = await self.db.write(
                lambda tx: self._append_prepared(tx, tenant_id, prefixes, now))
        except BaseException:
            if self._failures is not None:
                self._failures.inc()
            raise
        return list(range(first, first + len(prefixes)))

    def append_in_tx(self, tx: WriteTx, tenant_id: str, entry: dict[str, Any]) -> int:
        """Append inside a `db.write` unit (synchronous, on the writer thread): the entry
        commits or rolls back with the caller's own writes. Returns its seq."""
        return self._append_prepared(tx, tenant_id, [_prepare(entry)], _now_text(self.clock))

    def _append_prepared(self, tx: WriteTx, tenant_id: str, prefixes: list[bytes],
                         now: str) -> int:
        # Locked until the commit: appends from every replica are serialised per tenant,
        # so each log stays one linear tree (PostgreSQL; SQLite's writer lock does the same).
        head = tx.fetchone("SELECT size, last_time FROM audit_heads WHERE tenant_id = ?",
                           (tenant_id,), for_update=True)
        size = head["size"] if head is not None else 0
        # Entry times never go backwards within a log (another process's clock may lag).
        when = max(now, head["last_time"]) if head is not None else now
        data = [_finish(p, size + i, when) for i, p in enumerate(prefixes)]

        def get_node(level: int, index: int) -> bytes:
            row = tx.fetchone("SELECT hash FROM audit_nodes WHERE tenant_id = ? AND level = ?"
                              " AND idx = ?", (tenant_id, level, index))
            if row is None:
                raise AuditLogDamaged("audit log node missing")
            return bytes(row["hash"])

        nodes = merkle.append_leaves(size, [merkle.hash_leaf(d) for d in data], get_node)
        if len(data) == 1:  # the common case: one statement per table, not executemany
            tx.execute("INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, ?, ?)",
                       (tenant_id, size, data[0]))
            tx.execute("INSERT INTO audit_nodes (tenant_id, level, idx, hash) VALUES "
                       + ", ".join(["(?, ?, ?, ?)"] * len(nodes)),
                       [v for level, index, h in nodes for v in (tenant_id, level, index, h)])
        else:
            tx.executemany("INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, ?, ?)",
                           [(tenant_id, size + i, d) for i, d in enumerate(data)])
            tx.executemany("INSERT INTO audit_nodes (tenant_id, level, idx, hash)"
                           " VALUES (?, ?, ?, ?)",
                           [(tenant_id, level, index, h) for level, index, h in nodes])
        new_size = size + len(data)
        if head is None:
            tx.execute("INSERT INTO audit_heads (tenant_id, origin, size, last_time)"
                       " VALUES (?, ?, ?, ?)",
                       (tenant_id, self.default_origin(tenant_id), new_size, when))
        elif tx.execute("UPDATE audit_heads SET size = ?, last_time = ? WHERE tenant_id = ?"
                        " AND size = ?", (new_size, when, tenant_id, size)) != 1:
            raise AuditLogDamaged("audit head moved during the append")  # pragma: no cover
        tx.after_commit.append(lambda: self._appended(size, new_size))
        return size

    def _appended(self, old_size: int, new_size: int) -> None:
        if self._appends is not None:
            self._appends.inc(new_size - old_size)
        if new_size // self.checkpoint_every != old_size // self.checkpoint_every:
            self._checkpoints_job.wake()

    # -- reads ---------------------------------------------------------------------------
    async def size(self, tenant_id: str) -> int:
        row = await self.db.fetchone("SELECT size FROM audit_heads WHERE tenant_id = ?",
                                     (tenant_id,))
        return row["size"] if row is not None else 0

    async def entries(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        """Entry bytes for seq in [start, end); b"" for an entry audit retention expired
        (gateway/transparency/retention.py)."""
        rows = await self.db.fetchall(
            "SELECT entry FROM audit_entries WHERE tenant_id = ? AND seq >= ? AND seq < ?"
            " ORDER BY seq", (tenant_id, start, end))
        return [bytes(r["entry"]) for r in rows]

    async def entries_or_expired(self, tenant_id: str, start: int, end: int
                                 ) -> list[bytes | ExpiredEntry]:
        """Like `entries`, with each expired entry as an `ExpiredEntry` carrying its stored
        leaf hash (what stands in for it in the tree)."""
        rows = await self.db.fetchall(
            "SELECT seq, entry, expired_at FROM audit_entries WHERE tenant_id = ? AND seq >= ?"
            " AND seq < ? ORDER BY seq", (tenant_id, start, end))
        expired = [r["seq"] for r in rows if r["expired_at"] is not None]
        leaves: dict[int, bytes] = {}
        if expired:
            leaves = {r["idx"]: bytes(r["hash"]) for r in await self.db.fetchall(
                "SELECT idx, hash FROM audit_nodes WHERE tenant_id = ? AND level = 0"
                " AND idx >= ? AND idx <= ?", (tenant_id, expired[0], expired[-1]))}
        if any(seq not in leaves for seq in expired):
            raise AuditLogDamaged("audit log node missing")
        return [bytes(r["entry"]) if r["expired_at"] is None else ExpiredEntry(leaves[r["seq"]])
                for r in rows]

    async def _with_nodes(self, tenant_id: str, fn: Callable[[merkle.GetNode], Any]) -> Any:
        """Run a pure tree function whose node reads depend only on sizes: plan the reads
        with a dummy lookup, fetch them in one query, run it again for real."""
        wanted: list[tuple[int, int]] = []

        def plan(level: int, index: int) -> bytes:
            wanted.append((level, index))
            return bytes(merkle.HASH_SIZE)

        fn(plan)
        found: dict[tuple[int, int], bytes] = {}
        unique = sorted(set(wanted))
        for i in range(0, len(unique), 200):
            chunk = unique[i:i + 200]
            # A join on VALUES: one primary-key lookup per node. (A row-value IN over
            # VALUES makes SQLite 3.40 scan the tenant's whole node table instead.)
            rows = await self.db.fetchall(
                f"SELECT n.level, n.idx, n.hash FROM (VALUES {','.join('(?, ?)' for _ in chunk)})"
                " AS v JOIN audit_nodes n ON n.tenant_id = ? AND n.level = v.column1"
                " AND n.idx = v.column2", (*[v for pair in chunk for v in pair], tenant_id))
            found.update({(r["level"], r["idx"]): bytes(r["hash"]) for r in rows})

        def get_node(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise AuditLogDamaged("audit log node missing") from None

        return fn(get_node)

    async def root(self, tenant_id: str, size: int) -> bytes:
        return await self._with_nodes(tenant_id, lambda get: merkle.root_hash(size, get))

    async def inclusion_proof(self, tenant_id: str, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]); ValueError unless index < size <= the
        log's size."""
        if size > await self.size(tenant_id):
            raise ValueError("size exceeds the log")
        return await self._with_nodes(
            tenant_id, lambda get: merkle.inclusion_proof(index, size, get))

    async def consistency_proof(self, tenant_id: str, old: int, new: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old, D[new]); ValueError unless old <= new <= size."""
        if new > await self.size(tenant_id):
            raise ValueError("size exceeds the log")
        return await self._with_nodes(
            tenant_id, lambda get: merkle.consistency_proof(old, new, get))

    # -- checkpoints ---------------------------------------------------------------------
    async def latest_checkpoint(self, tenant_id: str) -> StoredCheckpoint | None:
        row = await self.db.fetchone(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant_id = ?"
            " ORDER BY size DESC LIMIT 1", (tenant_id,))
        return _checkpoint(row) if row is not None else None

    async def checkpoints(self, tenant_id: str, *, after: int = -1, limit: int = 1000
                          ) -> list[StoredCheckpoint]:
        rows = await self.db.fetchall(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant_id = ?"
            " AND size > ? ORDER BY size LIMIT ?", (tenant_id, after, limit))
        return [_checkpoint(r) for r in rows]

    async def checkpoint(self, tenant_id: str) -> StoredCheckpoint:
        """The latest checkpoint, signing a new one first if the log grew since."""
        head = await self.db.fetchone(
            "SELECT size, origin FROM audit_heads WHERE tenant_id = ?", (tenant_id,))
        size = head["size"] if head is not None else 0
        origin = head["origin"] if head is not None else self.default_origin(tenant_id)
        latest = await self.latest_checkpoint(tenant_id)
        if latest is not None and latest.size >= size:
            return latest
        root = await self.root(tenant_id, size)
        note = sign_note(format_checkpoint(origin, size, root), origin, self.signing_key.sign,
                         self._public_key)
        now = _now_text(self.clock)
        await self.db.write(lambda tx: tx.execute(
            "INSERT OR IGNORE INTO audit_checkpoints (tenant_id, size, root, note, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (tenant_id, size, root, note, now)))
        if self._checkpoints is not None:
            self._checkpoints.inc()
        row = await self.db.fetchone(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant_id = ?"
            " AND size = ?", (tenant_id, size))
        return _checkpoint(row)

    async def sign_due(self) -> int:
        """Sign a checkpoint for every log that grew since its last one. Returns how many."""
        rows = await self.db.fetchall(
            "SELECT h.tenant_id FROM audit_heads h LEFT JOIN (SELECT tenant_id, MAX(size) AS"
            " size FROM audit_checkpoints GROUP BY tenant_id) c ON c.tenant_id = h.tenant_id"
            " WHERE c.size IS NULL OR c.size < h.size")
        for row in rows:
            await self.checkpoint(row["tenant_id"])
        return len(rows)

    async def start(self) -> None:
        await self._checkpoints_job.start()

    async def stop(self) -> None:
        await self._checkpoints_job.stop()

    # -- export --------------------------------------------------------------------------
    async def bundle(self, tenant_id: str) -> dict[str, Any]:
        """The export format (docs/transparency.md §4) with every stored checkpoint, after
        signing one for the current size. Builds in memory: `GET /export` streams instead."""
        await self.checkpoint(tenant_id)
        origin = await self.origin(tenant_id)
        size = await self.size(tenant_id)
        entries: list[bytes | ExpiredEntry] = []
        for start in range(0, size, MAX_ENTRIES_PAGE):
            entries.extend(await self.entries_or_expired(tenant_id, start,
                                                         start + MAX_ENTRIES_PAGE))
        notes: list[str] = []
        after = -1
        while True:
            page = await self.checkpoints(tenant_id, after=after)
            if not page:
                break
            notes.extend(c.note for c in page)
            after = page[-1].size
        return build_bundle(origin, origin, self._public_key, entries, notes)


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(row["size"], bytes(row["root"]), row["note"], row["created_at"])


def get_audit_log(services: Any) -> AuditLog:
    """The gateway's AuditLog, created on first use and kept in `services.features["audit"]`
    (so CLI commands without the app's startup can append too)."""
    existing = services.features.get("audit")
    if existing is not None:
        return existing
    import keys

    audit = AuditLog(services.db, keys.OperatorSigningKey.load(services.config.signing_key_path),
                     services.clock,
                     origin_prefix=origin_prefix_from_url(services.config.server.public_base_url),
                     registry=services.metrics.registry)
    services.features["audit"] = audit
    return audit


def register(services: Any) -> None:
    """Feature hook (run by `open_services`): `services.features["audit"]` exists from the
    start, for the server and for CLI commands (`retention run`, ...) alike."""
    if services.config.signing_key_path.exists():
        get_audit_log(services)


async def startup(app: Any, services: Any) -> None:
    """Feature hook: register `services.features["audit"]` and start checkpoint signing."""
    await start_for_app_lifetime(app, get_audit_log(services))


async def verify_stored_log(db: Database, tenant_id: str, trusted_key: str) -> VerifyReport:
    """Verify one tenant's log as stored: every stored checkpoint against the entries (as
    `verify_bundle` does for an export), plus the stored node table against the entries,
    the head against the entry count, and the newest entries that no checkpoint covers yet
    against the stored tree. Reads through the seam, so it works on every backend."""
    head = await db.fetchone("SELECT origin, size FROM audit_heads WHERE tenant_id = ?",
                             (tenant_id,))
    if head is None:
        report = VerifyReport()
        report.problems.append("no log for this tenant")
        return report
    rows = await db.fetchall(
        "SELECT seq, entry, expired_at FROM audit_entries WHERE tenant_id = ? ORDER BY seq",
        (tenant_id,))
    notes = [r["note"] for r in await db.fetchall(
        "SELECT note FROM audit_checkpoints WHERE tenant_id = ? ORDER BY size", (tenant_id,))]
    stored_nodes = {(r["level"], r["idx"]): bytes(r["hash"]) for r in await db.fetchall(
        "SELECT level, idx, hash FROM audit_nodes WHERE tenant_id = ?", (tenant_id,))}
    seqs = [r["seq"] for r in rows]
    # An expired entry's stored leaf hash stands in for it (docs/transparency.md §7).
    entries: list[bytes | ExpiredEntry] = [
        bytes(r["entry"]) if r["expired_at"] is None
        else ExpiredEntry(stored_nodes.get((0, r["seq"]), b"")) for r in rows]
    origin, size = head["origin"], head["size"]
    public = parse_verifier_key(trusted_key)[1]
    report = verify_bundle(build_bundle(origin, origin, public, entries, notes),
                           trusted_key=trusted_key)
    if seqs != list(range(len(seqs))):
        missing = sorted(set(range(max(seqs, default=-1) + 1)) - set(seqs))
        report.problems.append(f"log: seqs missing {missing[:10]} (entries deleted)")
    if size != len(entries):
        report.problems.append(f"log: head says {size} entries, {len(entries)} stored "
                               "(entries deleted or head altered)")
    for i, data in enumerate(entries):
        if isinstance(data, ExpiredEntry):
            continue
        if stored_nodes.get((0, i)) != merkle.hash_leaf(data):
            report.problems.append(f"entry {i}: does not match its stored leaf hash "
                                   "(tampered entry or node)")
    # Interior nodes must be what their children hash to.
    for (level, index), h in stored_nodes.items():
        if level == 0:
            continue
        left, right = stored_nodes.get((level - 1, 2 * index)), stored_nodes.get(
            (level - 1, 2 * index + 1))
        if left is None or right is None or merkle.hash_children(left, right) != h:
            report.problems.append(f"node ({level}, {index}): does not match its children "
                                   "(tampered node)")
    report.ok = not report.problems
    return report
