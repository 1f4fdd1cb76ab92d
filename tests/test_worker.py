"""The mail worker against a real SMTP server: delivery, retry, failure, several workers."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from petitions.db import new_session, utcnow
from petitions.mail import queue_email
from petitions.models import OutboxMessage
from petitions.models.outbox import OutboxStatus
from petitions.services import delivery
from tests.mailbox import Mailbox, free_port


def _queue(app, count: int, prefix: str = "person") -> None:
    with app.test_request_context(), new_session(app) as session:
        for number in range(count):
            queue_email(session, f"{prefix}{number}@example.net", "already_signed")
        session.commit()


def _messages(app) -> list[OutboxMessage]:
    with new_session(app, write=False) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_delivered_message_is_wiped_from_the_database(app, mailbox):
    _queue(app, 1)
    report = delivery.drain(app)
    assert report.sent == 1
    assert len(mailbox.to("person0@example.net")) == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.SENT
    assert message.recipient is None and message.context is None
    assert message.subject is message.body_text is message.body_html is None
    assert message.recipient_domain == "example.net"


@pytest.mark.config(SMTP_PORT=free_port())
def test_retries_when_the_smtp_server_is_down_then_delivers(app):
    late = Mailbox()
    late.port = app.config["SMTP_PORT"]
    _queue(app, 3)
    report = delivery.drain(app)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    assert all(m.status == OutboxStatus.QUEUED and m.attempts == 1 for m in _messages(app))
    assert "connect" in _messages(app)[0].last_error

    late.start()
    try:
        report = delivery.drain(app)
    finally:
        late.stop()
    assert report.sent == 3
    assert len(late.messages) == 3
    assert all(m.status == OutboxStatus.SENT for m in _messages(app))


def test_temporary_rejection_is_retried_with_backoff(app, mailbox):
    app.config["MAIL_RETRY_BASE"] = 60
    mailbox.reject_code = 451
    _queue(app, 1)
    report = delivery.drain(app)
    assert report.retried == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.QUEUED
    assert message.next_attempt_at > utcnow()
    # Not due yet: a drain now sends nothing.
    mailbox.reject_code = None
    assert delivery.drain(app).sent == 0
    with new_session(app) as session:
        session.get(OutboxMessage, message.id).next_attempt_at = utcnow()
        session.commit()
    assert delivery.drain(app).sent == 1


def test_permanent_rejection_fails_visibly(app, mailbox):
    mailbox.reject_code = 550
    _queue(app, 1, prefix="gone")
    report = delivery.drain(app)
    assert report.failed == 1
    [message] = _messages(app)
    assert message.status == OutboxStatus.FAILED
    result = app.test_cli_runner().invoke(args=["mail-status"])
    assert "0 queued, 0 sent, 1 failed." in result.output
    assert "@example.net" in result.output and "550" in result.output
    assert "gone0" not in result.output


def test_several_workers_never_send_a_message_twice(app, mailbox):
    app.config["MAIL_BATCH_SIZE"] = 25
    _queue(app, 150)
    barrier = threading.Barrier(3, timeout=60)

    def work() -> None:
        barrier.wait()
        delivery.drain(app)

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
    result = app.test_cli_runner().invoke(args=["worker", "--drain"])
    assert result.exit_code == 0, result.output
    assert "2 sent" in result.output
    assert len(mailbox.messages) == 2


def test_signatures_are_not_held_up_while_a_batch_is_being_sent(app, mailbox, monkeypatch):
    """On SQLite a batch's read once kept the write lock until every message had gone out."""
    _queue(app, 3)
    send_all = delivery._send_all
    finished: list[bool] = []

    def write_meanwhile() -> None:
        with app.test_request_context(), new_session(app) as session:
            queue_email(session, "meanwhile@example.net", "already_signed")
            session.commit()
        finished.append(True)

    writers: list[threading.Thread] = []
    waited: list[bool] = []

    def sending(*args, **kwargs):
        writers.append(threading.Thread(target=write_meanwhile))
        writers[0].start()
        writers[0].join(5)
        waited.append(not finished)
        return send_all(*args, **kwargs)

    monkeypatch.setattr(delivery, "_send_all", sending)
    with new_session(app) as session:
        report = delivery.deliver_batch(app, session, "test-owner")
    writers[0].join(30)
    assert waited == [False], "a write waited for the batch being sent"
    assert report.sent == 3
    assert finished == [True]
    assert [m.status for m in _messages(app)] == [OutboxStatus.SENT] * 3 + [OutboxStatus.QUEUED]
