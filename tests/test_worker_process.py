"""The long-running mail worker as a real process: it delivers, and it survives outages."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from petitions.db import SQLITE_AUTOCHECKPOINT_PAGES, new_session, refresh_statistics
from petitions.mail import queue_email
from tests.servers import ROOT


def _worker(database_url: str, smtp_port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "UNDERSIGNED_ENV": "production",
        "SECRET_KEY": "worker-secret",
        "ADDRESS_HASH_KEY": "worker-hash-key",
        "DATABASE_URL": database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
    }
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "worker", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        return process.communicate(timeout=15)[1].decode(errors="replace")
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1].decode(errors="replace")


def test_worker_delivers_mail_queued_while_it_runs(app, database_url, mailbox):
    worker = _worker(database_url, mailbox.port)
    try:
        time.sleep(1)
        with app.test_request_context(), new_session(app) as session:
            queue_email(session, "late@example.net", "already_signed")
            session.commit()
        deadline = time.monotonic() + 20
        while not mailbox.to("late@example.net") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(mailbox.to("late@example.net")) == 1
        assert worker.poll() is None
    finally:
        _stop(worker)


def test_worker_keeps_running_while_the_database_is_down(mailbox):
    worker = _worker("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", mailbox.port)
    try:
        time.sleep(4)
        assert worker.poll() is None  # still alive, retrying
    finally:
        errors = _stop(worker)
    assert "worker pass failed" in errors


def _main_file_digest(database_url: str) -> str:
    path = database_url.removeprefix("sqlite:///")
    with open(path, "rb") as main_file:
        return hashlib.sha256(main_file.read()).hexdigest()


def test_worker_checkpoints_the_sqlite_log_so_requests_need_not(app, database_url, mailbox):
    """Commits leave their pages in the -wal file (web connections checkpoint only past
    SQLITE_AUTOCHECKPOINT_PAGES); the running worker copies them into the database file within
    seconds."""
    if not database_url.startswith("sqlite:///"):
        pytest.skip("SQLite only: PostgreSQL manages its own write-ahead log")
    with app.app_context():
        engine = app.extensions["db_engine"]
        with engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert pages == SQLITE_AUTOCHECKPOINT_PAGES
    worker = _worker(database_url, mailbox.port)
    try:
        time.sleep(2)  # the worker's first pass: purge, snapshot, its first checkpoint
        before = _main_file_digest(database_url)
        with app.test_request_context(), new_session(app) as session:
            for number in range(50):
                queue_email(session, f"wal{number}@example.net", "already_signed")
            session.commit()
        deadline = time.monotonic() + 15
        while _main_file_digest(database_url) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _main_file_digest(database_url) != before
    finally:
        _stop(worker)


def test_the_growing_tables_statistics_are_refreshed_when_due(app):
    """PostgreSQL keeps a foreign-key check's plan, and a prepared statement's generic plan,
    while its tables' statistics stand, so the worker analyzes `signatures`, `tokens` and
    `outbox` once they have grown; SQLite has nothing to do."""
    engine = app.extensions["db_engine"]
    if engine.dialect.name != "postgresql":
        assert refresh_statistics(engine) == []
        return
    refresh_statistics(engine)  # whatever the fixtures left due
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "INSERT INTO tokens (purpose, nonce_hash, handle, code_attempts, created_at,"
            " expires_at) SELECT 'reset_password', md5('n' || i), 'stats-' || i, 0, now(),"
            " now() FROM generate_series(1, 300) AS i"
        )
        connection.exec_driver_sql(
            "INSERT INTO outbox (recipient_domain, status, attempts, next_attempt_at,"
            " created_at) SELECT 'example.net', 'failed', 8, now(), now()"
            " FROM generate_series(1, 300)"
        )
        connection.commit()
        # Statistics reach the shared counters when the writing backend is next idle.
        connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        connection.commit()
        connection.exec_driver_sql("SELECT 1")
    assert refresh_statistics(engine) == ["outbox", "tokens"]
    with engine.connect() as connection:
        for table in ("outbox", "tokens"):
            analyzed, changed = connection.exec_driver_sql(
                "SELECT last_analyze IS NOT NULL, n_mod_since_analyze FROM pg_stat_user_tables"
                " WHERE relname = %(table)s AND schemaname = current_schema()",
                {"table": table},
            ).one()
            assert analyzed and changed == 0
    assert refresh_statistics(engine) == []  # nothing new since


class _Slept(BaseException):
    """Ends `run_forever` at its first pause, with how long it meant to sleep."""


def _first_pause(app, monkeypatch) -> float:
    from petitions.services import delivery

    def sleep(seconds: float) -> None:
        raise _Slept(seconds)

    monkeypatch.setattr(delivery.time, "sleep", sleep)
    with pytest.raises(_Slept) as stopped:
        delivery.run_forever(app, poll_interval=0.5, gather=0.2)
    return stopped.value.args[0]


@pytest.mark.config(MAIL_BATCH_SIZE=2)
def test_the_worker_sends_full_batches_at_once_and_waits_after_a_short_one(
    app, mailbox, monkeypatch
):
    with app.test_request_context(), new_session(app) as session:
        for n in range(3):
            queue_email(session, f"rush{n}@example.net", "already_signed")
        session.commit()
    # A full batch of two goes straight on to the next; the short one (one message) waits
    # for more mail to gather instead of looking again at once.
    assert _first_pause(app, monkeypatch) == 0.2
    assert sorted(m.to for m in mailbox.messages) == [f"rush{n}@example.net" for n in range(3)]


def test_the_worker_polls_at_its_interval_when_nothing_is_queued(app, mailbox, monkeypatch):
    assert _first_pause(app, monkeypatch) == 0.5
    assert mailbox.messages == []
