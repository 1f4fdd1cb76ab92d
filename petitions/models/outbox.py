"""The outbox: email written in the same transaction as the change it reports."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition


class OutboxStatus(enum.StrEnum):
    """Queued until the worker delivers it or gives up."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutboxMessage(Base):
    """One email waiting for the worker: a template name and the little it needs to fill it.

    The worker renders it when it sends. Once sent, recipient and context are wiped. Rows
    queued before migration 0004 carry a rendered subject and body instead, sent as they are.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the address; cleared after delivery so the database keeps no trail
    recipient: Mapped[str | None] = mapped_column(String(254))
    recipient_domain: Mapped[str] = mapped_column(String(253))
    #: `mail/<template>.txt` and `.html`; None on a message rendered before migration 0004
    template: Mapped[str | None] = mapped_column(String(40))
    #: what the templates show (strings, numbers, small dicts of them); wiped once sent
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    #: the rendered message of a row queued before migration 0004; wiped once sent
    subject: Mapped[str | None] = mapped_column(String(200))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(String(8), default=OutboxStatus.QUEUED)
    #: failed attempts since it was queued (or put back in the queue by `mail-retry`)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: a worker's claim on the message; another worker skips it until the lease runs out
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: when the worker gave up on it, for `mail-retry --since`
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def _check_queued(self, action: str) -> None:
        if self.status != OutboxStatus.QUEUED:
            raise InvalidTransition(f"A {self.status} message cannot be {action}.")

    def mark_sent(self, now: datetime) -> None:
        """Record the delivery and forget who was written to, and what."""
        self._check_queued("marked sent")
        self.status = OutboxStatus.SENT
        self.sent_at = now
        self.recipient = self.context = None
        self.subject = self.body_text = self.body_html = None
        self.lease_owner = self.lease_until = None

    def retry(self, error: str, at: datetime) -> None:
        """Count a failed attempt and try again at `at`, leaving it for any worker."""
        self._check_queued("retried")
        self.attempts += 1
        self.last_error = error[:500]
        self.next_attempt_at = at
        self.lease_owner = self.lease_until = None

    def fail(self, error: str, now: datetime) -> None:
        """Give up on it; `requeue` can put it back."""
        self._check_queued("failed")
        self.status = OutboxStatus.FAILED
        self.attempts += 1
        self.last_error = error[:500]
        self.failed_at = now
        self.lease_owner = self.lease_until = None

    def release(self) -> None:
        """Give up this worker's lease, so that the next pass sends it at once."""
        self._check_queued("released")
        self.lease_owner = self.lease_until = None

    def requeue(self, now: datetime) -> None:
        """Put a failed message back in the queue, due now, with its retries renewed."""
        if self.status != OutboxStatus.FAILED:
            raise InvalidTransition(f"A {self.status} message cannot be put back in the queue.")
        self.status = OutboxStatus.QUEUED
        self.attempts = 0
        self.next_attempt_at = now
        self.failed_at = None
