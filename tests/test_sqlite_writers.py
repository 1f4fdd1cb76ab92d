"""SQLite writers queue on a file lock beside the database instead of SQLite's sleeping retry."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from petitions.db import make_engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (at REAL, who TEXT)"))
    yield engine.execution_options(sqlite_immediate=True)
    engine.dispose()


def _lock_is_free(path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_second_writer_waits_for_the_first_commit_then_goes_at_once(engine, tmp_path):
    lock_path = tmp_path / "writers.sqlite3-writers"
    first = engine.connect()
    first.begin()
    first.execute(text("INSERT INTO marks VALUES (0, 'first')"))
    assert not _lock_is_free(lock_path)  # held by the open write transaction

    done: list[float] = []

    def second() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO marks VALUES (1, 'second')"))
        done.append(time.monotonic())

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert not done, "the second writer did not wait for the first"
    committed = time.monotonic()
    first.commit()
    thread.join(5)
    assert done and done[0] - committed < 0.25  # woken by the release, not a sleeping retry
    first.close()
    assert _lock_is_free(lock_path)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT who FROM marks ORDER BY at")).scalars().all()
    assert rows == ["first", "second"]


def test_rollback_and_failed_statements_release_the_lock(engine, tmp_path):
    lock_path = tmp_path / "writers.sqlite3-writers"
    with pytest.raises(OperationalError), engine.begin() as connection:
        connection.execute(text("INSERT INTO no_such_table VALUES (1)"))
    assert _lock_is_free(lock_path)
    connection = engine.connect()
    connection.begin()
    connection.execute(text("INSERT INTO marks VALUES (2, 'rolled back')"))
    connection.rollback()
    assert _lock_is_free(lock_path)
    connection.close()


def test_a_thread_that_holds_the_lock_is_refused_a_second_writer_at_once(engine):
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO marks VALUES (3, 'holder')"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="already holds"), engine.begin() as other:
            other.execute(text("INSERT INTO marks VALUES (4, 'same thread')"))
        assert time.monotonic() - started < 1  # not SQLite's 30 s timeout, not forever
