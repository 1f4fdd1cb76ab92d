"""PostgreSQL connections the server closed are replaced before a request gets one, and
every connection gives up on a lock, or a statement, well before gunicorn gives up on it."""

from __future__ import annotations

import os
import runpy

import psycopg
import pytest
from sqlalchemy import text

from petitions.db import LOCK_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_SECONDS, make_engine
from tests.servers import ROOT

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


def test_waits_end_well_before_gunicorn_kills_the_worker(pg_url, tmp_path):
    gunicorn_timeout = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["timeout"]
    assert LOCK_TIMEOUT_SECONDS < STATEMENT_TIMEOUT_SECONDS <= gunicorn_timeout / 2
    settings = {
        f"sqlite:///{tmp_path / 'timeouts.sqlite3'}": [
            ("PRAGMA busy_timeout", LOCK_TIMEOUT_SECONDS * 1000)
        ],
        pg_url: [
            ("SHOW lock_timeout", f"{LOCK_TIMEOUT_SECONDS}s"),
            ("SHOW statement_timeout", f"{STATEMENT_TIMEOUT_SECONDS}s"),
        ],
    }
    for url, expected in settings.items():
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                for statement, value in expected:
                    assert connection.exec_driver_sql(statement).scalar_one() == value
        finally:
            engine.dispose()
