"""PostgreSQL connections the server closed are replaced before a request gets one."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import text

from petitions.db import make_engine

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
    try:
        with engine.connect() as connection:
            first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _close_pooled_connections_from_the_server() == 1
        with engine.connect() as connection:
            second = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()
