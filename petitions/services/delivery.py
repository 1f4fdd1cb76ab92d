"""The mail worker: claim due outbox messages, render and deliver them over SMTP, retry or fail.

Rendering happens here, not in the request that queued the message: each batch is rendered
from the templates Jinja keeps compiled, written as MIME bytes by `mail.MessageWriter`, sent
over one SMTP connection, and the messages that went out are marked sent (and wiped) in one
UPDATE. Several workers may run at once: each claims a batch with a lease in one UPDATE
(on PostgreSQL the candidate rows are picked with FOR UPDATE SKIP LOCKED), so no
message is sent twice unless a worker dies mid-batch and its lease runs out.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from petitions.db import (
    checkpoint_sqlite,
    get_engine,
    new_session,
    refresh_statistics,
    restart_sqlite_log,
    utcnow,
)
from petitions.mail import MessageWriter, RenderedEmail, emails_with_holes
from petitions.models import OutboxMessage
from petitions.models.outbox import OutboxStatus
from petitions.services import history
from petitions.services.signing import purge_expired

log = logging.getLogger(__name__)

LEASE_SECONDS = 120
#: seconds the worker waits after a failed pass (database down, say)
RETRY_PAUSE = 5.0


@dataclass
class DeliveryReport:
    """What one pass of the worker did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(slots=True, eq=False)
class Claimed:
    """A message leased to this worker, read as plain values: what sending it takes, and
    what `_retry` and `_fail` change, which `_write_back` stores for the messages they
    touched. Loading each batch as ORM objects was a sixth of the worker's time under a rush
    of signers, for rows that are read once and, almost always, only marked sent."""

    id: int
    recipient: str | None
    recipient_domain: str
    template: str | None
    context: dict[str, Any] | None
    subject: str | None
    body_text: str | None
    body_html: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    #: whether `_retry` or `_fail` changed it since it was read
    changed: bool = False


#: the outbox's columns a `Claimed` is read from, in its fields' order
_CLAIMED = [OutboxMessage.__table__.c[name] for name in Claimed.__slots__ if name != "changed"]
#: what `_retry` and `_fail` may change
_CHANGEABLE = ("status", "attempts", "next_attempt_at", "lease_owner", "lease_until", "last_error")


def claim_batch(session: Session, owner: str, limit: int, now: datetime) -> list[Claimed]:
    """Lease up to `limit` due messages to this worker and return them."""
    candidates = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.next_attempt_at <= now,
            (OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(candidates.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    rows = session.execute(
        select(*_CLAIMED)
        .where(OutboxMessage.lease_owner == owner, OutboxMessage.status == OutboxStatus.QUEUED)
        .order_by(OutboxMessage.id)
    ).all()
    # End that read's transaction before the batch is sent: on SQLite it took the write lock,
    # which every signature would otherwise wait for until the whole batch had gone out.
    session.commit()
    return [Claimed(*row) for row in rows]


def _write_back(session: Session, batch: list[Claimed], sent: set[int], owner: str) -> None:
    """Store what `_retry` and `_fail` changed, and free the lease of every message neither
    sent nor touched (those after a dropped connection) for the next pass."""
    table = OutboxMessage.__table__
    changed = [
        {"changed_id": message.id, **{name: getattr(message, name) for name in _CHANGEABLE}}
        for message in batch
        if message.changed
    ]
    if changed:  # one statement, run for each (a whole batch when the server is down)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("changed_id"))
            .values({name: bindparam(name) for name in _CHANGEABLE}),
            changed,
        )
    untouched = [m.id for m in batch if not m.changed and m.id not in sent]
    if untouched:
        session.execute(
            update(table)
            .where(
                table.c.id.in_(untouched),
                table.c.status == OutboxStatus.QUEUED,
                table.c.lease_owner == owner,
            )
            .values(lease_owner=None, lease_until=None)
        )


def _message_bytes(app: Flask, message: Claimed, writer: MessageWriter) -> bytes:
    """Render the message (or take the rendered words of one queued before migration 0004)."""
    if message.template is None:
        words = RenderedEmail(message.subject or "", message.body_text or "", message.body_html)
    else:
        words = emails_with_holes(app).render(message.template, message.context or {})
    return writer.write(message.recipient or "", words)


def _connect(app: Flask) -> smtplib.SMTP:
    config = app.config
    smtp = smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"])
    if config["SMTP_STARTTLS"]:
        smtp.starttls()
    if config["SMTP_USERNAME"]:
        smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
    return smtp


def _retry(app: Flask, message: Claimed, error: str, report: DeliveryReport) -> None:
    """Schedule another attempt with exponential backoff, or fail the message once its
    attempts are used up; counted in `report` as retried or failed."""
    message.changed = True
    message.attempts += 1
    message.last_error = error[:500]
    message.lease_owner = message.lease_until = None
    if message.attempts >= app.config["MAIL_MAX_ATTEMPTS"]:
        message.status = OutboxStatus.FAILED
        report.failed += 1
        return
    delay = app.config["MAIL_RETRY_BASE"] * (2 ** (message.attempts - 1))
    message.next_attempt_at = utcnow() + timedelta(seconds=min(delay, 6 * 3600))
    report.retried += 1


def _fail(message: Claimed, error: str, report: DeliveryReport) -> None:
    """Give up on a message the server refused for good."""
    message.changed = True
    message.status = OutboxStatus.FAILED
    message.attempts += 1
    message.last_error = error[:500]
    report.failed += 1


def deliver_batch(app: Flask, session: Session, owner: str) -> DeliveryReport:
    """Claim one batch, render it and deliver it over a single SMTP connection.

    The messages sent are marked sent, and wiped, together in one UPDATE at the end.
    """
    report = DeliveryReport()
    batch = claim_batch(session, owner, app.config["MAIL_BATCH_SIZE"], utcnow())
    if not batch:
        return report
    try:
        smtp = _connect(app)
    except (OSError, smtplib.SMTPException) as exc:
        # The server is unreachable: the whole batch waits and tries again.
        error = f"connect: {type(exc).__name__}: {exc}"
        log.warning("SMTP connection failed; %d messages will be retried", len(batch))
        for message in batch:
            _retry(app, message, error, report)
        _write_back(session, batch, set(), owner)
        session.commit()
        return report
    writer = MessageWriter(app.config["MAIL_FROM"])
    sent: list[int] = []
    try:
        with app.app_context():
            _send_all(app, smtp, writer, batch, sent, report)
    finally:
        if sent:
            session.execute(OutboxMessage.mark_sent(sent, utcnow()))
        _write_back(session, batch, set(sent), owner)
        session.commit()
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    log.info(
        "mail batch: %d sent, %d to retry, %d failed", report.sent, report.retried, report.failed
    )
    return report


def _without_address(reply: bytes | str, recipient: str) -> str:
    """A server's reply with the address (and its local part) blanked out.

    Replies such as "550 <jo@example.com>: no such user" end up in `last_error`, which
    `mail-status` shows to operators, and that shows domains only.
    """
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    local = recipient.rpartition("@")[0]
    for secret in (recipient, local if len(local) >= 3 else ""):
        if secret:
            text = re.sub(re.escape(secret), "…", text, flags=re.IGNORECASE)
    return text


#: what may not appear in an address written between angle brackets in a command
_NOT_IN_PATH = frozenset("<>\r\n\0 ")


def send_message(smtp: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """Send one message of CRLF-ended lines to one recipient; raise as `SMTP.sendmail` does.

    Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
    and the message in a second: two round trips instead of smtplib's four. An address that
    is not ASCII needs a server that speaks SMTPUTF8 (RFC 6531). The worker sends a batch in
    one round trip a message (`_Pipeline`); this sends the odd message alone.
    """
    utf8 = not (sender + recipient).isascii()
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("pipelining") or _NOT_IN_PATH.intersection(sender + recipient):
        smtp.sendmail(sender, [recipient], data, mail_options=("SMTPUTF8",) if utf8 else ())
        return
    if utf8 and not smtp.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
    smtp.send(_envelope(sender, recipient))
    mail = _reply(smtp)
    rcpt = _reply(smtp) if mail[0] != 421 else mail
    start = _reply(smtp) if rcpt[0] != 421 else rcpt
    if mail[0] == 250 and rcpt[0] in (250, 251) and start[0] == 354:
        smtp.send(_content(data))
        code, reply = _reply(smtp)
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return
    if start[0] == 354:
        # A server that took DATA after refusing the sender or recipient gets an empty
        # message, which has no one to go to.
        smtp.send(b".\r\n")
        _reply(smtp)
    if 421 not in (mail[0], rcpt[0], start[0]):
        smtp.rset()
    raise _refusal(sender, recipient, mail, rcpt, start)


def _envelope(sender: str, recipient: str) -> bytes:
    """MAIL, RCPT and DATA for one message, to be written in one go (RFC 2920)."""
    option = "" if (sender + recipient).isascii() else " SMTPUTF8"
    return f"MAIL FROM:<{sender}>{option}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


def _content(data: bytes) -> bytes:
    """A message as it follows DATA's 354: dot-stuffed, ended by a line with a lone dot."""
    # Every line-starting dot doubled (RFC 5321 4.5.2): after each LF, and at the very start.
    # Plain replace, as a multi-line regex cost the worker 9 % of its time.
    body = data.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n")


def _refusal(
    sender: str,
    recipient: str,
    mail: tuple[int, bytes],
    rcpt: tuple[int, bytes],
    start: tuple[int, bytes],
) -> smtplib.SMTPException:
    """The error for a transaction whose MAIL, RCPT or DATA was refused, as smtplib has it."""
    if mail[0] != 250:
        return smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
    if rcpt[0] not in (250, 251):
        return smtplib.SMTPRecipientsRefused({recipient: rcpt})
    return smtplib.SMTPDataError(*start)


def _reply(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """The server's next reply; after 421 (the server is closing) the connection is closed."""
    code, reply = smtp.getreply()
    if code == 421:
        smtp.close()
    return code, reply


def _send_all(
    app: Flask,
    smtp: smtplib.SMTP,
    writer: MessageWriter,
    batch: list[Claimed],
    sent: list[int],
    report: DeliveryReport,
) -> None:
    """Send each message of the batch, noting the ids sent; stop if the line drops.

    A server that offers PIPELINING gets the batch in one round trip a message
    (`_send_pipelined`); any other gets one message after another (`send_message`).
    """
    if _offers_pipelining(smtp) and _fits_in_path(writer.envelope_from):
        _send_pipelined(app, smtp, writer, batch, sent, report)
        return
    for message in batch:
        data = _render(app, message, writer, report)
        if data is not None and not _send_one(app, smtp, writer, message, data, sent, report):
            break


def _offers_pipelining(smtp: smtplib.SMTP) -> bool:
    """Whether the server takes pipelined commands (RFC 2920)."""
    try:
        smtp.ehlo_or_helo_if_needed()
    except (OSError, smtplib.SMTPException):
        # The first `send_message` meets the same error and records it.
        return False
    return smtp.has_extn("pipelining")


def _fits_in_path(address: str) -> bool:
    """Whether `address` can be written as it is between the angle brackets of a command.

    Any other (a space or bracket in a quoted local part, a control character, an address
    longer than RFC 5321 allows) goes out with `send_message`, alone, as before.
    """
    return (
        0 < len(address.encode()) <= 254
        and address.isprintable()
        and not _NOT_IN_PATH.intersection(address)
    )


def _render(
    app: Flask, message: Claimed, writer: MessageWriter, report: DeliveryReport
) -> bytes | None:
    """The message's bytes; None (and the message retried) if it cannot be rendered."""
    try:
        return _message_bytes(app, message, writer)
    except Exception as exc:
        # A template that fails (a bad deploy, say) is retried with backoff, then fails.
        # The log names the template and the error's kind, never a value from the context.
        log.warning(
            "message #%d to @%s (%s) could not be rendered: %s",
            message.id,
            message.recipient_domain,
            message.template,
            type(exc).__name__,
        )
        _retry(app, message, f"render: {type(exc).__name__}", report)
        return None


def _send_one(
    app: Flask,
    smtp: smtplib.SMTP,
    writer: MessageWriter,
    message: Claimed,
    data: bytes,
    sent: list[int],
    report: DeliveryReport,
) -> bool:
    """Send one message with `send_message` and record how it went; False once the
    connection is gone."""
    try:
        send_message(smtp, writer.envelope_from, message.recipient or "", data)
    except (OSError, smtplib.SMTPException) as exc:
        return _record_error(app, message, exc, report)
    sent.append(message.id)
    report.sent += 1
    return True


def _record_error(app: Flask, message: Claimed, exc: Exception, report: DeliveryReport) -> bool:
    """Fail or retry a message that `send_message` raised `exc` for; whether the connection
    may still be used."""
    recipient = message.recipient or ""
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = f"{exc.smtp_code} {_without_address(exc.smtp_error, recipient)!r}"
        if 500 <= exc.smtp_code < 600:
            _fail(message, f"rejected: {detail}", report)
            log.warning(
                "message #%d to @%s rejected for good: %s",
                message.id,
                message.recipient_domain,
                exc.smtp_code,
            )
        else:
            _retry(app, message, f"temporary: {detail}", report)
        return exc.smtp_code != 421  # 421: the server is closing the connection
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if any(500 <= code < 600 for code in codes):
            _fail(message, f"recipient refused: {codes}", report)
        else:
            _retry(app, message, f"recipient deferred: {codes}", report)
        return True
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # This server cannot take this address; the connection itself is fine.
        _retry(app, message, "server lacks SMTPUTF8", report)
        return True
    _retry(app, message, f"{type(exc).__name__}: {exc}", report)
    return False


def _send_pipelined(
    app: Flask,
    smtp: smtplib.SMTP,
    writer: MessageWriter,
    batch: list[Claimed],
    sent: list[int],
    report: DeliveryReport,
) -> None:
    """Send the batch through a `_Pipeline`, one round trip a message.

    Each message is rendered before anything of it is written, so one that cannot be
    rendered is retried on its own; one whose address cannot be pipelined goes alone with
    `send_message`, in its turn.
    """
    sender = writer.envelope_from
    pipeline = _Pipeline(app, smtp, sender, sent, report)
    for message in batch:
        data = _render(app, message, writer, report)
        if data is None:
            continue
        recipient = message.recipient or ""
        if not _fits_in_path(recipient):
            # `send_message` writes it alone, so the message before it is finished first.
            if not pipeline.finish() or not _send_one(
                app, smtp, writer, message, data, sent, report
            ):
                return
        elif not (sender + recipient).isascii() and not smtp.has_extn("smtputf8"):
            refusal = smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
            _record_error(app, message, refusal, report)
        elif not pipeline.send(message, data):
            return
    pipeline.finish()


class _Pipeline:
    """A batch sent over PIPELINING (RFC 2920) in one round trip a message.

    A message's MAIL, RCPT and DATA go out in one write. Its content goes only once DATA's
    354 is in, at the head of the next write, followed by the next message's MAIL, RCPT and
    DATA: RFC 2920 lets DATA end a group and the content begin one, and a server that has
    answered 354 reads up to the lone dot before it reads a command, so what is written is
    always read as what it is. The replies come in the order of what was written: the
    content's, then the next envelope's. A message's outcome is recorded once its last reply
    is in, with `_record_error` and the error `send_message` would raise.
    """

    def __init__(
        self,
        app: Flask,
        smtp: smtplib.SMTP,
        sender: str,
        sent: list[int],
        report: DeliveryReport,
    ) -> None:
        """A pipeline with nothing written yet."""
        self.app = app
        self.smtp = smtp
        self.sender = sender
        self.sent = sent
        self.report = report
        #: the message whose transaction is not over, and what it still owes the server: its
        #: content, or what ends a refused transaction
        self.owner: Claimed | None = None
        self.owed = b""
        #: why the owner's transaction was refused (None: `owed` is its content)
        self.refusal: smtplib.SMTPException | None = None
        #: whether the server answered DATA with 354 all the same, so `owed` starts with the
        #: lone dot of an empty message
        self.empty_message = False

    def send(self, message: Claimed, data: bytes) -> bool:
        """Write what is owed and `message`'s MAIL, RCPT and DATA in one go, then read the
        replies to both; False once the connection is gone."""
        recipient = message.recipient or ""
        if not self._write(self.owed + _envelope(self.sender, recipient), message):
            return False
        if not self._settle():
            return False
        try:
            mail = _reply(self.smtp)
            rcpt = _reply(self.smtp) if mail[0] != 421 else mail
            start = _reply(self.smtp) if rcpt[0] != 421 else rcpt
        except (OSError, smtplib.SMTPException) as exc:
            return self._record(message, exc)
        if mail[0] == 250 and rcpt[0] in (250, 251) and start[0] == 354:
            self.owner, self.owed = message, _content(data)
            return True
        refusal = _refusal(self.sender, recipient, mail, rcpt, start)
        if 421 in (mail[0], rcpt[0], start[0]):
            # The server has closed the connection: nothing more is written or read.
            return self._record(message, refusal)
        # The transaction is ended with the next write, as `send_message` ends it: an empty
        # message if the server took DATA all the same, then RSET (which RFC 2920 lets go
        # in a group).
        self.owner, self.refusal = message, refusal
        self.empty_message = start[0] == 354
        self.owed = (b".\r\n" if self.empty_message else b"") + b"RSET\r\n"
        return True

    def finish(self) -> bool:
        """Write what is owed, alone, and read its replies; False once the connection is
        gone."""
        if self.owner is None:
            return True
        return self._write(self.owed, None) and self._settle()

    def _write(self, data: bytes, message: Claimed | None) -> bool:
        """Write `data`; if the line has dropped, retry the message whose reply it would have
        waited for (the owner, else `message`) and return False."""
        try:
            self.smtp.send(data)
        except (OSError, smtplib.SMTPException) as exc:
            blamed = self.owner or message
            if blamed is not None:
                _record_error(self.app, blamed, exc, self.report)
            return False
        return True

    def _settle(self) -> bool:
        """Read the replies to what the owner owed, and record its outcome: sent once the 250
        for its content is in. False once the connection is gone."""
        owner, refusal = self.owner, self.refusal
        if owner is None:
            return True
        self.owner, self.owed, self.refusal = None, b"", None
        try:
            if refusal is None:
                code, reply = _reply(self.smtp)
                if code != 250:
                    return self._record(owner, smtplib.SMTPDataError(code, reply))
                self.sent.append(owner.id)
                self.report.sent += 1
                return True
            if self.empty_message:
                code, reply = _reply(self.smtp)
                if code == 421:
                    return self._record(owner, smtplib.SMTPResponseException(code, reply))
            _reply(self.smtp)  # RSET's, ignored as `send_message` ignores it
        except (OSError, smtplib.SMTPException) as exc:
            return self._record(owner, exc)
        return self._record(owner, refusal)

    def _record(self, message: Claimed, exc: Exception) -> bool:
        """Fail or retry `message` for `exc`; whether the connection may still be used."""
        usable = _record_error(self.app, message, exc, self.report)
        return usable and self.smtp.sock is not None


@dataclass
class OutboxSummary:
    """The outbox at a glance, for operators. Failures name the domain, never the address."""

    queued: int
    sent: int
    failed: int
    failures: list[str]


def outbox_summary(session: Session, recent: int = 20) -> OutboxSummary:
    """Counts by status and the most recent failures."""
    by_status = dict(
        session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    )
    failed_rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .order_by(OutboxMessage.id.desc())
        .limit(recent)
    )
    return OutboxSummary(
        queued=by_status.get(OutboxStatus.QUEUED, 0),
        sent=by_status.get(OutboxStatus.SENT, 0),
        failed=by_status.get(OutboxStatus.FAILED, 0),
        failures=[
            f"#{m.id} to @{m.recipient_domain} after {m.attempts} attempts: {m.last_error}"
            for m in failed_rows
        ],
    )


def drain(app: Flask) -> DeliveryReport:
    """Send everything that is due now, then return (`worker --drain`)."""
    owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    total = DeliveryReport()
    with new_session(app) as session:
        while True:
            report = deliver_batch(app, session, owner)
            total.sent += report.sent
            total.retried += report.retried
            total.failed += report.failed
            if report.sent + report.retried + report.failed == 0:
                return total
            if report.sent == 0:
                # Nothing got through this pass; what is left is scheduled for later.
                return total


def run_forever(
    app: Flask,
    poll_interval: float = 0.5,
    purge_every: float = 600.0,
    scrub_every: float = 60.0,
    snapshot_every: float = 60.0,
    checkpoint_every: float = 0.25,
    statistics_every: float = 2.0,
    gather: float = 0.2,
) -> None:
    """Deliver mail as it becomes due, in batches: after a batch smaller than
    MAIL_BATCH_SIZE the worker waits `gather` seconds for more mail to come in, since a claim,
    an SMTP connection and the UPDATE that marks a batch sent cost the same for one message
    as for two hundred (during a rush of signers, batches of about 15 spent half the worker's
    time on them); purge expired pending signatures, record the count
    history (hourly rows and milestones) and scrub the SQLite write-ahead log every so often;
    on SQLite, checkpoint the log every `checkpoint_every` seconds so web requests need not;
    on PostgreSQL, refresh the growing tables' statistics when due, checked every
    `statistics_every` seconds (`db.refresh_statistics`)."""
    owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    next_purge = next_scrub = next_snapshot = next_checkpoint = next_statistics = 0.0
    while True:
        report = DeliveryReport()
        try:
            with new_session(app) as session:
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + purge_every
                    purge_expired(session, utcnow())
                    session.commit()
                if time.monotonic() >= next_snapshot:
                    next_snapshot = time.monotonic() + snapshot_every
                    history.record(session, utcnow())
                    session.commit()
                report = deliver_batch(app, session, owner)
            if time.monotonic() >= next_statistics:
                next_statistics = time.monotonic() + statistics_every
                try:
                    refresh_statistics(get_engine(app))
                except Exception:
                    # Stale statistics slow things down; they must not hold up the mail.
                    log.warning("refreshing statistics failed", exc_info=True)
            if time.monotonic() >= next_scrub:
                next_scrub = time.monotonic() + scrub_every
                checkpoint_sqlite(get_engine(app))
            elif time.monotonic() >= next_checkpoint:
                # Copy the web requests' WAL pages into the database here, off their path,
                # and restart the log before a commit would have to.
                next_checkpoint = time.monotonic() + checkpoint_every
                restart_sqlite_log(get_engine(app))
        except Exception:
            # A database outage or one bad housekeeping pass must not stop the mail: log
            # (no message content) and try again shortly.
            log.exception("worker pass failed; retrying in %.0f s", RETRY_PAUSE)
            time.sleep(RETRY_PAUSE)
            continue
        handled = report.sent + report.retried + report.failed
        if handled == 0:
            time.sleep(poll_interval)
        elif handled < app.config["MAIL_BATCH_SIZE"]:
            time.sleep(gather)
