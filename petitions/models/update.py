"""Updates a letter's committee sends to the addresses that asked for them, and which
subscriber each update's email went to until the worker has settled it."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition
from petitions.models.subscriber import Subscriber


class UpdateState(enum.StrEnum):
    """Queued until the worker has put an email for every subscriber in the outbox."""

    QUEUED = "queued"
    SENT = "sent"


class Update(Base):
    """One update: a subject and a Markdown body, emailed and posted on the timeline."""

    __tablename__ = "updates"
    #: one update a day per letter, whatever two requests or approvals race
    __table_args__ = (UniqueConstraint("petition_id", "sent_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(150))
    #: Markdown, rendered and sanitised as letters are
    body_markdown: Mapped[str] = mapped_column(Text)
    state: Mapped[UpdateState] = mapped_column(String(10), default=UpdateState.QUEUED)
    #: the UTC day it was sent (the one-a-day rule's key)
    sent_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: emails put in the outbox for it, and how many of those the SMTP server accepted
    queued_count: Mapped[int] = mapped_column(Integer, default=0)
    delivered_count: Mapped[int] = mapped_column(Integer, default=0)

    def finish_queueing(self) -> None:
        """Every subscriber's email is in the outbox."""
        if self.state != UpdateState.QUEUED:
            raise InvalidTransition("This update was already queued for everyone.")
        self.state = UpdateState.SENT


class UpdateMessage(Base):
    """That one subscriber's email for one update was queued; its outbox row until settled.

    It names no address: the outbox row holds that until it is sent, as every email's does.
    """

    __tablename__ = "update_messages"
    __table_args__ = (UniqueConstraint("update_id", "subscriber_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("updates.id", ondelete="CASCADE"))
    subscriber_id: Mapped[str] = mapped_column(
        ForeignKey(Subscriber.id, ondelete="CASCADE"), index=True
    )
    #: the outbox row, until the worker reads its result (sent, or refused for good)
    outbox_id: Mapped[int | None] = mapped_column(Integer, index=True)
