"""Out of space, against a real `gateway serve` whose data directory is a small tmpfs the
test mounts (issue 13, item 4). Needs root for `mount`; skipped otherwise.

What must hold: /readyz turns 503 (naming the stores) once free space drops below
`[storage] min_free_bytes`, while writes still work; at 0 bytes free an upload answers
507 problem+json, a webhook 503 with Retry-After (or 200 when SQLite still had room in its
WAL, in which case the event is stored), never a 500; nothing is half-written (no temp
blob, no 'writing' row); and once space returns everything works again by itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.hostile.conftest import RestartableGateway
from tests.support.signers import call_updated, new_whsec, standard_delivery

TMPFS_BYTES = 16 * 1024 * 1024
MIN_FREE = 3 * 1024 * 1024


@contextlib.contextmanager
def tmpfs_gateway() -> Iterator[tuple[RestartableGateway, Path]]:
    gw = RestartableGateway(storage=f"min_free_bytes = {MIN_FREE}\n")
    data = Path(gw.dir.name) / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                              str(data)], capture_output=True)
    if mounted.returncode != 0:
        gw.dir.cleanup()
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        gw.__enter__()
        yield gw, data
    finally:
        if gw.proc is not None:
            gw.proc.terminate()
            gw.proc.wait(10)
        subprocess.run(["umount", "-l", str(data)], check=False)
        gw.dir.cleanup()


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, leave: int) -> None:
    """Grow a filler file until `leave` bytes (or nothing) are free."""
    with open(path / "filler", "ab") as f:
        block = b"\0" * (256 * 1024)
        while free_bytes(path) > leave:
            try:
                f.write(block[:max(4096, min(len(block), free_bytes(path) - leave))])
                f.flush()
            except OSError:
                break
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())


def leftovers(data: Path) -> tuple[list[str], int]:
    temp = [p.name for p in (data / "blobs" / "tmp").glob("*.part")]
    with sqlite3.connect(f"file:{data / 'gateway.sqlite3'}?mode=ro", uri=True) as db:
        writing = db.execute("SELECT COUNT(*) FROM recordings WHERE state = 'writing'"
                             ).fetchone()[0]
    return temp, writing


def test_full_disk_is_refused_cleanly_and_heals(tmp_path):
    with tmpfs_gateway() as (gw, data):
        tenant = gw.cli("tenant", "create", "--name", "Full Disk Ltd")
        auth = {"Authorization": f"Bearer {tenant['api_key']}"}
        secret = new_whsec()
        integration = requests.post(gw.url + "/v1/integrations", headers=auth, timeout=10,
                                    json={"platform": "standard",
                                          "credentials": {"secret": secret}}).json()
        hook = f"{gw.url}/v1/hooks/standard/{integration['id']}"

        def webhook() -> requests.Response:
            raw, headers = standard_delivery(
                secret, call_updated(f"call-{uuid.uuid4()}", "completed"), datetime.now(UTC))
            return requests.post(hook, data=raw, headers=headers, timeout=10)

        assert webhook().status_code == 200
        call_id = requests.get(gw.url + "/v1/calls", headers=auth,
                               timeout=10).json()["items"][0]["id"]
        assert requests.get(gw.url + "/readyz", timeout=10).status_code == 200

        # Below min_free_bytes: not ready (naming the stores), but writes still succeed.
        fill(data, leave=MIN_FREE // 2)
        ready = requests.get(gw.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert {"database", "blob_store"} <= set(ready.json()["failing"])
        assert webhook().status_code == 200

        # Nothing left: uploads 507, other writes 503 + Retry-After (or stored), no 500.
        fill(data, leave=0)
        upload = requests.post(f"{gw.url}/v1/calls/{call_id}/recordings", timeout=30,
                               data=os.urandom(2 * 1024 * 1024),
                               headers={**auth, "Content-Type": "audio/wav"})
        assert upload.status_code == 507, upload.text
        assert upload.headers["Content-Type"].startswith("application/problem+json")
        assert upload.json()["type"] == "urn:vgw:problem:insufficient-storage"
        for response in (webhook(), requests.post(
                gw.url + "/v1/legal-holds", headers=auth, timeout=10,
                json={"scope": "tenant", "reason": "audit " + "x" * 2000})):
            assert response.status_code in (200, 201, 422, 503), response.text
            if response.status_code == 503:
                assert response.headers["Retry-After"]
                assert response.json()["type"] == "urn:vgw:problem:unavailable"
        assert leftovers(data) == ([], 0)

        # Space returns: everything heals without a restart.
        (data / "filler").unlink()
        assert requests.get(gw.url + "/readyz", timeout=10).status_code == 200
        assert webhook().status_code == 200
        upload = requests.post(f"{gw.url}/v1/calls/{call_id}/recordings", timeout=30,
                               data=os.urandom(512 * 1024),
                               headers={**auth, "Content-Type": "audio/wav"})
        assert upload.status_code == 201, upload.text
        assert leftovers(data) == ([], 0)
