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

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from petitions.db import checkpoint_sqlite, get_engine, new_session, refresh_statistics, utcnow
from petitions.mail import MessageWriter, RenderedEmail, render_email
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


def claim_batch(session: Session, owner: str, limit: int, now: datetime) -> list[OutboxMessage]:
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
    batch = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.lease_owner == owner, OutboxMessage.status == OutboxStatus.QUEUED)
            .order_by(OutboxMessage.id)
            # The claim above bypassed the session: refresh rows it may hold from a past batch.
            .execution_options(populate_existing=True)
        )
    )
    # End that read's transaction before the batch is sent: on SQLite it took the write lock,
    # which every signature would otherwise wait for until the whole batch had gone out.
    session.commit()
    return batch


def _message_bytes(app: Flask, message: OutboxMessage, writer: MessageWriter) -> bytes:
    """Render the message (or take the rendered words of one queued before migration 0004)."""
    if message.template is None:
        words = RenderedEmail(message.subject or "", message.body_text or "", message.body_html)
    else:
        words = render_email(app, message.template, message.context or {})
    return writer.write(message.recipient or "", words)


def _connect(app: Flask) -> smtplib.SMTP:
    config = app.config
    smtp = smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"])
    if config["SMTP_STARTTLS"]:
        smtp.starttls()
    if config["SMTP_USERNAME"]:
        smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
    return smtp


def _retry(app: Flask, message: OutboxMessage, error: str, report: DeliveryReport) -> None:
    """Schedule another attempt with exponential backoff, or fail the message once its
    attempts are used up; counted in `report` as retried or failed."""
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


def _fail(message: OutboxMessage, error: str, report: DeliveryReport) -> None:
    """Give up on a message the server refused for good."""
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
        # Messages left leased (after a dropped connection) are freed for the next pass.
        done = set(sent)
        for message in batch:
            if (
                message.id not in done
                and message.status == OutboxStatus.QUEUED
                and message.lease_owner == owner
            ):
                message.lease_owner = message.lease_until = None
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


_LINE_START_DOT = re.compile(rb"^\.", re.MULTILINE)
#: what may not appear in an address written between angle brackets in a command
_NOT_IN_PATH = frozenset("<>\r\n\0 ")


def send_message(smtp: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """Send one message of CRLF-ended lines to one recipient; raise as `SMTP.sendmail` does.

    Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
    and the message in a second: two round trips instead of smtplib's four, which was most of
    the time the worker and the server spent on each message. An address that is not ASCII
    needs a server that speaks SMTPUTF8 (RFC 6531).
    """
    utf8 = not (sender + recipient).isascii()
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("pipelining") or _NOT_IN_PATH.intersection(sender + recipient):
        smtp.sendmail(sender, [recipient], data, mail_options=("SMTPUTF8",) if utf8 else ())
        return
    if utf8 and not smtp.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
    option = " SMTPUTF8" if utf8 else ""
    smtp.send(f"MAIL FROM:<{sender}>{option}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
    mail = _reply(smtp)
    rcpt = _reply(smtp) if mail[0] != 421 else mail
    start = _reply(smtp) if rcpt[0] != 421 else rcpt
    if mail[0] == 250 and rcpt[0] in (250, 251) and start[0] == 354:
        body = _LINE_START_DOT.sub(b"..", data)
        smtp.send(body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"))
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
    if mail[0] != 250:
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
    if rcpt[0] not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    raise smtplib.SMTPDataError(*start)


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
    batch: list[OutboxMessage],
    sent: list[int],
    report: DeliveryReport,
) -> None:
    """Send each message of the batch in turn, noting the ids sent; stop if the line drops."""
    for message in batch:
        try:
            data = _message_bytes(app, message, writer)
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
            continue
        recipient = message.recipient or ""
        try:
            send_message(smtp, writer.envelope_from, recipient, data)
        except smtplib.SMTPResponseException as exc:
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
            if exc.smtp_code == 421:  # the server is closing the connection
                break
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if any(500 <= code < 600 for code in codes):
                _fail(message, f"recipient refused: {codes}", report)
            else:
                _retry(app, message, f"recipient deferred: {codes}", report)
        except smtplib.SMTPNotSupportedError:
            # This server cannot take this address; the connection itself is fine.
            _retry(app, message, "server lacks SMTPUTF8", report)
        except (OSError, smtplib.SMTPException) as exc:
            _retry(app, message, f"{type(exc).__name__}: {exc}", report)
            break
        else:
            sent.append(message.id)
            report.sent += 1


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
    checkpoint_every: float = 1.0,
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
                # Copy the web requests' WAL pages into the database here, off their path.
                next_checkpoint = time.monotonic() + checkpoint_every
                checkpoint_sqlite(get_engine(app), "PASSIVE")
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
