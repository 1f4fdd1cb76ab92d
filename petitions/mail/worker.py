"""The mail worker: lease due messages, send each batch over one SMTP connection with smtplib,
retry with capped backoff or fail, and stop cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import re
import signal
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from petitions.db import new_session, utcnow
from petitions.mail.outbox import LEASE_SECONDS, claim
from petitions.mail.render import compose
from petitions.models import OutboxMessage

log = logging.getLogger(__name__)

#: seconds the worker waits after a pass that failed (the database down, say)
RETRY_PAUSE = 5.0


@dataclass
class DeliveryReport:
    """What one pass of the worker did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        """Messages this pass dealt with, one way or another."""
        return self.sent + self.retried + self.failed


@dataclass(frozen=True)
class Chore:
    """Housekeeping the worker does every `every` seconds, in a session it then commits."""

    name: str
    every: float
    work: Callable[[Session, datetime], Any]


def retry_delay(config: dict[str, Any], attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: doubling from MAIL_RETRY_BASE,
    capped at MAIL_RETRY_MAX."""
    base, cap = config["MAIL_RETRY_BASE"], config["MAIL_RETRY_MAX"]
    return min(base * 2 ** min(attempts - 1, 32), cap)


def gives_up(config: dict[str, Any], attempts: int) -> bool:
    """Whether a message has been retried for MAIL_RETRY_FOR seconds of backoff by the end
    of its `attempts`-th failed attempt; the time it waited can only have been longer."""
    waited = sum(retry_delay(config, attempt) for attempt in range(1, attempts))
    return waited >= config["MAIL_RETRY_FOR"]


def pause_after(report: DeliveryReport, batch_size: int, interval: float, gather: float) -> float:
    """Seconds to wait before the next pass: none after a full batch; `gather` after a short
    one, so a rush goes out in full batches; `interval` when there was nothing to send."""
    if report.handled == 0:
        return interval
    return gather if report.handled < batch_size else 0.0


def connect(app: Flask) -> smtplib.SMTP:
    """An SMTP connection to the configured server, upgraded and logged in if configured."""
    config = app.config
    smtp = smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"])
    try:
        if config["SMTP_STARTTLS"]:
            # smtplib's own default context checks no certificate; this one does.
            smtp.starttls(context=ssl.create_default_context())
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _without_address(reply: bytes | str, recipient: str) -> str:
    """A server's reply with the address (and its local part) blanked out: `last_error` is
    shown by `mail-status`, which names domains only."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    local = recipient.rpartition("@")[0]
    for secret in (recipient, local if len(local) >= 3 else ""):
        if secret:
            text = re.sub(re.escape(secret), "…", text, flags=re.IGNORECASE)
    return text


class _Batch:
    """One batch: its messages' outcomes, written back in one commit."""

    def __init__(self, app: Flask, now: datetime) -> None:
        self.app = app
        self.now = now
        self.report = DeliveryReport()
        #: when to stop starting messages: a message begun later could still be in flight when
        #: the lease runs out and another worker claims it
        self.lease_ends = time.monotonic() + LEASE_SECONDS - app.config["SMTP_TIMEOUT"]

    def temporary(self, message: OutboxMessage, error: str) -> None:
        """Retry the message with backoff, or fail it once it has been retried long enough."""
        config = self.app.config
        if gives_up(config, message.attempts + 1):
            message.fail(error, self.now)
            self.report.failed += 1
            return
        delay = retry_delay(config, message.attempts + 1)
        message.retry(error, self.now + timedelta(seconds=delay))
        self.report.retried += 1

    def permanent(self, message: OutboxMessage, error: str) -> None:
        """Fail a message the server refused for good."""
        message.fail(error, self.now)
        self.report.failed += 1
        log.warning("message #%d to @%s refused for good", message.id, message.recipient_domain)

    def refused(self, message: OutboxMessage, exc: Exception, smtp: smtplib.SMTP) -> bool:
        """Retry or fail a message smtplib raised `exc` for; whether the connection is still
        good for the next one."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = sorted(code for code, _reply in exc.recipients.values())
            if any(500 <= code < 600 for code in codes):
                self.permanent(message, f"recipient refused: {codes}")
            else:
                self.temporary(message, f"recipient deferred: {codes}")
        elif isinstance(exc, smtplib.SMTPNotSupportedError):
            self.temporary(message, "server lacks SMTPUTF8")
        elif isinstance(exc, smtplib.SMTPResponseException):
            reply = _without_address(exc.smtp_error, message.recipient or "")
            detail = f"{exc.smtp_code} {reply!r}"
            if 500 <= exc.smtp_code < 600:
                self.permanent(message, f"rejected: {detail}")
            else:
                self.temporary(message, f"temporary: {detail}")
            if exc.smtp_code == 421:  # the server is closing the connection (RFC 5321)
                return False
        else:
            self.temporary(message, f"{type(exc).__name__}: {exc}")
            return False
        return smtp.sock is not None  # smtplib itself closes it after some 421s

    def send_all(
        self, smtp: smtplib.SMTP, messages: list[OutboxMessage], stop: threading.Event | None
    ) -> None:
        """Send the messages in order, each rendered just before; stop when the connection is
        lost, when the lease is running out, or after the message in flight once `stop` is set."""
        sender = parseaddr(self.app.config["MAIL_FROM"])[1]
        for message in messages:
            if (stop is not None and stop.is_set()) or time.monotonic() >= self.lease_ends:
                return
            try:
                email = compose(self.app, message)
            except Exception as exc:
                # A template that fails (a bad deploy, say) is retried like a busy server. The
                # log names the template and the error's kind, never a value of the context.
                log.warning(
                    "message #%d (%s) could not be rendered: %s",
                    message.id,
                    message.template,
                    type(exc).__name__,
                )
                self.temporary(message, f"render: {type(exc).__name__}")
                continue
            try:
                smtp.send_message(email, from_addr=sender, to_addrs=[message.recipient or ""])
            except (OSError, smtplib.SMTPException) as exc:
                if not self.refused(message, exc, smtp):
                    return
                continue
            message.mark_sent(self.now)
            self.report.sent += 1


def deliver_batch(
    app: Flask,
    session: Session,
    owner: str,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Lease one batch, send it over one SMTP connection, and write back in one commit what
    was sent, retried or failed; the lease of every message left unsent is given up."""
    now = now or utcnow()
    if stop is not None and stop.is_set():
        return DeliveryReport()
    messages = claim(session, owner, app.config["MAIL_BATCH_SIZE"], now)
    batch = _Batch(app, now)
    if not messages:
        return batch.report
    try:
        try:
            smtp = connect(app)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("SMTP server unreachable; %d messages will be retried", len(messages))
            for message in messages:
                batch.temporary(message, f"connect: {type(exc).__name__}: {exc}")
            return batch.report
        try:
            with app.app_context():
                batch.send_all(smtp, messages, stop)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
    finally:
        for message in messages:
            if message.lease_owner is not None:
                message.release()
        session.commit()
        report = batch.report
        log.info(
            "mail batch: %d sent, %d to retry, %d failed",
            report.sent,
            report.retried,
            report.failed,
        )
    return batch.report


def new_owner() -> str:
    """A name for this worker's leases: host and a random part, unique per run."""
    return f"{socket.gethostname()[:27]}:{uuid.uuid4().hex[:12]}"


def do_chores(app: Flask, chores: Sequence[Chore], due: dict[str, float]) -> None:
    """Run each chore whose time has come (all of them on the first call), each in its own
    session; one that fails is logged and does not hold up the mail."""
    for chore in chores:
        if time.monotonic() < due.get(chore.name, 0.0):
            continue
        due[chore.name] = time.monotonic() + chore.every
        try:
            with new_session(app) as session:
                chore.work(session, utcnow())
                session.commit()
        except Exception:
            log.exception("worker chore %s failed", chore.name)


def drain(app: Flask, now: datetime | None = None, chores: Sequence[Chore] = ()) -> DeliveryReport:
    """Run the chores once and send everything due at `now`, then return (`worker --drain`)."""
    do_chores(app, chores, {})
    owner = new_owner()
    total = DeliveryReport()
    with new_session(app) as session:
        while True:
            report = deliver_batch(app, session, owner, now)
            total.sent += report.sent
            total.retried += report.retried
            total.failed += report.failed
            if report.sent == 0:
                # Nothing was due, or nothing got through: what is left waits for later.
                return total


def run(
    app: Flask,
    stop: threading.Event,
    interval: float = 0.5,
    gather: float = 0.2,
    chores: Sequence[Chore] = (),
) -> None:
    """Deliver mail as it becomes due and do the chores, until `stop` is set."""
    owner = new_owner()
    due: dict[str, float] = {}
    while not stop.is_set():
        do_chores(app, chores, due)
        try:
            with new_session(app) as session:
                report = deliver_batch(app, session, owner, stop=stop)
        except Exception:
            # A database outage must not stop the worker: log (no message content), try again.
            log.exception("worker pass failed; retrying in %.0f s", RETRY_PAUSE)
            stop.wait(RETRY_PAUSE)
            continue
        stop.wait(pause_after(report, app.config["MAIL_BATCH_SIZE"], interval, gather))


def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGTERM and SIGINT set `stop`: the worker finishes the message it is sending, and
    gives back the rest of its batch. A second signal acts as it would have before."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}

    def handle(number: int, _frame: object) -> None:
        stop.set()
        for each, handler in previous.items():
            signal.signal(each, handler)

    for number in previous:
        signal.signal(number, handle)
