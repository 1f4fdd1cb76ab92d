"""The production server: several gunicorn workers writing at once, never "database is locked"."""

from __future__ import annotations

import http.cookiejar
import os
import re
import runpy
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from sqlalchemy import func, select

from bench.procs import children_of
from petitions.db import new_session
from petitions.models import Signature
from tests.servers import ROOT, start_gunicorn, stop


def test_four_workers_take_concurrent_signatures_without_errors(site, app, database_url):
    slug = site.letter()
    process, base = start_gunicorn(database_url, workers=4)
    statuses: list[int] = []
    try:

        def signer(number: int) -> None:
            opener = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )
            for attempt in range(5):
                html = opener.open(f"{base}/p/{slug}/sign").read().decode()
                fields = dict(
                    re.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]+)"', html)
                )
                body = urllib.parse.urlencode(
                    {
                        **fields,
                        "name": f"Worker {number}",
                        "email": f"w{number}-{attempt}@example.net",
                        "affiliation": "current",
                        "display": "counted",
                    }
                ).encode()
                try:
                    statuses.append(opener.open(f"{base}/p/{slug}/sign", body, timeout=60).status)
                except urllib.error.HTTPError as error:
                    statuses.append(error.code)

        threads = [threading.Thread(target=signer, args=(n,), daemon=True) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        errors = stop(process)
    assert statuses == [200] * 60
    assert "database is locked" not in errors
    assert "Traceback" not in errors
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 60


def test_silent_connections_do_not_hold_the_only_worker(database_url):
    """A client that connects and says nothing (a browser's preconnect) must not keep the
    sync worker from answering others: the kernel hands connections over once they speak."""
    process, base = start_gunicorn(database_url, workers=1)
    port = int(base.rpartition(":")[2])
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        # Without the deferral the worker would sit on the first silent connection until
        # gunicorn's 30 s timeout, and this would time out at 10 s.
        for _ in range(3):
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
                assert answer.status == 200
        # A silent connection that speaks at last is answered as any other.
        late = silent[0]
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert late.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for connection in silent:
            connection.close()
        errors = stop(process)
    assert "Traceback" not in errors


def test_the_default_number_of_workers_follows_the_database(database_url):
    """Without WEB_CONCURRENCY, SQLite gets cores + 1 workers (one writer at a time) and
    PostgreSQL 2 x cores + 1, at most 8; the running server starts that many."""
    rule = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["default_workers"]
    assert [rule(url, 2) for url in (None, "", "sqlite:///x.sqlite3", "sqlite://")] == [3] * 4
    assert rule("postgresql+psycopg://postgres@127.0.0.1/test", 2) == 5
    assert rule("sqlite:///x.sqlite3", 1) == 2
    assert rule("sqlite:///x.sqlite3", 16) == rule("postgresql://db/x", 16) == 8
    expected = rule(database_url, os.cpu_count() or 1)
    process, _base = start_gunicorn(database_url, workers=None)
    try:
        deadline = time.monotonic() + 30
        while len(children_of(process.pid)) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # one too many would have shown up by now
        assert len(children_of(process.pid)) == expected
    finally:
        errors = stop(process)
    assert "Traceback" not in errors
