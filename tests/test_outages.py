"""Drills against gunicorn as production runs it: a stalled SQLite writer, and PostgreSQL
dropping connections. Signers get the site's own 503 within seconds, readers keep being
answered, no worker is killed, and nothing is half-written."""

from __future__ import annotations

import http.cookiejar
import re
import runpy
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, func, select, text

from bench.procs import children_of
from petitions.db import LOCK_TIMEOUT_SECONDS, get_engine, new_session
from petitions.errors import RETRY_AFTER_SECONDS
from petitions.models import Signature
from tests.servers import ROOT, start_gunicorn, stop

pytestmark = pytest.mark.slow

#: gunicorn kills a worker that has not answered for this long
GUNICORN_TIMEOUT = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["timeout"]
#: another process takes SQLite's write lock and keeps it (argv: database file, seconds)
HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


@dataclass
class Answer:
    """What one request got, and how long it took."""

    method: str
    path: str
    status: int
    started: float
    ended: float
    retry_after: str | None
    body: str = field(repr=False)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def is_the_busy_page(self) -> bool:
        """The site's own 503: its page (JSON under /api/) and a Retry-After."""
        look = '"status":503' if self.path.startswith("/api/") else 'class="site-header"'
        return (
            self.status == 503
            and self.retry_after == str(RETRY_AFTER_SECONDS)
            and look in self.body.replace(" ", "")
        )


class Visitor:
    """A browser of our own: keeps cookies, signs through the form, times every answer."""

    def __init__(self, base: str, answers: list[Answer]) -> None:
        self.base = base
        self.answers = answers
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> Answer:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        started = time.monotonic()
        try:
            with self.opener.open(self.base + path, data, timeout=2 * GUNICORN_TIMEOUT) as reply:
                status, headers, body = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        method = "GET" if form is None else "POST"
        retry_after = headers.get("Retry-After")
        answer = Answer(method, path, status, started, time.monotonic(), retry_after, body.decode())
        self.answers.append(answer)
        return answer

    def sign(self, slug: str, email: str) -> Answer:
        """GET the sign form, then POST it (unless the form did not come)."""
        page = self.open(f"/p/{slug}/sign")
        if page.status != 200:
            return page
        fields = dict(
            re.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]+)"', page.body)
        )
        form = {"name": "Drill", "email": email, "affiliation": "current", "display": "counted"}
        return self.open(f"/p/{slug}/sign", {**fields, **form})


def _signatures(app) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(func.count()).select_from(Signature))


def test_a_stalled_sqlite_writer_costs_signers_a_503_in_seconds_and_readers_nothing(
    site, app, database_url
):
    if not database_url.startswith("sqlite:///"):
        pytest.skip("SQLite's write lock")
    slug = site.letter()
    process, base = start_gunicorn(database_url, workers=3)
    workers = children_of(process.pid)
    hold = GUNICORN_TIMEOUT + 2
    database_file = database_url.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, database_file, str(hold)],
        stdout=subprocess.PIPE,
    )
    answers: list[Answer] = []
    try:
        assert holder.stdout.readline() == b"held\n"
        # The last signature is sent well before the lock is let go, so it cannot get it.
        last_sign_at = time.monotonic() + hold - LOCK_TIMEOUT_SECONDS - 2

        def signer(number: int) -> None:
            visitor = Visitor(base, answers)
            for attempt in range(100):
                if time.monotonic() > last_sign_at:
                    return
                visitor.sign(slug, f"stalled{number}-{attempt}@example.net")

        def reader() -> None:
            visitor = Visitor(base, answers)
            while time.monotonic() < last_sign_at:
                visitor.open(f"/p/{slug}")
                visitor.open(f"/api/v1/petitions/{slug}")
                time.sleep(0.2)

        threads = [threading.Thread(target=signer, args=(n,)) for n in range(2)]
        threads.append(threading.Thread(target=reader))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(hold + GUNICORN_TIMEOUT)
        holder.wait(hold)
        after = Visitor(base, []).sign(slug, "after@example.net")
        still = children_of(process.pid)
    finally:
        holder.kill()
        errors = stop(process)
    # Held for longer than gunicorn's timeout, and no worker was killed for waiting on it.
    assert still == workers
    assert "WORKER TIMEOUT" not in errors
    # Every signer was told "busy, try again" soon, by the site itself.
    signed = [answer for answer in answers if answer.method == "POST"]
    assert len(signed) >= 4
    assert all(answer.is_the_busy_page() for answer in signed), signed
    assert max(answer.seconds for answer in signed) < LOCK_TIMEOUT_SECONDS + 3
    # Readers (sign forms included) were answered all along, without waiting for the lock.
    read = [answer for answer in answers if answer.method == "GET"]
    assert len(read) >= 20
    assert {answer.status for answer in read} == {200}
    assert max(answer.seconds for answer in read) < LOCK_TIMEOUT_SECONDS
    # Nothing half-written: once the lock is free, the next signature is the only one.
    assert after.status == 200
    assert _signatures(app) == 1


def _terminate_backends(admin, database: str, *, waiting_on_a_lock: bool = False) -> list[str]:
    """End the server processes serving `database` (not `admin`'s); return the states they were
    in (`idle` in the pool, or `active` / `idle in transaction` mid-request)."""
    where = " AND wait_event_type = 'Lock'" if waiting_on_a_lock else ""
    rows = admin.execute(
        text(
            "SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :database AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'" + where
        ),
        {"database": database},
    ).all()
    return [row.state for row in rows]


def test_postgresql_dropping_connections_fails_only_statements_in_flight_each_with_a_503(
    site, app, database_url
):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's connections")
    slug = site.letter()
    database = get_engine(app).url.database
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT").connect()
    process, base = start_gunicorn(database_url, workers=2)
    answers: list[Answer] = []
    visitor = Visitor(base, answers)
    try:
        # Idle pooled connections the server closed are replaced before use: nothing fails.
        for _ in range(4):
            visitor.open(f"/p/{slug}")
            visitor.open("/api/v1/petitions")
        assert "idle" in _terminate_backends(admin, database)
        for number in range(4):
            visitor.open(f"/p/{slug}")
            visitor.sign(slug, f"replaced{number}@example.net")
        assert {answer.status for answer in answers} == {200}
        assert _signatures(app) == 4

        # A write waiting on a lock fails fast (lock_timeout), or as soon as its connection
        # is ended while it waits; readers are answered meanwhile. Neither is stored.
        with create_engine(database_url).connect() as locker:
            locker.execute(text("LOCK TABLE signatures IN SHARE ROW EXCLUSIVE MODE"))
            timed_out = visitor.sign(slug, "locked@example.net")
            assert timed_out.is_the_busy_page(), timed_out
            assert LOCK_TIMEOUT_SECONDS - 1 < timed_out.seconds < LOCK_TIMEOUT_SECONDS + 3
            cut: list[Answer] = []
            thread = threading.Thread(
                target=lambda: Visitor(base, cut).sign(slug, "cut@example.net")
            )
            thread.start()
            ended: list[str] = []
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
            while not ended and time.monotonic() < deadline:
                ended = _terminate_backends(admin, database, waiting_on_a_lock=True)
            assert visitor.open(f"/p/{slug}").status == 200
            thread.join(2 * LOCK_TIMEOUT_SECONDS)
            assert ended == ["active"]
            assert cut[-1].is_the_busy_page(), cut
            assert cut[-1].seconds < LOCK_TIMEOUT_SECONDS
            locker.rollback()
        assert _signatures(app) == 4

        # Under load, with every connection ended again and again: only requests under way
        # when connections were ended may fail, each with the site's 503. One sent after
        # that finds its pooled connection dead, and is given a new one.
        answers.clear()
        ending: list[tuple[float, float]] = []
        stop_at = time.monotonic() + 4

        def load(number: int) -> None:
            mine = Visitor(base, answers)
            for attempt in range(10_000):
                if time.monotonic() > stop_at:
                    return
                if number % 2:
                    mine.sign(slug, f"load{number}-{attempt}@example.net")
                else:
                    mine.open(f"/p/{slug}")
                    mine.open("/api/v1/petitions")

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        while time.monotonic() < stop_at:
            time.sleep(0.3)
            began = time.monotonic()
            _terminate_backends(admin, database)
            # A backend is told to end; give it a moment to have gone.
            ending.append((began, time.monotonic() + 0.1))
        for thread in threads:
            thread.join(GUNICORN_TIMEOUT)
        alive = process.poll() is None
    finally:
        admin.close()
        errors = stop(process)
    assert alive
    failed = [answer for answer in answers if answer.status != 200]
    assert len(answers) >= 20
    assert all(answer.is_the_busy_page() for answer in failed), failed
    assert all(
        any(answer.started < end and answer.ended > begin for begin, end in ending)
        for answer in failed
    ), (failed, ending)
    assert len(failed) < len(answers) / 2
    # Every signature answered 200 is stored; one whose commit was cut short may be too.
    signs = [answer for answer in answers if answer.method == "POST"]
    assert sum(answer.status == 200 for answer in signs) <= _signatures(app) - 4 <= len(signs)
    assert "Traceback" not in errors
