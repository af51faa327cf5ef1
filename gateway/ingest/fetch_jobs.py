"""The recording-fetch job table (`recording_fetch_jobs`): insert, claim with a lease,
reschedule, finish, hand back, count. SQL only: no HTTP, no keys, no retry policy.

Invariants:
- A job is unique per (integration, SHA-256 of the platform's recording id): inserting an
  announcement again (a platform redelivery) is a no-op.
- A job is 'running' only under a lease. A lease that ran out means its worker died
  mid-attempt: the claim that takes it over counts that lost attempt, and a job whose
  attempts are used up that way fails as 'abandoned', so a recording that crashes the
  process cannot be retried forever.
- Every state change is one `Database.write` (durable when it returns); the outcome of an
  attempt is written shielded from cancellation, so a shutdown cannot lose it.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from typing import Any

from gateway.core.clock import Clock, isoformat
from gateway.store import Database, WriteTx


class FetchJobQueue:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def insert(self, job_id: str, tenant_id: str, integration_id: str, call_id: str,
                     platform_recording_id: str, sealed_request: bytes) -> bool:
        """A new 'pending' job, due now; False if this recording already has one."""
        ref = hashlib.sha256(platform_recording_id.encode()).hexdigest()
        now = isoformat(self.clock.now())

        def unit(tx: WriteTx) -> bool:
            return tx.execute(
                "INSERT INTO recording_fetch_jobs (id, tenant_id, integration_id, call_id,"
                " recording_ref, request, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                " ON CONFLICT (integration_id, recording_ref) DO NOTHING",
                (job_id, tenant_id, integration_id, call_id, ref, sealed_request, now, now,
                 now)) > 0

        return await self.db.write(unit)

    async def claim(self, limit: int, lease_seconds: float,
                    max_attempts: int) -> list[dict[str, Any]]:
        """Up to `limit` due jobs, now 'running' under a lease, oldest due first."""
        now = self.clock.now()
        now_text = isoformat(now)
        lease = isoformat(now + timedelta(seconds=lease_seconds))

        def unit(tx: WriteTx) -> list[dict[str, Any]]:
            # Locked rows: a replica claiming at the same moment waits, then re-reads the
            # row as claimed (PostgreSQL re-checks the WHERE) and skips it, so one job is
            # never downloaded twice into two recordings.
            rows = tx.fetchall(
                "SELECT id, tenant_id, integration_id, call_id, request, attempts, state"
                " FROM recording_fetch_jobs WHERE (state = 'pending' AND next_attempt_at <= ?)"
                " OR (state = 'running' AND lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
                (now_text, now_text, limit), for_update=True)
            claimed = []
            for row in rows:
                job = dict(row)
                if job["state"] == "running":
                    # Its worker died mid-attempt: that attempt counts.
                    job["attempts"] += 1
                    if job["attempts"] >= max_attempts:
                        tx.execute("UPDATE recording_fetch_jobs SET state = 'failed',"
                                   " attempts = ?, lease_until = NULL, last_error = 'abandoned',"
                                   " updated_at = ? WHERE id = ?",
                                   (job["attempts"], now_text, job["id"]))
                        continue
                tx.execute("UPDATE recording_fetch_jobs SET state = 'running', attempts = ?,"
                           " lease_until = ?, updated_at = ? WHERE id = ?",
                           (job["attempts"], lease, now_text, job["id"]))
                claimed.append(job)
            return claimed

        return await self.db.write(unit)

    async def reschedule(self, job_id: str, attempts: int, due: datetime, code: str) -> None:
        """Back to 'pending' until `due`, after a transient failure."""
        now = isoformat(self.clock.now())
        await asyncio.shield(self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = 'pending', attempts = ?,"
            " next_attempt_at = ?, lease_until = NULL, last_error = ?, updated_at = ?"
            " WHERE id = ?", (attempts, isoformat(due), code, now, job_id))))

    async def finish(self, job_id: str, attempts: int, state: str, code: str | None,
                     recording_id: str | None) -> None:
        """'done' (with the stored recording) or 'failed' (with its code)."""
        now = isoformat(self.clock.now())
        await asyncio.shield(self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = ?, attempts = ?, lease_until = NULL,"
            " last_error = ?, recording_id = ?, updated_at = ? WHERE id = ?",
            (state, attempts, code, recording_id, now, job_id))))

    async def hand_back(self, job_ids: set[str]) -> None:
        """Running jobs cut off by a clean shutdown: due again at once, attempt not counted
        (a crash instead leaves them to their lease)."""
        if not job_ids:
            return
        now = isoformat(self.clock.now())
        marks = ",".join("?" * len(job_ids))
        await self.db.write(lambda tx: tx.execute(
            "UPDATE recording_fetch_jobs SET state = 'pending', lease_until = NULL,"
            f" next_attempt_at = ?, updated_at = ? WHERE state = 'running' AND id IN"
            f" ({marks})", (now, now, *job_ids)))

    async def depth(self) -> int:
        """Jobs pending or running."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM recording_fetch_jobs WHERE state IN ('pending','running')")
        return row["n"] if row else 0

    async def for_call(self, call_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, state, attempts, last_error, recording_id, next_attempt_at,"
            " created_at, updated_at FROM recording_fetch_jobs WHERE call_id = ?"
            " ORDER BY created_at, id", (call_id,))
        return [dict(r) for r in rows]
