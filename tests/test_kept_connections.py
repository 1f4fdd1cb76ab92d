"""The connection the writes before Flask keep between requests (`db.KeptConnections`)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from petitions import db
from petitions.db import KeptConnections, KeptWrites, make_engine
from tests.test_pool import _close_pooled_connections_from_the_server, pg_url  # noqa: F401


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield engine
    engine.dispose()


def _checkouts(engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine.pool, "checkout", lambda *_: seen.append(1))
    return seen


def _autocommit(connection) -> bool:
    return connection.connection.driver_connection.autocommit


def test_writes_reuse_one_connection_and_leave_nothing_open(sqlite_engine):
    kept = KeptConnections(sqlite_engine)
    writer = sqlite_engine.execution_options(sqlite_immediate=True)
    checkouts = _checkouts(sqlite_engine)
    used = set()
    for number in range(5):
        writes = KeptWrites(kept).writing_as(writer)
        connection = writes.connection()
        used.add(id(connection))
        assert connection.get_execution_options()["sqlite_immediate"] is True
        connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(number)})
        if number % 2:
            writes.commit()
        writes.close()  # the uncommitted ones are rolled back
        # Given back without the writer lock, the transaction or the write option.
        assert not connection.in_transaction()
        assert not connection.get_execution_options().get("sqlite_immediate")
        assert not connection.connection.dbapi_connection._holding
    assert len(checkouts) == 1 and len(used) == 1
    with sqlite_engine.connect() as other:
        assert other.execute(text("SELECT v FROM t ORDER BY id")).scalars().all() == ["1", "3"]


def test_a_connection_kept_for_writing_takes_the_writer_lock_with_no_option_switched(
    sqlite_engine,
):
    kept = KeptConnections(sqlite_engine, sqlite_immediate=True)
    switched: list[dict] = []
    event.listen(
        sqlite_engine, "set_connection_execution_options", lambda _c, o: switched.append(o)
    )
    for number in range(3):
        writes = KeptWrites(kept)
        connection = writes.connection()
        connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(number)})
        assert connection.connection.dbapi_connection._holding  # BEGIN IMMEDIATE, queued
        writes.commit()
        writes.close()
        assert connection.get_execution_options()["sqlite_immediate"] is True
    assert switched == [{"sqlite_immediate": True}]  # once, when the connection was made


def test_while_it_is_in_use_a_pooled_connection_is_lent_and_given_back(sqlite_engine):
    kept = KeptConnections(sqlite_engine)
    outer = KeptWrites(kept)
    first = outer.connection()
    inner = KeptWrites(kept)
    second = inner.connection()
    assert second is not first
    inner.close()
    assert second.closed  # back to the pool, not kept
    outer.close()
    assert not first.closed
    again = KeptWrites(kept)
    assert again.connection() is first
    again.close()


def test_dispose_closes_the_kept_connection(sqlite_engine):
    kept = KeptConnections(sqlite_engine)
    writes = KeptWrites(kept)
    connection = writes.connection()
    writes.close()
    sqlite_engine.dispose()
    assert connection.closed
    # In use while the engine is disposed: closed when given back.
    writes = KeptWrites(kept)
    busy = writes.connection()
    assert busy is not connection
    sqlite_engine.dispose()
    assert not busy.closed
    writes.close()
    assert busy.closed


def test_postgresql_keeps_autocommit_and_replaces_a_connection_the_server_closed(
    pg_url,  # noqa: F811
    monkeypatch,
):
    engine = make_engine(pg_url)
    kept = KeptConnections(engine, isolation_level="AUTOCOMMIT")
    checkouts = _checkouts(engine)
    try:
        writes = KeptWrites(kept, autocommit=True)
        connection = writes.connection()
        first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _autocommit(connection)
        writes.rollback()  # several statements to come: back to one transaction
        assert not _autocommit(connection)
        connection.execute(text("SELECT 1"))
        writes.close()
        # Given back in autocommit again, and handed out without another checkout.
        writes = KeptWrites(kept, autocommit=True)
        assert writes.connection() is connection
        assert _autocommit(connection)
        writes.close()
        assert len(checkouts) == 1
        # Unused for longer than the idle limit and closed by the server: replaced.
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
        assert _close_pooled_connections_from_the_server() == 1
        writes = KeptWrites(kept, autocommit=True)
        fresh = writes.connection()
        assert fresh.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
        assert _autocommit(fresh)
        writes.close()
    finally:
        engine.dispose()
