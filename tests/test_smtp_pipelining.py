"""The worker's SMTP client: where the server offers PIPELINING, a batch in one round trip a
message (each write holds one message's content and the next message's MAIL, RCPT and
DATA); where not, smtplib's own, a message at a time. `send_message` sends one message
alone, in two round trips where the server offers PIPELINING."""

from __future__ import annotations

import logging
import re
import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from petitions.db import new_session
from petitions.mail import queue_email
from petitions.models import OutboxMessage
from petitions.models.outbox import OutboxStatus
from petitions.services import delivery
from tests.mailbox import Mailbox, RawServer, ScriptedServer

MESSAGE = b"".join(
    [
        b"Subject: dots\r\n\r\n",
        b".a line that starts with a dot\r\n",
        b"..and one with two\r\n",
        b".\r\n",
        b"the end\r\n",
    ]
)


@pytest.fixture(params=[True, False], ids=["pipelining", "plain"])
def server(request):
    raw = RawServer(smtputf8=True, pipelining=request.param)
    raw.controller.start()
    yield raw
    raw.controller.stop()


def _writes(monkeypatch) -> list[bytes]:
    """Every write the client makes, in order."""
    sent: list[bytes] = []
    real = smtplib.SMTP.send

    def send(self, data):
        sent.append(data if isinstance(data, bytes) else data.encode())
        return real(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", send)
    return sent


def test_each_message_arrives_as_written_in_two_writes_when_pipelined(server, monkeypatch):
    writes = _writes(monkeypatch)
    smtp = smtplib.SMTP("127.0.0.1", server.controller.port)
    smtp.ehlo()
    writes.clear()
    try:
        for recipient in ("one@example.net", "zwei@bücher.example", "three@example.net"):
            delivery.send_message(smtp, "letters@undersigned.test", recipient, MESSAGE)
    finally:
        smtp.quit()
    assert [rcpt for rcpt, _ in server.received] == [
        "one@example.net",
        "zwei@bücher.example",
        "three@example.net",
    ]
    assert all(content == MESSAGE for _, content in server.received)
    commands = [w for w in writes if w.upper() != b"QUIT\r\n"]
    if server.pipelining:
        # MAIL, RCPT and DATA together, then the message: two writes a message.
        assert len(commands) == 6
        assert commands[0] == (
            b"MAIL FROM:<letters@undersigned.test>\r\nRCPT TO:<one@example.net>\r\nDATA\r\n"
        )
        assert commands[2].startswith(b"MAIL FROM:<letters@undersigned.test> SMTPUTF8\r\n")
        assert commands[1].endswith(b"\r\n..\r\nthe end\r\n.\r\n")
    else:
        assert len(commands) == 12  # smtplib: MAIL, RCPT, DATA, message


def test_a_refused_recipient_or_message_leaves_the_connection_usable(server):
    mailbox = Mailbox()
    mailbox.pipelining = server.pipelining
    mailbox.start()
    smtp = smtplib.SMTP("127.0.0.1", mailbox.port)
    try:
        mailbox.reject_code = 550
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            delivery.send_message(smtp, "letters@undersigned.test", "gone@example.net", MESSAGE)
        assert refused.value.recipients["gone@example.net"][0] == 550
        mailbox.reject_code = 451
        with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
            delivery.send_message(smtp, "letters@undersigned.test", "later@example.net", MESSAGE)
        assert deferred.value.recipients["later@example.net"][0] == 451
        mailbox.reject_code = None
        delivery.send_message(smtp, "letters@undersigned.test", "fine@example.net", MESSAGE)
    finally:
        smtp.quit()
        mailbox.stop()
    assert [m.to for m in mailbox.messages] == ["fine@example.net"]

    server.refuse_with = "554 5.7.1 not today"
    smtp = smtplib.SMTP("127.0.0.1", server.controller.port)
    try:
        with pytest.raises(smtplib.SMTPDataError) as data_refused:
            delivery.send_message(smtp, "letters@undersigned.test", "a@example.net", MESSAGE)
        assert data_refused.value.smtp_code == 554
        server.refuse_with = None
        delivery.send_message(smtp, "letters@undersigned.test", "b@example.net", MESSAGE)
    finally:
        smtp.quit()
    assert [rcpt for rcpt, _ in server.received] == ["b@example.net"]


def test_a_server_closing_mid_batch_fails_the_send_without_hanging(monkeypatch):
    server = RawServer(smtputf8=True)

    async def closing(server_, session, envelope, address, rcpt_options):
        return "421 4.3.2 shutting down"

    server.handle_RCPT = closing
    server.controller.start()
    smtp = smtplib.SMTP("127.0.0.1", server.controller.port, timeout=10)
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            delivery.send_message(smtp, "letters@undersigned.test", "a@example.net", MESSAGE)
        assert refused.value.recipients["a@example.net"][0] == 421
        # The client closed its side on 421: the next send fails at once.
        with pytest.raises(smtplib.SMTPServerDisconnected):
            delivery.send_message(smtp, "letters@undersigned.test", "b@example.net", MESSAGE)
    finally:
        smtp.close()
        server.controller.stop()
    assert server.received == []


# A batch over one connection, against `ScriptedServer`: with PIPELINING offered the worker
# sends one message's content and the next one's envelope in each write; without, it takes
# smtplib's path, a message at a time.

SENDER = "no-reply@undersigned.invalid"


@pytest.fixture(params=[True, False], ids=["pipelining", "plain"])
def scripted(request, app):
    """A ScriptedServer, offering PIPELINING or not, that the app sends its mail to."""
    server = ScriptedServer(pipelining=request.param)
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


def _deliver(app) -> delivery.DeliveryReport:
    """One pass of the worker: one batch over one connection."""
    with new_session(app) as session:
        return delivery.deliver_batch(app, session, "test-owner")


def _rows(app) -> list[OutboxMessage]:
    """The outbox, in the order the messages were queued."""
    with new_session(app, write=False) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _rendered(monkeypatch) -> dict[str, bytes]:
    """The bytes the worker rendered for each recipient, in the order it rendered them."""
    rendered: dict[str, bytes] = {}
    render = delivery._message_bytes

    def keeping(app, message, writer):
        data = render(app, message, writer)
        rendered[message.recipient] = data
        return data

    monkeypatch.setattr(delivery, "_message_bytes", keeping)
    return rendered


def _to(server: ScriptedServer) -> list[str]:
    """Whom the server's messages went to, in the order they came."""
    return [transaction.recipient for transaction in server.received]


def _envelope(recipient: str, option: str = "") -> bytes:
    """MAIL, RCPT and DATA as the worker pipelines them."""
    return f"MAIL FROM:<{SENDER}>{option}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


def _content(data: bytes) -> bytes:
    """A rendered message as written after DATA: every line-starting dot doubled, then a lone
    dot (rendered messages end with CRLF)."""
    assert data.endswith(b"\r\n")
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


DOTS = ".a line that starts with a dot\n..and one with two\n.\nthe end\n"


def test_a_batch_arrives_byte_for_byte_in_one_write_a_message(app, scripted, monkeypatch):
    rendered = _rendered(monkeypatch)
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
    _queue(app, ["one@example.net", "jörg@bücher.example", "three@example.net"])
    writes = _writes(monkeypatch)
    report = _deliver(app)
    assert report.sent == 4
    assert [(t.recipient, t.data) for t in scripted.received] == list(rendered.items())
    dots = rendered["dots@example.net"]
    assert b"\r\n.a line that starts with a dot\r\n..and one with two\r\n" in dots
    assert ["SMTPUTF8" in t.options.upper() for t in scripted.received] == [0, 0, 1, 0]
    assert all(row.status == OutboxStatus.SENT for row in _rows(app))
    assert scripted.confused == []
    assert writes[0].upper().startswith(b"EHLO") and writes[-1].upper() == b"QUIT\r\n"
    if not scripted.pipelining:
        assert len(writes) == 2 + 4 * 4  # smtplib: MAIL, RCPT, DATA, message
        return
    # N messages, N + 1 writes: the first envelope; each message's content with the next
    # envelope; the last content.
    contents = [_content(data) for data in rendered.values()]
    envelopes = [
        _envelope("dots@example.net"),
        _envelope("one@example.net"),
        _envelope("jörg@bücher.example", " SMTPUTF8"),
        _envelope("three@example.net"),
    ]
    assert writes[1:-1] == [
        envelopes[0],
        contents[0] + envelopes[1],
        contents[1] + envelopes[2],
        contents[2] + envelopes[3],
        contents[3],
    ]
    assert b"\r\n..a line that starts with a dot\r\n...and one with two\r\n" in writes[2]


def test_a_full_batch_takes_one_write_a_message_and_one_more(app, monkeypatch):
    server = ScriptedServer()
    server.start()
    app.config["SMTP_PORT"] = server.port
    recipients = [f"many{number}@example.net" for number in range(200)]
    _queue(app, recipients)
    writes = _writes(monkeypatch)
    try:
        report = _deliver(app)
    finally:
        server.stop()
    assert report.sent == 200
    assert _to(server) == recipients
    pipelined = writes[1:-1]
    assert len(pipelined) == 201
    assert [write.count(b"MAIL FROM:") for write in pipelined] == [1] * 200 + [0]
    assert [write.count(b"\r\n.\r\n") for write in pipelined] == [0] + [1] * 200
    # The envelope always comes after the content it follows.
    assert all(write.endswith(b"\r\nDATA\r\n") for write in pipelined[:-1])


@pytest.mark.parametrize("data_without_recipients", [False, True], ids=["503", "354"])
@pytest.mark.parametrize(
    "code, status, error",
    [
        (550, OutboxStatus.FAILED, "recipient refused: [550]"),
        (451, OutboxStatus.QUEUED, "recipient deferred: [451]"),
    ],
)
def test_a_refused_recipient_leaves_the_messages_around_it_alone(
    app, scripted, code, status, error, data_without_recipients, monkeypatch, caplog
):
    rendered = _rendered(monkeypatch)
    recipients = [f"signer{number}@example.net" for number in range(5)]
    scripted.refuse_rcpt["signer2@example.net"] = f"{code} 5.1.1 <{{address}}>: no such user"
    scripted.data_without_recipients = data_without_recipients
    _queue(app, recipients)
    with caplog.at_level(logging.DEBUG):
        report = _deliver(app)
    assert (report.sent, report.failed + report.retried) == (4, 1)
    assert [(t.recipient, t.data) for t in scripted.received] == [
        (r, rendered[r]) for r in recipients if r != "signer2@example.net"
    ]
    rows = _rows(app)
    refused = rows[2]
    assert (refused.status, refused.attempts, refused.last_error) == (status, 1, error)
    assert [row.status for row in rows[:2] + rows[3:]] == [OutboxStatus.SENT] * 4
    assert "signer2" not in caplog.text
    assert scripted.confused == []


@pytest.mark.parametrize("refused", [1, 4], ids=["middle", "last"])
def test_a_server_that_takes_data_after_refusing_the_recipient_stays_in_sync(
    app, scripted, refused, monkeypatch
):
    rendered = _rendered(monkeypatch)
    recipients = [f"signer{number}@example.net" for number in range(5)]
    scripted.refuse_rcpt[recipients[refused]] = "550 5.1.1 no such user"
    scripted.data_without_recipients = True
    _queue(app, recipients)
    writes = _writes(monkeypatch)
    report = _deliver(app)
    assert (report.sent, report.failed) == (4, 1)
    assert [(t.recipient, t.data) for t in scripted.received] == [
        (r, rendered[r]) for r in recipients if r != recipients[refused]
    ]
    assert scripted.confused == []
    rows = _rows(app)
    assert rows[refused].last_error == "recipient refused: [550]"
    assert [row.status for row in rows].count(OutboxStatus.SENT) == 4
    if scripted.pipelining:
        # The 354 is answered with an empty message, and the transaction reset, before the
        # next envelope (or on their own, after the last message).
        after = writes[refused + 2]
        following = recipients[refused + 1] if refused + 1 < len(recipients) else None
        assert after == b".\r\nRSET\r\n" + (_envelope(following) if following else b"")


def test_a_421_to_the_empty_message_retries_the_refused_one(app, monkeypatch):
    server = ScriptedServer()
    server.start()
    app.config["SMTP_PORT"] = server.port
    recipients = [f"signer{number}@example.net" for number in range(4)]
    server.refuse_rcpt["signer1@example.net"] = "550 5.1.1 no such user"
    server.data_without_recipients = True
    server.close_at = (2, "content")
    _queue(app, recipients)
    try:
        report = _deliver(app)
    finally:
        server.stop()
    assert (report.sent, report.retried, report.failed) == (1, 1, 0)
    rows = _rows(app)
    assert [row.status for row in rows] == [OutboxStatus.SENT] + [OutboxStatus.QUEUED] * 3
    assert rows[1].last_error.startswith("temporary: 421")
    assert [row.attempts for row in rows[2:]] == [0, 0]
    assert all(row.lease_owner is None for row in rows)


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
    assert "to @example.net rejected for good: 554" in caplog.text
    assert "signer1" not in caplog.text
    assert scripted.confused == []


@pytest.mark.config(MAIL_RETRY_BASE=60)
def test_a_message_that_cannot_be_rendered_is_retried_alone(app, scripted, monkeypatch):
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
    writes = _writes(monkeypatch)
    report = _deliver(app)
    assert (report.sent, report.retried) == (2, 1)
    assert _to(scripted) == ["one@example.net", "three@example.net"]
    broken = _rows(app)[1]
    assert (broken.status, broken.last_error) == (OutboxStatus.QUEUED, "render: TemplateNotFound")
    assert not any(b"broken@" in write for write in writes)


@pytest.mark.config(MAIL_RETRY_BASE=60)
@pytest.mark.parametrize("point", ["MAIL", "RCPT", "DATA", "content"])
def test_a_421_at_message_n_sends_those_before_and_leaves_the_rest(app, scripted, point):
    recipients = [f"signer{number}@example.net" for number in range(6)]
    _queue(app, recipients)
    scripted.close_at = (3, point)
    report = _deliver(app)
    assert _to(scripted) == recipients[:2]
    assert report.sent == 2
    rows = _rows(app)
    assert [row.status for row in rows] == [OutboxStatus.SENT] * 2 + [OutboxStatus.QUEUED] * 4
    third = rows[2]
    assert third.attempts == 1
    if point == "RCPT":
        assert third.last_error == "recipient deferred: [421]"
    else:
        assert third.last_error.startswith("temporary: 421 ")
    assert all(row.lease_owner is None for row in rows)
    # smtplib's path, after a 421 to RCPT, went on to the fourth, which found the line closed.
    quirk = not scripted.pipelining and point == "RCPT"
    assert report.retried == (2 if quirk else 1)
    assert [row.attempts for row in rows[3:]] == ([1, 0, 0] if quirk else [0, 0, 0])
    # The next pass sends the rest; the third waits for its retry.
    assert _deliver(app).sent == (2 if quirk else 3)
    assert _to(scripted) == recipients[:2] + recipients[(4 if quirk else 3) :]


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


def test_an_address_that_cannot_be_pipelined_goes_out_alone_in_order(app, scripted, monkeypatch):
    rendered = _rendered(monkeypatch)
    recipients = ["one@example.net", '"odd person"@example.net', "three@example.net"]
    _queue(app, recipients)
    writes = _writes(monkeypatch)
    report = _deliver(app)
    assert report.sent == 3
    assert [(t.recipient, t.data) for t in scripted.received] == [
        (r, rendered[r]) for r in recipients
    ]
    assert scripted.confused == []
    if scripted.pipelining:
        # The first message is finished before smtplib sends the odd one, command by command.
        assert writes[1:3] == [_envelope("one@example.net"), _content(rendered["one@example.net"])]
        assert writes[3].startswith(b"mail FROM:<no-reply@undersigned.invalid> size=")
        assert writes[7:9] == [
            _envelope("three@example.net"),
            _content(rendered["three@example.net"]),
        ]


def test_a_server_without_smtputf8_defers_only_the_non_ascii_address(app, monkeypatch):
    server = ScriptedServer(smtputf8=False)
    server.start()
    app.config["SMTP_PORT"] = server.port
    _queue(app, ["one@example.net", "jörg@bücher.example", "three@example.net"])
    writes = _writes(monkeypatch)
    try:
        report = _deliver(app)
    finally:
        server.stop()
    assert (report.sent, report.retried) == (2, 1)
    assert _to(server) == ["one@example.net", "three@example.net"]
    waiting = _rows(app)[1]
    assert waiting.status == OutboxStatus.QUEUED
    assert waiting.last_error == "server lacks SMTPUTF8"
    assert len(writes[1:-1]) == 3  # the two others still pipelined
    assert not any("jörg".encode() in write for write in writes)


@given(
    st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\n", b"\r", b" ", b"="]), max_size=40)
)
def test_every_line_starting_dot_is_doubled_and_the_data_ended(pieces):
    data = b"".join(pieces)
    stuffed = re.sub(rb"(?m)^\.", b"..", data)
    ending = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
    assert delivery._content(data) == stuffed + ending
