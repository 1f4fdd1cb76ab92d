"""Signatures: pending until the emailed token is used, then confirmed and address-free."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition


class SignatureState(enum.StrEnum):
    """Pending until the signer proves the address; then confirmed (verified)."""

    PENDING = "pending"
    CONFIRMED = "confirmed"


class Affiliation(enum.StrEnum):
    """How the signer relates to the company they sign from."""

    CURRENT = "current"
    FORMER = "former"
    CONTRACTOR = "contractor"


class Display(enum.StrEnum):
    """How a signer appears in public; the first is the most protective and the default."""

    COUNTED = "counted"
    ANONYMOUS = "anonymous"
    THRESHOLD = "threshold"
    NAMED = "named"

    @property
    def keeps_name(self) -> bool:
        """Whether a name is stored at all for this choice."""
        return self in {Display.NAMED, Display.THRESHOLD}


class Signature(Base):
    """One person's signature on one letter.

    While pending it holds the verification address (to send the link). Confirming
    replaces it with the keyed hash, which alone refuses a second signature.
    """

    __tablename__ = "signatures"
    __table_args__ = (
        UniqueConstraint("petition_id", "address_hash"),
        Index("ix_signatures_listing", "petition_id", "state", "display", "confirmed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id", ondelete="CASCADE"))
    state: Mapped[SignatureState] = mapped_column(String(10), default=SignatureState.PENDING)
    #: HMAC of the canonical address (case folded, +tag removed); unique per letter
    address_hash: Mapped[str] = mapped_column(String(64))
    #: the verification address, kept only while pending
    email: Mapped[str | None] = mapped_column(String(254))
    #: domain of the verification address, kept in clear for the counts
    email_domain: Mapped[str] = mapped_column(String(253))
    #: the listed employer the address matched; None for supporters
    employer_id: Mapped[int | None] = mapped_column(
        ForeignKey("employer_domains.id", ondelete="SET NULL"), index=True
    )
    affiliation: Mapped[Affiliation] = mapped_column(String(12), default=Affiliation.CURRENT)
    display: Mapped[Display] = mapped_column(String(10), default=Display.COUNTED)
    #: public name; stored only for named and threshold signers
    name: Mapped[str | None] = mapped_column(String(100))
    job_title: Mapped[str | None] = mapped_column(String(100))
    team: Mapped[str | None] = mapped_column(String(100))
    #: optional personal address for updates, never shown to organizers
    updates_email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_confirmed(self) -> bool:
        """Whether the signature counts."""
        return self.state == SignatureState.CONFIRMED

    def confirm(self, now: datetime) -> None:
        """Verify the signature and forget the verification address."""
        if self.is_confirmed:
            raise InvalidTransition("This signature is already confirmed.")
        self.state = SignatureState.CONFIRMED
        self.confirmed_at = now
        self.email = None

    def withdraw(self) -> None:
        """Check that a signature may be withdrawn: only a confirmed one has a withdrawal link."""
        if not self.is_confirmed:
            raise InvalidTransition("This signature was never confirmed.")
