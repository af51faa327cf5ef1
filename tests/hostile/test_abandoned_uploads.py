"""Abandoned uploads are swept while the gateway runs (issue 13, item 5): a 'writing'
recording and its temp ciphertext left by a writer that stopped (a crashed process, a
killed client) are removed by the periodic job once the lease has expired, without a
restart, and counted in gateway_recovered_items_total."""

from __future__ import annotations

import asyncio
import os

from gateway.calls.recordings import LEASE_SECONDS
from tests.access.conftest import make_call
from tests.ingest.helpers import sample
from tests.support.server import RunningGateway


async def test_the_periodic_sweep_removes_an_abandoned_upload(gateway: RunningGateway):
    tenant = await gateway.new_tenant("Abandoned Ltd")
    call_id = await make_call(gateway, tenant)
    recordings = gateway.services.recordings
    # A writer that then goes silent, as a crashed process's would: row, key, temp blob.
    writer = await recordings.begin(tenant.id, call_id, "upload")
    await writer.write(os.urandom(3 * 1024 * 1024))
    await writer.sync()
    temp = list((gateway.config.data_dir / "blobs" / "tmp").glob("*.part"))
    assert len(temp) == 1

    async def writing_rows() -> int:
        row = await gateway.services.db.fetchone(
            "SELECT COUNT(*) AS n FROM recordings WHERE state = 'writing'")
        return row["n"]

    sweep = recordings.sweep
    assert sweep is not None and sweep.running
    sweep.wake()                            # within the lease: kept (its writer may be alive)
    await asyncio.sleep(0.05)
    await sweep.idle()
    assert await writing_rows() == 1 and temp[0].exists()

    gateway.clock.advance(LEASE_SECONDS + 1)
    sweep.wake()
    await asyncio.sleep(0.05)
    await sweep.idle()
    assert await writing_rows() == 0
    assert not temp[0].exists()
    assert sample(gateway, "gateway_recovered_items_total", kind="recording_deleted") == 1
