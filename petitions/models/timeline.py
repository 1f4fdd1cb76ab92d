"""A letter's public timeline after publication: deliveries, receipts, responses, deadlines,
outcomes, updates and corrections. Rows are only inserted; triggers refuse the rest."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow


class TimelineKind(enum.StrEnum):
    """What happened; published, milestones and closed come from the letter and its history."""

    PUBLISHED = "published"
    MILESTONE = "milestone"
    DELIVERED = "delivered"
    RECEIPT = "receipt"
    RESPONSE = "response"
    DEADLINE_PASSED = "deadline_passed"
    OUTCOME = "outcome"
    CLOSED = "closed"
    UPDATE = "update"
    CORRECTION = "correction"


class Outcome(enum.StrEnum):
    """Where the campaign stands, as its committee says."""

    ONGOING = "ongoing"
    WON = "won"
    PARTLY_WON = "partly_won"
    REFUSED = "refused"
    NO_RESPONSE = "no_response"

    @property
    def label(self) -> str:
        """ "Partly won"."""
        return self.value.replace("_", " ").capitalize()


class TimelineEntry(Base):
    """One public line of a letter's timeline, written once."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key to petitions: a cascade would be a delete, which the timeline refuses.
    petition_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[TimelineKind] = mapped_column(String(20))
    #: the day it happened (a delivery's date as the organizers give it)
    happened_on: Mapped[date] = mapped_column(Date)
    #: the sentence shown, e.g. "Delivered to Satya Nadella, CEO, Microsoft in person"
    title: Mapped[str] = mapped_column(String(500))
    #: public text: a note, a response, an outcome's note, a correction
    body: Mapped[str] = mapped_column(Text, default="")
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    #: a delivery's manifest SHA-256, so anyone can check a copy of the pack
    pack_sha256: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[Outcome | None] = mapped_column(String(20))
    #: who put it on the record: organizers, recipient, or Undersigned for automatic entries
    recorded_by: Mapped[str] = mapped_column(String(20))
    #: the entry this one corrects; both stay visible
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("timeline_entries.id"))
    #: makes an entry that must happen once unique, e.g. "receipt:12" or "deadline:12"
    once_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
