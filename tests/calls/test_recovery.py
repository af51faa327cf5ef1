"""Crashes leave no half state: an interrupted upload is never visible and leaves no blob;
what a dead process left behind is cleaned at the next start."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from gateway.calls.recordings import LEASE_SECONDS
from tests.calls.helpers import one_call


def _blob_files(gateway):
    root = gateway.config.blob_dir
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
            if not f.startswith(".")]


async def test_client_disconnect_mid_upload_leaves_nothing(gateway):
    tenant, call_id = await one_call(gateway, "pc-crash")

    async def body():
        yield os.urandom(300_000)
        raise ConnectionResetError("client went away")

    try:
        async with gateway.http.post(f"{gateway.url}/v1/calls/{call_id}/recordings",
                                     data=body(), headers=tenant.auth) as response:
            await response.read()
    except (aiohttp.ClientError, ConnectionResetError):
        pass
    # The server notices the broken stream and aborts the writer.
    for _ in range(100):
        rows = await gateway.services.db.fetchall("SELECT id FROM recordings")
        if not rows:
            break
        await asyncio.sleep(0.05)
    assert rows == []
    assert await gateway.services.db.fetchall("SELECT object_id FROM blob_keys") == []
    assert _blob_files(gateway) == []
    _, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    assert call["recordings"] == []


# File-store internals (the temp file a dead writer left); the S3 store's abandoned
# multipart uploads are covered in tests/store/test_s3_blobs.py.
@pytest.mark.backends("sqlite")
async def test_recovery_removes_what_a_dead_writer_left(gateway):
    tenant, call_id = await one_call(gateway, "pc-crash")
    services = gateway.services
    # A writer that died: row 'writing', key row, half a temp file.
    writer = await services.recordings.begin(tenant.id, call_id, "upload")
    await writer.write(os.urandom(200_000))
    await writer._sink._flush()
    # And a stray temp file no row knows about.
    stray = services.blobs.tmp_dir / "00000000-0000-0000-0000-000000000000.part"
    stray.write_bytes(b"x" * 10)
    # While the lease holds, recovery (another process starting) leaves it alone.
    counts = await services.recordings.recover()
    assert counts.get("deleted", 0) == 0
    assert (await services.db.fetchone("SELECT state FROM recordings"))["state"] == "writing"
    gateway.clock.advance(LEASE_SECONDS + 1)
    counts = await services.recordings.recover()
    assert counts["deleted"] == 1
    assert await services.db.fetchall("SELECT id FROM recordings") == []
    assert await services.db.fetchall("SELECT object_id FROM blob_keys") == []
    assert _blob_files(gateway) == []
    _, call, _ = await gateway.request("GET", f"/v1/calls/{call_id}", headers=tenant.auth)
    assert call["recordings"] == []
