"""How the worker takes what an SMTP server answers, message by message within one batch:
refusals fail or retry only the message they concern, a server that closes leaves the rest for
the next pass, and nothing that was not confirmed counts as sent. Against `ScriptedServer`, a
real server on 127.0.0.1 that can be told when to refuse or hang up."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from petitions.db import new_session
from petitions.mail import queue_email
from petitions.mail import worker as mail_worker
from petitions.models import OutboxMessage
from petitions.models.outbox import OutboxStatus
from tests.mailbox import ScriptedServer

DOTS = ".a line that starts with a dot\n..and one with two\n.\nthe end\n"


@pytest.fixture
def scripted(app):
    """A ScriptedServer that the app sends its mail to."""
    server = ScriptedServer()
    server.start()
    app.config["SMTP_PORT"] = server.port
    yield server
    server.stop()


def _queue(app, recipients: list[str]) -> None:
    """Queue an email to each address, in order."""
    with app.test_request_context(), new_session(app) as session:
        for address in recipients:
            queue_email(session, address, "already_signed")
        session.commit()


def _deliver(app) -> mail_worker.DeliveryReport:
    """One pass of the worker: one batch over one connection."""
    with new_session(app) as session:
        return mail_worker.deliver_batch(app, session, "test-owner")


def _rows(app) -> list[OutboxMessage]:
    """The outbox, in the order the messages were queued."""
    with new_session(app) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _to(server: ScriptedServer) -> list[str]:
    """Whom the server's messages went to, in the order they came."""
    return [transaction.recipient for transaction in server.received]


def test_a_batch_arrives_in_order_with_its_dots_intact(app, scripted):
    with new_session(app) as session:
        # A message rendered before migration 0004: its text is ours to choose.
        session.add(
            OutboxMessage(
                recipient="dots@example.net",
                recipient_domain="example.net",
                subject="Dots",
                body_text=DOTS,
            )
        )
        session.commit()
    recipients = ["one@example.net", "jörg@bücher.example", '"odd person"@example.net']
    _queue(app, recipients)
    report = _deliver(app)
    assert report.sent == 4
    assert _to(scripted) == ["dots@example.net", *recipients]
    assert ["SMTPUTF8" in t.options.upper() for t in scripted.received] == [0, 0, 1, 0]
    assert b"\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\nthe end" in (
        scripted.received[0].data.replace(b"=\r\n", b"")
    )
    assert all(row.status == OutboxStatus.SENT for row in _rows(app))
    assert scripted.confused == []


@pytest.mark.parametrize(
    "code, status, error",
    [
        (550, OutboxStatus.FAILED, "recipient refused: [550]"),
        (451, OutboxStatus.QUEUED, "recipient deferred: [451]"),
    ],
)
def test_a_refused_recipient_leaves_the_messages_around_it_alone(
    app, scripted, code, status, error, caplog
):
    recipients = [f"signer{number}@example.net" for number in range(5)]
    scripted.refuse_rcpt["signer2@example.net"] = f"{code} 5.1.1 <{{address}}>: no such user"
    _queue(app, recipients)
    with caplog.at_level(logging.DEBUG):
        report = _deliver(app)
    assert (report.sent, report.failed + report.retried) == (4, 1)
    assert _to(scripted) == [r for r in recipients if r != "signer2@example.net"]
    rows = _rows(app)
    refused = rows[2]
    assert (refused.status, refused.attempts, refused.last_error) == (status, 1, error)
    assert [row.status for row in rows[:2] + rows[3:]] == [OutboxStatus.SENT] * 4
    assert "signer2" not in caplog.text
    assert scripted.confused == []


def test_a_message_refused_at_its_content_fails_alone(app, scripted, caplog):
    recipients = [f"signer{number}@example.net" for number in range(4)]
    scripted.refuse_data["signer1@example.net"] = "554 5.7.1 <{address}>: message refused"
    _queue(app, recipients)
    with caplog.at_level(logging.DEBUG):
        report = _deliver(app)
    assert (report.sent, report.failed, report.retried) == (3, 1, 0)
    assert _to(scripted) == ["signer0@example.net", "signer2@example.net", "signer3@example.net"]
    rows = _rows(app)
    assert rows[1].status == OutboxStatus.FAILED
    assert rows[1].last_error == "rejected: 554 '5.7.1 <…>: message refused'"
    assert [row.status for row in rows[:1] + rows[2:]] == [OutboxStatus.SENT] * 3
    assert "to @example.net refused for good" in caplog.text
    assert "signer1" not in caplog.text
    assert scripted.confused == []


@pytest.mark.config(MAIL_RETRY_BASE=60)
def test_a_message_that_cannot_be_rendered_is_retried_alone(app, scripted):
    _queue(app, ["one@example.net"])
    with new_session(app) as session:
        session.add(
            OutboxMessage(
                recipient="broken@example.net",
                recipient_domain="example.net",
                template="no_such_template",
                context={},
            )
        )
        session.commit()
    _queue(app, ["three@example.net"])
    report = _deliver(app)
    assert (report.sent, report.retried) == (2, 1)
    assert _to(scripted) == ["one@example.net", "three@example.net"]
    broken = _rows(app)[1]
    assert (broken.status, broken.last_error) == (OutboxStatus.QUEUED, "render: TemplateNotFound")
    assert broken.lease_owner is None


@pytest.mark.config(MAIL_RETRY_BASE=60)
@pytest.mark.parametrize("point", ["MAIL", "RCPT", "DATA", "content"])
def test_a_421_at_message_n_sends_those_before_and_leaves_the_rest(app, scripted, point):
    recipients = [f"signer{number}@example.net" for number in range(6)]
    _queue(app, recipients)
    scripted.close_at = (3, point)
    report = _deliver(app)
    assert _to(scripted) == recipients[:2]
    assert (report.sent, report.retried) == (2, 1)
    rows = _rows(app)
    assert [row.status for row in rows] == [OutboxStatus.SENT] * 2 + [OutboxStatus.QUEUED] * 4
    third = rows[2]
    assert third.attempts == 1
    if point == "RCPT":
        assert third.last_error == "recipient deferred: [421]"
    else:
        assert third.last_error.startswith("temporary: 421 ")
    # The rest were given back untouched, for the next pass to send at once.
    assert [row.attempts for row in rows[3:]] == [0, 0, 0]
    assert all(row.lease_owner is None for row in rows)
    assert _deliver(app).sent == 3
    assert _to(scripted) == recipients[:2] + recipients[3:]


@pytest.mark.parametrize("point", ["MAIL", "content"])
def test_a_message_whose_reply_never_came_is_not_counted_sent(app, scripted, point):
    recipients = [f"signer{number}@example.net" for number in range(4)]
    _queue(app, recipients)
    # The server hangs up without a word at the second message's MAIL, or once it has
    # taken the second message.
    scripted.close_at, scripted.close_reply = (2, point), None
    report = _deliver(app)
    assert _to(scripted) == recipients[: 2 if point == "content" else 1]
    assert (report.sent, report.retried) == (1, 1)
    rows = _rows(app)
    assert [row.status for row in rows] == [OutboxStatus.SENT] + [OutboxStatus.QUEUED] * 3
    assert rows[1].attempts == 1 and rows[1].last_error.startswith("SMTPServerDisconnected")
    assert [row.attempts for row in rows[2:]] == [0, 0]
    assert all(row.lease_owner is None for row in rows)


def test_a_server_without_smtputf8_defers_only_the_non_ascii_address(app):
    server = ScriptedServer(smtputf8=False)
    server.start()
    app.config["SMTP_PORT"] = server.port
    _queue(app, ["one@example.net", "jörg@bücher.example", "three@example.net"])
    try:
        report = _deliver(app)
    finally:
        server.stop()
    assert (report.sent, report.retried) == (2, 1)
    assert _to(server) == ["one@example.net", "three@example.net"]
    waiting = _rows(app)[1]
    assert waiting.status == OutboxStatus.QUEUED
    assert waiting.last_error == "server lacks SMTPUTF8"
