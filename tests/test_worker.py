"""The mail worker against a real SMTP server: delivery, retry, failure, several workers, long
outages, and putting failed mail back in the queue."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from petitions.db import new_session, utcnow
from petitions.mail import queue_email
from petitions.mail import worker as mail_worker
from petitions.mail.cli import age
from petitions.mail.outbox import claim
from petitions.models import OutboxMessage
from petitions.models.errors import InvalidTransition
from petitions.models.outbox import OutboxStatus
from tests.mailbox import Mailbox, free_port


def _queue(app, count: int, prefix: str = "person") -> None:
    with app.test_request_context(), new_session(app) as session:
        for number in range(count):
            queue_email(session, f"{prefix}{number}@example.net", "already_signed")
        session.commit()


def _messages(app) -> list[OutboxMessage]:
    with new_session(app) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


class SlowHandler:
    """An aiosmtpd handler that takes `delay` seconds over each message and notes on which
    connection (the client's port) it came."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[tuple[str, int]] = []

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        self.received.extend((rcpt, session.peer[1]) for rcpt in envelope.rcpt_tos)
        return "250 Message accepted"


@pytest.fixture
def slow_server(app):
    handler = SlowHandler(0.0)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    app.config["SMTP_PORT"] = controller.port
    yield handler
    controller.stop()


def test_delivered_message_is_wiped_from_the_database(app, mailbox):
    _queue(app, 1)
    report = mail_worker.drain(app)
    assert report.sent == 1
    assert len(mailbox.to("person0@example.net")) == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.SENT
    assert message.recipient is None and message.context is None
    assert message.subject is message.body_text is message.body_html is None
    assert message.recipient_domain == "example.net"


def test_a_batch_goes_over_one_connection(app, slow_server):
    app.config["MAIL_BATCH_SIZE"] = 30
    _queue(app, 60)
    with new_session(app) as session:
        first = mail_worker.deliver_batch(app, session, "test-owner")
        second = mail_worker.deliver_batch(app, session, "test-owner")
    assert (first.sent, second.sent) == (30, 30)
    connections = [port for _rcpt, port in slow_server.received]
    assert len(set(connections[:30])) == 1 and len(set(connections[30:])) == 1
    assert connections[0] != connections[30]
    assert [rcpt for rcpt, _port in slow_server.received] == [
        f"person{n}@example.net" for n in range(60)
    ]


def test_a_batch_stops_before_its_lease_can_run_out_mid_message(app, slow_server):
    # The lease is 120 s; with a 119.5 s timeout a message may only start in the first 0.5 s.
    app.config["SMTP_TIMEOUT"] = 119.5
    slow_server.delay = 0.2
    _queue(app, 10)
    with new_session(app) as session:
        report = mail_worker.deliver_batch(app, session, "test-owner")
    assert 1 <= report.sent < 10
    rows = _messages(app)
    assert [m.status for m in rows].count(OutboxStatus.SENT) == report.sent
    left = [m for m in rows if m.status == OutboxStatus.QUEUED]
    assert len(left) == 10 - report.sent
    assert all(m.lease_owner is None and m.attempts == 0 for m in left)


def test_starttls_checks_the_servers_certificate(app, tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = SlowHandler(0.0)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=context)
    controller.start()
    app.config.update(SMTP_PORT=controller.port, SMTP_STARTTLS=True)
    try:
        _queue(app, 1)
        refused = mail_worker.drain(app)  # a certificate nobody vouches for
        error = _messages(app)[0].last_error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the machine trusts it
        delivered = mail_worker.drain(app, now=utcnow() + timedelta(minutes=1))
    finally:
        controller.stop()
    assert (refused.sent, refused.retried) == (0, 1)
    assert error.startswith("connect: SSLCertVerificationError")
    assert delivered.sent == 1
    assert [rcpt for rcpt, _port in handler.received] == ["person0@example.net"]


@pytest.mark.config(SMTP_PORT=free_port())
def test_retries_when_the_smtp_server_is_down_then_delivers(app):
    late = Mailbox()
    late.port = app.config["SMTP_PORT"]
    _queue(app, 3)
    report = mail_worker.drain(app)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    assert all(m.status == OutboxStatus.QUEUED and m.attempts == 1 for m in _messages(app))
    assert "connect" in _messages(app)[0].last_error

    late.start()
    try:
        report = mail_worker.drain(app)
    finally:
        late.stop()
    assert report.sent == 3
    assert len(late.messages) == 3
    assert all(m.status == OutboxStatus.SENT for m in _messages(app))


@pytest.mark.config(SMTP_PORT=free_port(), MAIL_RETRY_BASE=30, MAIL_RETRY_MAX=600)
def test_mail_survives_an_outage_longer_than_a_day(app):
    """The old budget (8 attempts, 30 s doubling) gave up after about an hour."""
    late = Mailbox()
    late.port = app.config["SMTP_PORT"]
    _queue(app, 3)
    start = now = utcnow()
    attempts = 0
    while now < start + timedelta(hours=30):
        report = mail_worker.drain(app, now=now)
        assert (report.sent, report.failed) == (0, 0)
        attempts += 1
        now = min(m.next_attempt_at for m in _messages(app))
    assert attempts > 150  # backoff capped at ten minutes
    assert all(m.status == OutboxStatus.QUEUED for m in _messages(app))
    assert "Oldest queued message" in _cli(app, "mail-status")

    late.start()
    try:
        report = mail_worker.drain(app, now=now)
    finally:
        late.stop()
    assert (report.sent, report.failed) == (3, 0)
    assert sorted(m.to for m in late.messages) == [f"person{n}@example.net" for n in range(3)]


def test_backoff_doubles_to_its_cap_and_gives_up_only_after_the_budget():
    config = {"MAIL_RETRY_BASE": 30, "MAIL_RETRY_MAX": 600, "MAIL_RETRY_FOR": 86400}
    delays = [mail_worker.retry_delay(config, n) for n in (1, 2, 3, 5, 6, 100)]
    assert delays == [30, 60, 120, 480, 600, 600]
    attempts = next(n for n in range(1, 1000) if mail_worker.gives_up(config, n))
    waited = sum(mail_worker.retry_delay(config, n) for n in range(1, attempts))
    assert 86400 <= waited < 86400 + 600


def test_temporary_rejection_is_retried_with_backoff(app, mailbox):
    app.config["MAIL_RETRY_BASE"] = 60
    mailbox.reject_code = 451
    _queue(app, 1)
    report = mail_worker.drain(app)
    assert report.retried == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.QUEUED
    assert message.next_attempt_at > utcnow() + timedelta(seconds=50)
    # Not due yet: a drain now sends nothing; a minute later it does.
    mailbox.reject_code = None
    assert mail_worker.drain(app).sent == 0
    assert mail_worker.drain(app, now=utcnow() + timedelta(seconds=61)).sent == 1


def test_permanent_rejection_fails_visibly(app, mailbox):
    mailbox.reject_code = 550
    _queue(app, 1, prefix="gone")
    report = mail_worker.drain(app)
    assert report.failed == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.FAILED
    output = _cli(app, "mail-status")
    assert "0 queued, 0 sent, 1 failed." in output
    assert "Nothing waits in the queue." in output
    assert "@example.net" in output and "550" in output
    assert "gone0" not in output


def test_mail_status_shows_the_age_of_the_oldest_queued_message(app):
    _queue(app, 2)
    with new_session(app) as session:
        oldest = session.scalars(select(OutboxMessage)).first()
        oldest.created_at = utcnow() - timedelta(hours=3, minutes=20)
        session.commit()
    assert "Oldest queued message: 3 h 20 min old (queued " in _cli(app, "mail-status")
    assert [age(s) for s in (5, 119, 720, 7199, 86400, 200000)] == [
        "5 s",
        "119 s",
        "12 min",
        "119 min",
        "24 h 0 min",
        "2 days 7 h",
    ]


def test_mail_retry_requeues_failed_mail_exactly_once(app, mailbox):
    mailbox.reject_code = 550
    _queue(app, 2, prefix="early")
    assert mail_worker.drain(app).failed == 2
    later = utcnow() + timedelta(hours=1)
    _queue(app, 1, prefix="late")
    assert mail_worker.drain(app, now=later).failed == 1
    mailbox.reject_code = None

    since = (later - timedelta(minutes=1)).isoformat()
    assert "Put 1 failed message back in the queue." in _cli(app, "mail-retry", "--since", since)
    assert "Put 0 failed messages back" in _cli(app, "mail-retry", "--since", since)
    assert "Put 2 failed messages back in the queue." in _cli(app, "mail-retry")
    assert "Put 0 failed messages back" in _cli(app, "mail-retry")
    requeued = _messages(app)
    assert all(m.status == OutboxStatus.QUEUED and m.attempts == 0 for m in requeued)

    assert mail_worker.drain(app, now=later).sent == 3
    assert sorted(m.to for m in mailbox.messages) == [
        "early0@example.net",
        "early1@example.net",
        "late0@example.net",
    ]
    assert mail_worker.drain(app, now=later).sent == 0
    bad = app.test_cli_runner().invoke(args=["mail-retry", "--since", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO time" in bad.output


def test_a_claim_sees_a_message_put_back_since_this_session_failed_it(app, mailbox):
    _queue(app, 1)
    with new_session(app) as session:
        [message] = claim(session, "test-owner", 10, utcnow())
        message.fail("refused", utcnow())
        session.commit()
        assert "Put 1 failed message back" in _cli(app, "mail-retry")
        [again] = claim(session, "test-owner", 10, utcnow() + timedelta(seconds=1))
        assert (again.status, again.attempts) == (OutboxStatus.QUEUED, 0)
        again.mark_sent(utcnow())
        session.commit()


def test_a_transition_from_the_wrong_state_raises(app):
    _queue(app, 1)
    [message] = _messages(app)
    with pytest.raises(InvalidTransition):
        message.requeue(utcnow())
    message.mark_sent(utcnow())
    for transition in (
        lambda: message.mark_sent(utcnow()),
        lambda: message.retry("again", utcnow()),
        lambda: message.fail("late", utcnow()),
        lambda: message.release(),
    ):
        with pytest.raises(InvalidTransition):
            transition()


def test_several_workers_never_send_a_message_twice(app, mailbox):
    app.config["MAIL_BATCH_SIZE"] = 25
    _queue(app, 150)
    barrier = threading.Barrier(3, timeout=60)

    def work() -> None:
        barrier.wait()
        mail_worker.drain(app)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    recipients = [m.to for m in mailbox.messages]
    assert len(recipients) == 150
    assert len(set(recipients)) == 150
    assert all(m.status == OutboxStatus.SENT for m in _messages(app))


def test_worker_command_drains(app, mailbox):
    _queue(app, 2)
    assert "2 sent" in _cli(app, "worker", "--drain")
    assert len(mailbox.messages) == 2


def test_signatures_are_not_held_up_while_a_batch_is_being_sent(app, slow_server):
    """On SQLite a batch's claim once kept the write lock until every message had gone out."""
    slow_server.delay = 0.5
    _queue(app, 3)
    report: list[mail_worker.DeliveryReport] = []

    def send() -> None:
        with new_session(app) as session:
            report.append(mail_worker.deliver_batch(app, session, "test-owner"))

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 10
    while not any(m.lease_owner for m in _messages(app)) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    with app.test_request_context(), new_session(app) as session:
        queue_email(session, "meanwhile@example.net", "already_signed")
        session.commit()
    waited = time.monotonic() - started
    sender.join(30)
    assert waited < 0.4, "a write waited for the batch being sent"
    assert report[0].sent == 3
    assert [m.status for m in _messages(app)] == [OutboxStatus.SENT] * 3 + [OutboxStatus.QUEUED]


def test_the_worker_waits_after_a_short_batch_and_not_after_a_full_one():
    full, short, empty = (mail_worker.DeliveryReport(sent=n) for n in (200, 15, 0))
    assert mail_worker.pause_after(full, 200, 0.5, 0.2) == 0.0
    assert mail_worker.pause_after(short, 200, 0.5, 0.2) == 0.2
    assert mail_worker.pause_after(empty, 200, 0.5, 0.2) == 0.5
