"""Signatures: pending until the address is proven, then confirmed and address-free."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition
from petitions.models.token import Token


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
    replaces it with the keyed hash, which alone refuses a second signature; closing the
    letter erases the hash too (`forget_addresses`).
    """

    __tablename__ = "signatures"
    __table_args__ = (
        UniqueConstraint("petition_id", "address_hash"),
        Index("ix_signatures_listing", "petition_id", "state", "display", "confirmed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id", ondelete="CASCADE"))
    state: Mapped[SignatureState] = mapped_column(String(10), default=SignatureState.PENDING)
    #: HMAC of the canonical address (case folded, +tag removed); unique per letter while it
    #: is open, None once it closed: then nothing here can be tested against a directory
    address_hash: Mapped[str | None] = mapped_column(String(64))
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
    #: the personal address for updates, sealed under UPDATES_KEY, kept only until the worker
    #: moves it to the subscriber store (petitions.signing.subscribers)
    updates_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the withdrawal link and code for the "signed" email to that address, sealed likewise
    withdrawal_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: when the details above were given; only the token issued in that same request confirms
    #: them as they are (anyone may type this address into the form and change them)
    details_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
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

    def keep_only_the_count(self) -> None:
        """Drop every detail a stranger could have typed: counted only, no name, no updates."""
        self.display = Display.COUNTED
        self.name = self.job_title = self.team = None
        self.updates_sealed = self.withdrawal_sealed = None

    def withdraw(self) -> None:
        """Check that a signature may be withdrawn: only a confirmed one has a withdrawal link."""
        if not self.is_confirmed:
            raise InvalidTransition("This signature was never confirmed.")


def forget_addresses(session: Session, petition_id: int) -> None:
    """Erase every address and address hash behind a letter's signatures (as it closes).

    Pending signatures, which hold the address itself and can no longer count, go (their
    tokens become decoys); confirmed ones keep their count, public name and withdrawal token.
    """
    pending = select(Signature.id).where(
        Signature.petition_id == petition_id, Signature.state == SignatureState.PENDING
    )
    # Their tokens live on as decoys, so that a code form someone kept open answers as one
    # opened with an address that already counted (signer safety, issue 22).
    session.execute(
        update(Token)
        .where(Token.signature_id.in_(pending))
        .values(signature_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Signature)
        .where(Signature.petition_id == petition_id, Signature.state == SignatureState.PENDING)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Signature)
        .where(Signature.petition_id == petition_id, Signature.address_hash.is_not(None))
        .values(address_hash=None)
        .execution_options(synchronize_session=False)
    )
