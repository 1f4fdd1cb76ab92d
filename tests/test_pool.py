"""PostgreSQL connections the server closed are replaced before a request gets one."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import Integer, text
from sqlalchemy.exc import IntegrityError, OperationalError

from petitions.db import _KEPT_CURSOR, FastStatement, make_engine, ping_idle_connections

SERVER = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "undersigned_pool_test"


@pytest.fixture
def pg_url():
    """A database of this test's own, so closing its connections disturbs nothing else."""
    try:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3) as admin:
            if not admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone():
                admin.execute(f"CREATE DATABASE {DATABASE}")
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI always has it)")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"


def _close_pooled_connections_from_the_server() -> int:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (DATABASE,),
        ).fetchall()
    return len(rows)


def test_an_idle_connection_the_server_closed_is_replaced(pg_url):
    engine = make_engine(pg_url)
    ping_idle_connections(engine, 0.0)  # every connection counts as idle here
    try:
        with engine.connect() as connection:
            first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _close_pooled_connections_from_the_server() == 1
        with engine.connect() as connection:
            second = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()


def test_without_the_ping_a_closed_connection_fails_the_request(pg_url):
    """What the ping is for: the same steps without it give the request a dead connection."""
    engine = make_engine(pg_url)  # idle for under 10 s: no ping
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert _close_pooled_connections_from_the_server() == 1
        with pytest.raises(OperationalError), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


_INSERT = FastStatement(
    text("INSERT INTO kept_cursor (v) VALUES (:v) RETURNING id").columns(id=Integer)
)


def test_a_pooled_postgresql_connection_keeps_one_cursor_for_statements_on_the_driver(pg_url):
    engine = make_engine(pg_url)
    ping_idle_connections(engine, 0.0)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS kept_cursor"))
            connection.execute(
                text("CREATE TABLE kept_cursor (id SERIAL PRIMARY KEY, v TEXT UNIQUE)")
            )
        with engine.connect() as connection:
            first = _INSERT(connection, {"v": "a"})
            kept = connection.info[_KEPT_CURSOR]
            assert _INSERT(connection, {"v": "b"}) == first + 1
            assert connection.info[_KEPT_CURSOR] is kept
            connection.commit()
            with pytest.raises(IntegrityError):
                _INSERT(connection, {"v": "a"})
            connection.rollback()
            # After the error and the rollback the same cursor goes on working.
            assert _INSERT(connection, {"v": "c"}) > first
            assert connection.info[_KEPT_CURSOR] is kept
            connection.commit()
        # The next checkout of that connection finds its cursor.
        with engine.connect() as connection:
            assert _INSERT(connection, {"v": "d"}) > first
            assert connection.info[_KEPT_CURSOR] is kept
            connection.commit()
        # A connection the server closed is replaced, and so is its cursor.
        assert _close_pooled_connections_from_the_server() == 1
        with engine.connect() as connection:
            assert _INSERT(connection, {"v": "e"}) > first
            assert connection.info[_KEPT_CURSOR] is not kept
            connection.commit()
            rows = connection.execute(text("SELECT v FROM kept_cursor ORDER BY id")).scalars()
            assert list(rows) == ["a", "b", "c", "d", "e"]
    finally:
        engine.dispose()


def test_sqlite_statements_on_the_driver_get_a_cursor_each(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.sqlite3'}")
    try:
        with engine.begin() as connection:
            connection.execute(
                text("CREATE TABLE kept_cursor (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
            )
        with engine.connect() as connection:
            assert _INSERT(connection, {"v": "a"}) == 1
            assert _INSERT(connection, {"v": "b"}) == 2
            assert _KEPT_CURSOR not in connection.info
            connection.commit()
    finally:
        engine.dispose()
