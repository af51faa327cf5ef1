"""Issue 12: on SQLite the set-based ingest steps run in a writer process beside the
gateway's event loop. What a platform and an operator must be able to count on: the
process really carries the batches, killing it mid-load loses no event and stores none
twice (every 2xx still means durable), it is started again, it never outlives its
gateway, and `sqlite_writer_process = false` keeps everything on the writer thread."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from bench._harness import GatewayProcess
from tests.support.signers import call_updated, new_whsec, standard_delivery

pytestmark = pytest.mark.backends("sqlite")


async def _deliver(gateway, integration, secret, call: str, status: str, msg_id: str):
    body = call_updated(call, status, started_at="2026-03-01T10:00:00Z")
    raw, headers = standard_delivery(secret, body, gateway.clock.now(), msg_id=msg_id)
    code, _, _ = await gateway.request(
        "POST", f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    return code


async def _wave(gateway, integration, secret, start: int, count: int) -> list[int]:
    return await asyncio.gather(*(
        _deliver(gateway, integration, secret, f"call-{i}", "ringing", f"msg_{i}")
        for i in range(start, start + count)))


async def _stored_events(gateway) -> list[str]:
    rows = await gateway.services.db.fetchall(
        "SELECT c.platform_call_id FROM call_events e JOIN calls c ON c.id = e.call_id")
    return sorted(r["platform_call_id"] for r in rows)


async def test_the_writer_process_carries_the_batches(gateway):
    process = gateway.services.db.process
    assert process is not None and process.pid not in (None, os.getpid())
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    before = process.steps
    assert set(await _wave(gateway, integration, secret, 0, 60)) == {200}
    assert process.steps > before, "no batch went to the writer process"
    assert process.failures == 0
    assert await _stored_events(gateway) == sorted(f"call-{i}" for i in range(60))


async def test_killing_the_writer_process_mid_load_loses_and_doubles_nothing(gateway):
    process = gateway.services.db.process
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    assert set(await _wave(gateway, integration, secret, 0, 40)) == {200}
    first_pid = process.pid

    # Deliveries in flight while the process is killed: every one still gets its 2xx
    # (written by the writer thread, or by the process before it died).
    load = asyncio.ensure_future(_wave(gateway, integration, secret, 40, 400))
    await asyncio.sleep(0.05)
    os.kill(first_pid, signal.SIGKILL)
    assert set(await load) == {200}
    assert process.failures >= 1, "the kill did not land while batches were in flight"
    assert await _stored_events(gateway) == sorted(f"call-{i}" for i in range(440))

    # The platform retries all of it (it may not have seen some 2xx): nothing doubles.
    assert set(await _wave(gateway, integration, secret, 0, 440)) == {200}
    assert await _stored_events(gateway) == sorted(f"call-{i}" for i in range(440))

    # A new process took over (started by the next batch), and carries batches again.
    assert process.pid not in (None, first_pid)
    steps = process.steps
    assert set(await _wave(gateway, integration, secret, 440, 60)) == {200}
    assert process.steps > steps
    assert len(await _stored_events(gateway)) == 500


@pytest.fixture
def config_without_writer_process(config):
    config.storage.sqlite_writer_process = False
    return config


async def test_sqlite_writer_process_false_keeps_writes_on_the_thread(
        config_without_writer_process, gateway):
    assert gateway.services.db.process is None
    tenant = await gateway.new_tenant("acme")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    assert set(await _wave(gateway, integration, secret, 0, 60)) == {200}
    assert set(await _wave(gateway, integration, secret, 0, 60)) == {200}
    assert await _stored_events(gateway) == sorted(f"call-{i}" for i in range(60))


def _writer_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"gateway.store.writer_child" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"     # exited, waiting for the init process to reap it


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_the_writer_process_never_outlives_its_gateway(stop):
    with GatewayProcess() as gw:
        assert gw.proc is not None
        deadline = time.monotonic() + 15
        while not (children := _writer_children(gw.proc.pid)):
            assert time.monotonic() < deadline, "no writer process beside `gateway serve`"
            time.sleep(0.1)
        [child] = children
        gw.proc.send_signal(stop)
        gw.proc.wait(15)
        deadline = time.monotonic() + 15
        while not _gone(child):
            assert time.monotonic() < deadline, "the writer process outlived its gateway"
            time.sleep(0.1)


async def test_a_writer_process_that_cannot_start_leaves_the_batches_to_the_thread(tmp_path):
    """A child that cannot open the database (here: the path is a directory) is reported
    as StepNotDone and gone, and the next step does not try again before the back-off:
    the gateway's writes stay on the writer thread meanwhile."""
    from gateway.store.writer_process import RemoteStep, StepNotDone, WriterProcess
    process = WriterProcess(tmp_path, [])
    with pytest.raises(StepNotDone):
        await process.start()
    assert process.pid is None
    step = RemoteStep("gateway.ingest.set_write:write_deliveries", encode=list,
                      decode=lambda units, answer: answer)
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(StepNotDone):
            await process.run(step, [])
    assert process.pid is None and time.monotonic() - started < 10
    await process.stop()
