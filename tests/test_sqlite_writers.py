"""SQLite writers queue on a file lock beside the database instead of SQLite's sleeping retry."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from petitions.db import make_engine, restart_sqlite_log


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


def _log_pages(engine) -> int:
    """Pages in the write-ahead log now (a PASSIVE checkpoint copies them and says so)."""
    raw = engine.raw_connection()
    try:
        return raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        raw.close()


def _write_pages(engine, rows: int = 200) -> None:
    with engine.begin() as connection:
        for number in range(rows):
            connection.execute(
                text("INSERT INTO marks VALUES (:at, :who)"), {"at": number, "who": "x" * 900}
            )


def test_the_worker_restarts_a_long_log_between_two_writers(engine, tmp_path):
    """Past the threshold, `restart_sqlite_log` copies the whole log back with the writer
    lock held, so the next commit writes from the log's start; below it, it only copies
    what it can alongside the writers."""
    lock_path = tmp_path / "writers.sqlite3-writers"
    for _ in range(3):
        _write_pages(engine)
    assert restart_sqlite_log(engine, threshold=100_000) is False
    _write_pages(engine)
    assert restart_sqlite_log(engine, threshold=50) is True
    assert _lock_is_free(lock_path)  # the writer lock was given back
    _write_pages(engine, rows=1)
    assert _log_pages(engine) < 10  # the log started again


def test_restarting_the_log_waits_for_the_writer_and_not_long_for_readers(engine, tmp_path):
    _write_pages(engine)
    # A writer in the middle of its transaction: the restart queues behind it.
    writer = engine.connect()
    writer.begin()
    writer.execute(text("INSERT INTO marks VALUES (-1, 'writer')"))
    finished: list[object] = []
    thread = threading.Thread(target=lambda: finished.append(restart_sqlite_log(engine, 10)))
    thread.start()
    time.sleep(0.3)
    assert not finished, "the restart did not wait for the open write transaction"
    writer.commit()
    writer.close()
    thread.join(5)
    assert finished == [True]

    # A reader still on the old log: the restart gives up after a short wait instead of
    # holding every writer for SQLite's 30 s busy timeout, and the next writer goes at once.
    _write_pages(engine)
    reader = make_engine(str(engine.url))
    with reader.connect() as reading:
        reading.begin()
        reading.execute(text("SELECT count(*) FROM marks")).scalar()
        _write_pages(engine)
        started = time.monotonic()
        assert restart_sqlite_log(engine, threshold=10) is False
        assert time.monotonic() - started < 1
        assert _lock_is_free(tmp_path / "writers.sqlite3-writers")
        reading.rollback()
    reader.dispose()


def test_with_the_lock_log_on_a_long_hold_is_logged_with_its_code(engine, monkeypatch, caplog):
    from petitions import db

    monkeypatch.setattr(db, "LOCK_LOG", db.WriterLockLog(20))
    caplog.set_level(logging.WARNING, logger="petitions.db")
    with engine.begin() as connection:  # a short hold: counted, not logged
        connection.execute(text("INSERT INTO marks VALUES (0, 'quick')"))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO marks VALUES (1, 'slow')"))
        time.sleep(0.05)
    held = [r.getMessage() for r in caplog.records if "writer lock held" in r.getMessage()]
    assert len(held) == 1
    assert float(held[0].split("held ")[1].split(" ms")[0]) >= 50
    # the code that held it, outside the standard library and installed packages
    assert "test_sqlite_writers.py" in held[0] and "sqlalchemy" not in held[0]
    caplog.clear()
    db.LOCK_LOG.totals()
    (totals,) = [r.getMessage() for r in caplog.records]
    assert "taken 2 times" in totals and "longest hold" in totals
