"""The worker's SMTP client: pipelined where the server offers it, smtplib's own otherwise."""

from __future__ import annotations

import smtplib

import pytest

from petitions.services import delivery
from tests.mailbox import Mailbox, RawServer

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
