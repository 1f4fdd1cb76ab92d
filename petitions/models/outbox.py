"""The outbox: email written in the same transaction as the change it reports."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, Update, update
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow


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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: a worker's claim on the message; another worker skips it until the lease runs out
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @classmethod
    def mark_sent(cls, ids: Sequence[int], now: datetime) -> Update:
        """One UPDATE recording the delivery of `ids` and wiping who was written to, and what."""
        return (
            update(cls)
            .where(cls.id.in_(ids))
            .values(
                status=OutboxStatus.SENT,
                sent_at=now,
                recipient=None,
                context=None,
                subject=None,
                body_text=None,
                body_html=None,
                lease_owner=None,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
