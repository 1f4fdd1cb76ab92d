"""Delivering a letter: its targets, each delivery with its frozen pack and private recipient
link, and the responses that came back."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import DomainError, InvalidTransition


class Channel(enum.StrEnum):
    """How a letter reached its target."""

    EMAIL = "email"
    IN_PERSON = "in_person"
    FORUM = "internal_forum"
    OTHER = "other"

    @property
    def label(self) -> str:
        """How the channel reads in a sentence."""
        return {
            Channel.EMAIL: "by email",
            Channel.IN_PERSON: "in person",
            Channel.FORUM: "on an internal forum",
            Channel.OTHER: "another way",
        }[self]


class ResponseSource(enum.StrEnum):
    """Who put a response on the record."""

    RECIPIENT = "recipient"
    ORGANIZERS = "organizers"


class LinkProblem(DomainError):
    """A recipient link that no longer works; the message says why."""


class Target(Base):
    """Someone a letter is for: a person, a role or an organisation."""

    __tablename__ = "delivery_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    #: "Satya Nadella", "the board", "Microsoft"
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(120), default="")
    organisation: Mapped[str] = mapped_column(String(120), default="")
    #: where the committee may send the delivery; private, never shown publicly
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def label(self) -> str:
        """ "Satya Nadella, CEO, Microsoft"."""
        return ", ".join(part for part in (self.name, self.role, self.organisation) if part)


class Delivery(Base):
    """One handing-over of the letter to one target, with the pack frozen at that moment."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_targets.id", ondelete="SET NULL")
    )
    #: the target as named when delivered, kept if the target is edited or removed
    target_label: Mapped[str] = mapped_column(String(400))
    delivered_on: Mapped[date] = mapped_column(Date)
    channel: Mapped[Channel] = mapped_column(String(20))
    #: shown on the public timeline
    note: Mapped[str] = mapped_column(String(1000), default="")
    #: SHA-256 of the pack's manifest.json, published on the timeline
    pack_sha256: Mapped[str] = mapped_column(String(64))
    #: "response requested by"; past it with no response, the timeline says so
    response_requested_by: Mapped[date | None] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: SHA-256 of the nonce in the recipient's private link; a new link replaces it
    link_nonce_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    link_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: when the recipient pressed "Confirm receipt" (set once)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    pack: Mapped[DeliveryPack] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", lazy="raise"
    )

    def link_state(self, now: datetime) -> str:
        """none, live, revoked or expired."""
        if self.link_nonce_hash is None:
            return "none"
        if self.link_revoked_at is not None:
            return "revoked"
        if self.link_expires_at is None or now >= self.link_expires_at:
            return "expired"
        return "live"

    def check_link(self, now: datetime) -> None:
        """Raise LinkProblem unless the recipient link still works."""
        state = self.link_state(now)
        if state == "revoked":
            raise LinkProblem("The organizers withdrew this link.")
        if state != "live":
            raise LinkProblem("This link has expired. Ask the organizers for a new one.")

    def issue_link(self, nonce_hash: str, expires_at: datetime) -> None:
        """Give the delivery a new private link; any earlier one stops working."""
        self.link_nonce_hash, self.link_expires_at = nonce_hash, expires_at
        self.link_revoked_at = None

    def revoke_link(self, now: datetime) -> None:
        """Withdraw the recipient link."""
        if self.link_state(now) != "live":
            raise InvalidTransition("This delivery has no working link to withdraw.")
        self.link_revoked_at = now

    def receive(self, now: datetime) -> None:
        """The recipient confirms receipt; only the first time counts."""
        if self.received_at is not None:
            raise InvalidTransition("Receipt was already recorded.")
        self.received_at = now


class DeliveryPack(Base):
    """The files handed over, made once when the delivery was recorded and never changed."""

    __tablename__ = "delivery_packs"

    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    manifest_json: Mapped[str] = mapped_column(Text)
    signers_csv: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)

    delivery: Mapped[Delivery] = relationship(back_populates="pack")


class DeliveryResponse(Base):
    """An answer from leadership: posted by the recipient, or recorded by the organizers."""

    __tablename__ = "delivery_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[ResponseSource] = mapped_column(String(12))
    #: the response itself, or the organizers' summary of it; plain text
    text: Mapped[str] = mapped_column(Text)
    #: where the response was published, e.g. a company blog post
    link: Mapped[str] = mapped_column(String(500), default="")
    responded_on: Mapped[date] = mapped_column(Date)
    #: who answered, as they signed it
    responder: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
