"""The outbox: email written in the same transaction as the change it reports."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow


class OutboxStatus(enum.StrEnum):
    """Queued until the worker delivers it or gives up."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutboxMessage(Base):
    """One email waiting for the worker. Once sent, recipient and body are wiped."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the address; cleared after delivery so the database keeps no trail
    recipient: Mapped[str | None] = mapped_column(String(254))
    recipient_domain: Mapped[str] = mapped_column(String(253))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(String(8), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: a worker's claim on the message; another worker skips it until the lease runs out
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def mark_sent(self, now: datetime) -> None:
        """Record delivery and wipe what would tell who was written to."""
        self.status = OutboxStatus.SENT
        self.sent_at = now
        self.recipient = None
        self.body_text = ""
        self.body_html = None
        self.lease_owner = None
        self.lease_until = None
