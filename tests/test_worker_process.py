"""The long-running mail worker as a real process: it delivers, survives outages, and stops
cleanly when told to, as systemd, Docker and Kubernetes tell it on every deploy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from petitions.db import new_session
from petitions.mail import queue_email
from petitions.models import OutboxMessage
from petitions.models.outbox import OutboxStatus
from tests.mailbox import free_port
from tests.servers import ROOT


def _worker(database_url: str, smtp_port: int, **settings: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "UNDERSIGNED_ENV": "production",
        "SECRET_KEY": "worker-secret",
        "ADDRESS_HASH_KEY": "worker-hash-key",
        "UPDATES_KEY": "worker-updates-key",
        "DATABASE_URL": database_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        **settings,
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


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Counting:
    """An aiosmtpd handler that takes `delay` seconds over each message and keeps whom each
    one was for, duplicates included."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.received: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
        return "250 Message accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def counting():
    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


def _queue(app, recipients: list[str]) -> None:
    with app.test_request_context(), new_session(app) as session:
        for address in recipients:
            queue_email(session, address, "already_signed")
        session.commit()


def test_worker_delivers_mail_queued_while_it_runs(app, database_url, counting):
    worker = _worker(database_url, counting.port)
    try:
        time.sleep(1)
        _queue(app, ["late@example.net"])
        assert _wait_for(lambda: counting.count() == 1, 20)
        assert counting.received == ["late@example.net"]
        assert worker.poll() is None
    finally:
        _stop(worker)


def test_worker_keeps_running_while_the_database_is_down(counting):
    worker = _worker("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", counting.port)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.extend(worker.stderr), daemon=True)
    reader.start()
    try:
        assert _wait_for(lambda: b"worker pass failed" in b"".join(errors), 30)
        time.sleep(1)
        assert worker.poll() is None  # still alive, retrying
    finally:
        worker.terminate()
        worker.wait(15)
        reader.join(5)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_mid_batch_stops_the_worker_cleanly_and_a_restart_sends_the_rest(
    app, database_url, counting, stop_signal
):
    recipients = [f"signer{number}@example.net" for number in range(120)]
    _queue(app, recipients)
    counting.delay = 0.05  # a batch of 120 takes six seconds
    worker = _worker(database_url, counting.port, MAIL_BATCH_SIZE="120")
    try:
        assert _wait_for(lambda: counting.count() >= 10, 30), "the batch did not start"
        worker.send_signal(stop_signal)
        signalled = time.monotonic()
        errors = worker.communicate(timeout=15)[1].decode(errors="replace")
        stopped_in = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, errors
    assert stopped_in < 5  # interpreter shutdown included
    delivered = counting.count()
    assert delivered < len(recipients), "the batch ended before the signal"
    with new_session(app) as session:
        rows = session.scalars(select(OutboxMessage)).all()
    # What went out is marked sent, the message in flight included; the rest is given back.
    assert sum(row.status == OutboxStatus.SENT for row in rows) == delivered
    left = [row for row in rows if row.status == OutboxStatus.QUEUED]
    assert len(left) == len(recipients) - delivered
    assert all(row.lease_owner is None and row.attempts == 0 for row in left)

    counting.delay = 0.0
    restarted = _worker(database_url, counting.port)
    try:
        # Well within the 120 s lease a message left leased would wait for, even with the
        # worker's start-up on a busy machine.
        assert _wait_for(lambda: set(counting.received) == set(recipients), 30)
    finally:
        _stop(restarted)
    duplicates = len(counting.received) - len(set(counting.received))
    assert duplicates <= 1
