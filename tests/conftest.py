"""Shared fixtures: a real gateway on a real port, driven over HTTP, on each storage backend.

The harness itself lives in tests/support/ (server, CLI, signers, backing servers)."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest

from gateway.config import Config
from gateway.core.clock import ManualClock
from gateway.services import init_storage
from tests.support.server import RunningGateway, make_config, start_gateway

ROOT = Path(__file__).resolve().parent.parent
# Session fixtures for the real backing servers: `postgres`, `seaweedfs`.
pytest_plugins = ["tests.support.postgres", "tests.support.seaweedfs"]

# The end-to-end suites the scale-out backends must pass run on every backend; the rest
# (unit tests, SQLite-file forensics) on the embedded one. A test that only makes sense on
# one backend says so with @pytest.mark.backends("sqlite").
BACKENDS = tuple(os.environ.get("GATEWAY_TEST_BACKENDS", "sqlite,postgres").split(","))
EVERY_BACKEND_SUITES = ("tests/calls/", "tests/ingest/", "tests/access/", "tests/lifecycle/")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    relative = str(metafunc.definition.path.relative_to(ROOT))
    every = relative.startswith(EVERY_BACKEND_SUITES)
    names = marker.args if marker else (BACKENDS if every else ("sqlite",))
    metafunc.parametrize("backend", [n for n in names if n in BACKENDS] or ["sqlite"],
                         indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def postgres_schema_url(postgres) -> Iterator[str]:
    """A fresh schema in the session's throwaway database, for one test."""
    import psycopg
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres.url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Config:
    config = make_config(tmp_path / "data")
    if backend == "postgres":
        # The scale-out stack: PostgreSQL, recordings and keys in two S3 buckets.
        config.storage.database_url = request.getfixturevalue("postgres_schema_url")
        from tests.support.seaweedfs import BUCKETS  # after pytest_plugins registered it
        s3 = request.getfixturevalue("seaweedfs")
        prefix = f"t-{secrets.token_hex(6)}"
        config.storage.blob_url = f"s3://{BUCKETS[0]}/{prefix}"
        config.storage.key_store_url = f"s3://{BUCKETS[1]}/{prefix}"
        config.storage.s3.endpoint_url = s3.endpoint_url
        config.storage.s3.region = s3.region
    init_storage(config)
    return config


@pytest.fixture
async def gateway(config: Config, clock: ManualClock) -> AsyncIterator[RunningGateway]:
    async with start_gateway(config, clock) as running:
        yield running


def _dump_tasks(signum: int, frame: FrameType | None) -> None:
    """`kill -USR1 <pytest pid>` writes every asyncio task's stack to
    /tmp/pytest-tasks-<pid>.txt: where a hung test (or its teardown) waits, which a thread
    dump (py-spy, faulthandler) does not show. The loop is the one the main thread was
    running when the signal came."""
    out = io.StringIO()
    loop = None
    while frame is not None and loop is None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, asyncio.AbstractEventLoop):
            loop = candidate
        frame = frame.f_back
    if loop is None:
        print("no event loop was running", file=out)
    for task in asyncio.all_tasks(loop) if loop is not None else ():
        print(f"--- {task!r}", file=out)
        task.print_stack(file=out)
    Path(f"/tmp/pytest-tasks-{os.getpid()}.txt").write_text(out.getvalue())


signal.signal(signal.SIGUSR1, _dump_tasks)
