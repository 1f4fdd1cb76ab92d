"""One-time phrases for proving an address with a message the signer sends themself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import DomainError


class PhraseExpired(DomainError):
    """The phrase is older than its hour, or was replaced by a newer one."""


class PhraseUsed(DomainError):
    """The phrase already proved an address once."""


class ProofPhrase(Base):
    """A phrase shown to one browser (which keeps `handle` in its session); stored as a hash."""

    __tablename__ = "proof_phrases"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: random public id, kept in the browser's signed session cookie
    handle: Mapped[str] = mapped_column(String(32), unique=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    #: keyed hash of the phrase, bound to the handle (as a code is to its token)
    phrase_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: when a message with this phrase proved an address; a phrase works once
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def check_usable(self, now: datetime) -> None:
        """Raise PhraseUsed or PhraseExpired unless the phrase may still prove an address."""
        if self.used_at is not None:
            raise PhraseUsed(
                "This phrase was already used. Each phrase works once: get a new one below."
            )
        if now >= self.expires_at:
            raise PhraseExpired(
                "This phrase is more than an hour old. Get a new one and send a new message."
            )
