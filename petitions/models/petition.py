"""Letters (petitions) and the employer domains whose staff may sign them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition
from petitions.models.signature import forget_addresses


class PetitionState(enum.StrEnum):
    """Where a letter is in its life."""

    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class Petition(Base):
    """An open letter: drafted by its committee, then published and signed, then closed."""

    __tablename__ = "petitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    #: who the letter is for, e.g. "Satya Nadella, CEO, Microsoft"
    addressed_to: Mapped[str] = mapped_column(String(200))
    #: Markdown source; rendered with raw HTML off and sanitized
    body_markdown: Mapped[str] = mapped_column(Text)
    #: optional number of signatures the organizer aims for
    goal: Mapped[int | None] = mapped_column(Integer)
    #: public address part; given at publication, never changed afterwards
    slug: Mapped[str | None] = mapped_column(String(80), unique=True)
    state: Mapped[PetitionState] = mapped_column(String(10), default=PetitionState.DRAFT)
    #: whether addresses outside the employer domains may sign, counted as supporters
    allow_supporters: Mapped[bool] = mapped_column(Boolean, default=True)
    #: colleagues needed before "named once enough colleagues are" signers are shown
    reveal_threshold: Mapped[int] = mapped_column(Integer, default=10)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: set by a site admin: the letter disappears from every public page and the API
    hidden_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: set by a site admin: listed in the index, feed and API before the signature threshold
    listing_approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: set by an owner: publishing, closing, amending... wait for a second member's approval
    two_person_rule: Mapped[bool] = mapped_column(Boolean, default=False)

    domains: Mapped[list[EmployerDomain]] = relationship(
        back_populates="petition",
        cascade="all, delete-orphan",
        order_by="EmployerDomain.domain",
        lazy="selectin",
    )

    @property
    def is_draft(self) -> bool:
        """Whether only the organizer can see it."""
        return self.state == PetitionState.DRAFT

    @property
    def is_open(self) -> bool:
        """Whether it takes signatures."""
        return self.state == PetitionState.OPEN

    @property
    def is_closed(self) -> bool:
        """Whether signing has stopped for good."""
        return self.state == PetitionState.CLOSED

    def edit(
        self,
        *,
        title: str,
        addressed_to: str,
        body_markdown: str,
        goal: int | None,
        employers: dict[str, str],
        allow_supporters: bool,
        reveal_threshold: int,
    ) -> None:
        """Change a draft; once published only the goal may change, and nothing once closed."""
        if self.is_closed:
            raise InvalidTransition("A closed letter can no longer be edited.")
        current_employers = {d.domain: d.company_name for d in self.domains}
        if self.is_open and (
            title != self.title
            or addressed_to != self.addressed_to
            or body_markdown != self.body_markdown
            or employers != current_employers
            or allow_supporters != self.allow_supporters
            or reveal_threshold != self.reveal_threshold
        ):
            raise InvalidTransition(
                "A published letter's text and signing rules are fixed, so no one's signature is"
                " moved to words or rules they did not sign. Only the goal can change."
            )
        self.title, self.addressed_to, self.body_markdown, self.goal = (
            title,
            addressed_to,
            body_markdown,
            goal,
        )
        self.allow_supporters, self.reveal_threshold = allow_supporters, reveal_threshold
        # Changed in place, so a kept domain never meets its own unique constraint.
        for employer in list(self.domains):
            if employer.domain not in employers:
                self.domains.remove(employer)
            else:
                employer.company_name = employers[employer.domain]
        for domain, name in employers.items():
            if domain not in current_employers:
                self.domains.append(EmployerDomain(domain=domain, company_name=name))

    def publish(self, slug: str, now: datetime) -> None:
        """Open a draft for signatures under its public slug."""
        if not self.is_draft:
            raise InvalidTransition("Only a draft can be published.")
        self.slug = slug
        self.state = PetitionState.OPEN
        self.published_at = now

    def close(self, now: datetime) -> None:
        """Stop signing and, in the same transaction, erase every address hash of its
        signatures (every way of closing comes here); the page stays up with the final count."""
        if not self.is_open:
            raise InvalidTransition("Only an open letter can be closed.")
        session = object_session(self)
        if session is None:
            raise InvalidTransition("A letter closes only inside a database session.")
        self.state = PetitionState.CLOSED
        self.closed_at = now
        forget_addresses(session, self.id)

    @property
    def is_public(self) -> bool:
        """Whether the public may see it: published and not hidden by an admin."""
        return not self.is_draft and self.hidden_at is None

    def hide(self, now: datetime) -> None:
        """Take the letter off every public page (admins only)."""
        if self.hidden_at is not None:
            raise InvalidTransition("This letter is already hidden.")
        self.hidden_at = now

    def unhide(self) -> None:
        """Put a hidden letter back."""
        if self.hidden_at is None:
            raise InvalidTransition("This letter is not hidden.")
        self.hidden_at = None

    def approve_listing(self, now: datetime) -> None:
        """List a published letter before it reaches the signature threshold (admins only)."""
        if self.is_draft:
            raise InvalidTransition("Only a published letter can be listed.")
        if self.listing_approved_at is not None:
            raise InvalidTransition("This letter is already approved for listing.")
        self.listing_approved_at = now

    def company_for(self, email_domain: str) -> EmployerDomain | None:
        """The listed employer whose domain (or a subdomain of it) the address is at."""
        for employer in self.domains:
            if email_domain == employer.domain or email_domain.endswith("." + employer.domain):
                return employer
        return None


class EmployerDomain(Base):
    """A company whose staff sign as verified employees: `microsoft.com` → Microsoft."""

    __tablename__ = "employer_domains"
    __table_args__ = (UniqueConstraint("petition_id", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id", ondelete="CASCADE"))
    #: lower-case domain without a leading dot; subdomains match too
    domain: Mapped[str] = mapped_column(String(253))
    company_name: Mapped[str] = mapped_column(String(100))

    petition: Mapped[Petition] = relationship(back_populates="domains")
