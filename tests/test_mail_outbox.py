"""The outbox keeps a template and a small context; the worker renders it as MIME.

Messages are read back from real SMTP servers: the shared test mailbox, or `RawServer`, which also
keeps the bytes exactly as they arrived.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from petitions.cli import alembic_config, upgrade_database
from petitions.db import new_session, utcnow
from petitions.mail import queue_email
from petitions.mail import worker as mail_worker
from petitions.models import OutboxMessage, Petition, User
from petitions.models.outbox import OutboxStatus
from tests.conftest import csrf_from
from tests.mailbox import RawServer

TITLE = "Stoppt die Überwachung — 监控 <script>alert(1)</script> and a title long enough to fold"


@pytest.fixture
def raw_server(app):
    server = RawServer(smtputf8=True)
    server.controller.start()
    app.config["SMTP_PORT"] = server.controller.port
    yield server
    server.controller.stop()


def _queue(app, recipient: str, template: str, **context) -> int:
    with app.test_request_context(), new_session(app) as session:
        message = queue_email(session, recipient, template, **context)
        session.commit()
        return message.id


def _our_log(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))


def _row(app, message_id: int) -> OutboxMessage:
    with new_session(app) as session:
        return session.get(OutboxMessage, message_id)


def test_the_request_stores_a_template_and_context_and_the_worker_renders(site, app, caplog):
    slug = site.letter("A letter nobody may link to the signer")
    site.sign(slug, "quiet@example.com")
    with new_session(app) as session:
        queued = session.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == "quiet@example.com")
        ).one()
    assert queued.template == "confirm_signature"
    assert set(queued.context) == {"url", "code", "max_age_days"}
    assert queued.subject is None and queued.body_text is None and queued.body_html is None

    with caplog.at_level(logging.INFO):
        site.deliver()
    mail = site.mailbox.last_to("quiet@example.com")
    assert mail.subject == "Your confirmation code"
    assert mail.code() == queued.context["code"]
    assert mail.link() == queued.context["url"]
    assert queued.context["url"] in mail.html
    assert f"expire in {queued.context['max_age_days']} days" in mail.text
    # Nothing that identifies the signer, or lets someone confirm for them, reaches a log line
    # of ours ("mail.log" is the test's SMTP server, which of course sees the address).
    ours = _our_log(caplog)
    assert "1 sent" in ours
    for secret in ["quiet@example.com", "quiet", queued.context["code"], queued.context["url"]]:
        assert secret not in ours
    sent = _row(app, queued.id)
    assert sent.status == OutboxStatus.SENT
    assert sent.recipient is None and sent.context is None


def test_a_model_is_reduced_to_the_fields_its_mail_shows(app, mailbox):
    user = User(
        email="owner@example.org",
        display_name="Olga Owner",
        password_hash="argon2-hash-that-must-stay-home",
        is_admin=False,
    )
    message_id = _queue(app, "owner@example.org", "account_exists", user=user)
    assert _row(app, message_id).context == {
        "user": {"display_name": "Olga Owner", "is_admin": False}
    }
    mail_worker.drain(app)
    mail = mailbox.last_to("owner@example.org")
    assert "Hello Olga Owner," in mail.text
    assert "Hello Olga Owner," in mail.html
    assert "http://undersigned.test/login" in mail.text


def test_an_unknown_template_or_an_unstorable_value_is_refused_when_queued(app):
    with pytest.raises(ValueError, match="no mail template"):
        _queue(app, "someone@example.net", "confirm_signatur")
    with pytest.raises(TypeError, match="cannot hold a object"):
        _queue(app, "someone@example.net", "already_signed", thing=object())
    with new_session(app) as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_mime_is_well_formed_with_unicode_subject_and_escaped_html(app, raw_server):
    petition = {"id": 7, "title": TITLE, "addressed_to": "Ada Lovelace, CEO"}
    _queue(
        app,
        "signer@example.net",
        "signed",
        petition=petition,
        withdraw_url="http://undersigned.test/w/abc",
        withdraw_code="ABCD-EFGH-JKMN",
    )
    assert mail_worker.drain(app).sent == 1
    recipient, raw = raw_server.received[-1]
    assert recipient == "signer@example.net"
    # Seven-bit, CRLF lines no longer than RFC 5322 recommends, headers encoded per RFC 2047.
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = raw_server.parsed()
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    assert str(message["Subject"]) == f'You signed "{TITLE}"'
    assert str(message["To"]) == "signer@example.net"
    assert str(message["From"]) == "Undersigned <no-reply@undersigned.invalid>"
    assert message["Message-ID"].endswith("@undersigned.invalid>")
    assert message["Date"].datetime > utcnow() - timedelta(minutes=5)
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert TITLE in text.get_content()
    assert "ABCD-EFGH-JKMN" in text.get_content()
    assert "Stoppt die Überwachung — 监控 &lt;script&gt;" in html.get_content()
    assert "<script>" not in html.get_content()
    assert f"<title>You signed &#34;{TITLE.split(' <')[0]}" in html.get_content()


def test_a_non_ascii_address_goes_out_over_smtputf8(app, raw_server):
    _queue(app, "jörg@bücher.example", "already_signed")
    assert mail_worker.drain(app).sent == 1
    recipient, _raw = raw_server.received[-1]
    assert recipient == "jörg@bücher.example"
    assert str(raw_server.parsed()["To"]) == "jörg@bücher.example"


@pytest.mark.config(MAIL_RETRY_BASE=60)
def test_a_server_without_smtputf8_defers_only_the_non_ascii_address(app):
    server = RawServer(smtputf8=False)
    server.controller.start()
    app.config["SMTP_PORT"] = server.controller.port
    _queue(app, "jörg@bücher.example", "already_signed")
    _queue(app, "plain@example.net", "already_signed")
    try:
        report = mail_worker.drain(app)
    finally:
        server.controller.stop()
    assert (report.sent, report.retried) == (1, 1)
    assert [recipient for recipient, _raw in server.received] == ["plain@example.net"]
    with new_session(app) as session:
        waiting = session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
        ).one()
    assert waiting.recipient == "jörg@bücher.example"
    assert waiting.last_error == "server lacks SMTPUTF8"


def test_a_refusal_that_quotes_the_address_is_kept_without_it(app, raw_server):
    raw_server.refuse_with = "554 5.7.1 <{address}>: Recipient address rejected"
    _queue(app, "Gone.Person@example.net", "already_signed")
    assert mail_worker.drain(app).failed == 1
    result = app.test_cli_runner().invoke(args=["mail-status"])
    assert result.exit_code == 0, result.exception
    status = result.output
    assert "0 queued, 0 sent, 1 failed." in status
    assert "to @example.net" in status and "554" in status and "Recipient address" in status
    assert "gone.person" not in status.casefold()


@pytest.mark.config(MAIL_RETRY_BASE=60, MAIL_RETRY_FOR=60)
def test_a_message_that_cannot_be_rendered_is_retried_then_fails_alone(app, mailbox, caplog):
    with new_session(app) as session:
        broken = OutboxMessage(
            recipient="broken@example.net",
            recipient_domain="example.net",
            template="no_such_template",
            context={"url": "http://undersigned.test/c/secret-link"},
        )
        session.add(broken)
        session.commit()
    _queue(app, "fine@example.net", "already_signed")
    with caplog.at_level(logging.INFO):
        # The first pass sends one and retries the other a minute later; a minute on, the
        # second try has used up MAIL_RETRY_FOR and the message fails.
        first = mail_worker.drain(app)
        second = mail_worker.drain(app, now=utcnow() + timedelta(seconds=61))
    assert (first.sent, first.retried, first.failed) == (1, 1, 0)
    assert (second.sent, second.retried, second.failed) == (0, 0, 1)
    assert [m.to for m in mailbox.messages] == ["fine@example.net"]
    failed = _row(app, broken.id)
    assert failed.status == OutboxStatus.FAILED
    assert failed.last_error == "render: TemplateNotFound"
    ours = _our_log(caplog)
    assert "no_such_template" in ours
    assert "broken@" not in ours and "secret-link" not in ours


def _at_revision(app, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(app), revision)


def test_messages_queued_before_the_upgrade_are_still_sent(app, mailbox):
    _at_revision(app, "0003")
    try:
        with new_session(app) as session:
            session.execute(
                insert(OutboxMessage.__table__),
                [
                    {
                        "recipient": "early@example.net",
                        "recipient_domain": "example.net",
                        "subject": "Rendered before the upgrade",
                        "body_text": "Old text body\nwith the code WXYZ-2345\n",
                        "body_html": "<p>Old <b>HTML</b> body</p>",
                        "status": "queued",
                        "attempts": 0,
                        "next_attempt_at": utcnow(),
                        "created_at": utcnow(),
                    },
                    {
                        "recipient": "textonly@example.net",
                        "recipient_domain": "example.net",
                        "subject": "Text only",
                        "body_text": "Just text.\n",
                        "body_html": None,
                        "status": "queued",
                        "attempts": 0,
                        "next_attempt_at": utcnow(),
                        "created_at": utcnow(),
                    },
                ],
            )
            session.commit()
    finally:
        upgrade_database(app)
    assert mail_worker.drain(app).sent == 2
    early = mailbox.last_to("early@example.net")
    assert early.subject == "Rendered before the upgrade"
    assert early.code() == "WXYZ-2345"
    assert "Old <b>HTML</b> body" in early.html
    text_only = mailbox.last_to("textonly@example.net")
    assert text_only.message.get_content_type() == "text/plain"
    assert text_only.text.strip() == "Just text."
    with new_session(app) as session:
        rows = session.scalars(select(OutboxMessage)).all()
    assert [row.status for row in rows] == [OutboxStatus.SENT] * 2
    assert all(
        row.recipient is row.subject is row.body_text is row.body_html is None for row in rows
    )


def test_a_downgrade_fails_unrendered_messages_instead_of_sending_them_empty(app):
    message_id = _queue(app, "later@example.net", "already_signed")
    _at_revision(app, "0003")
    try:
        with new_session(app) as session:
            row = session.execute(
                select(
                    OutboxMessage.__table__.c.status,
                    OutboxMessage.__table__.c.recipient,
                    OutboxMessage.__table__.c.last_error,
                ).where(OutboxMessage.__table__.c.id == message_id)
            ).one()
    finally:
        upgrade_database(app)
    assert row.status == "failed"
    assert row.recipient is None
    assert "downgraded" in row.last_error


def test_each_call_site_queues_what_its_mail_shows(site, app):
    slug = site.letter("Pay the night shift", addressed_to="Dana Director, COO")
    welcome = site.mailbox.last_to("olivia@example.org")
    assert welcome.subject == "Confirm your Undersigned organizer account"
    assert "Hello Olivia Organizer," in welcome.text
    assert "expires in 7 days" in welcome.text

    site.sign(slug, "worker@example.com", wants_updates="y", updates_email="me@home.example")
    site.confirm_link("worker@example.com")
    site.deliver()
    signed = site.mailbox.last_to("me@home.example")
    assert signed.subject == 'You signed "Pay the night shift"'
    assert 'Your signature on "Pay the night shift", to Dana Director, COO,' in signed.text
    assert "<strong>Pay the night shift</strong>" in signed.html
    assert "http://undersigned.test/withdraw" in signed.text

    html = site.client.get(f"/p/{slug}/report").get_data(as_text=True)
    site.client.post(
        f"/p/{slug}/report",
        data={"csrf_token": csrf_from(html), "kind": "not_me", "message": "Not my name."},
    )
    site.deliver()
    report = site.mailbox.last_to("olivia@example.org")
    assert report.subject == 'A report about "Pay the night shift"'
    assert "My name is on this letter, but I did not sign it" in report.text
    assert "Not my name." in report.text
    with new_session(app) as session:
        petition_id = session.scalars(select(Petition.id).where(Petition.slug == slug)).one()
    assert f"See it at http://undersigned.test/letters/{petition_id}" in report.text
