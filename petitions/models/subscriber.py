"""Personal addresses for a letter's updates, kept apart from the signatures.

A subscriber row names a letter and holds a sealed address; nothing in it points to a
signature, an employer or a domain, and nothing in its id or date lines up with one.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base
from petitions.models.errors import InvalidTransition


class Subscriber(Base):
    """One personal address that wants a letter's updates, sealed with AES-GCM."""

    __tablename__ = "subscribers"

    #: random (128 bits), so no order of ids follows the order of signatures
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    #: keyed hash (under UPDATES_KEY) of the letter and the canonical address: one row per
    #: address and letter, and the name an unsubscribe link carries
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: nonce and AES-GCM ciphertext of the address, bound to this row's id and letter
    address_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: the day the worker moved it here (never a time: a time would match a confirmation)
    created_on: Mapped[date] = mapped_column(Date)
    #: the day the address itself confirmed it wants updates (double opt-in, issue 27)
    confirmed_on: Mapped[date | None] = mapped_column(Date)

    @property
    def is_confirmed(self) -> bool:
        """Whether the address confirmed it wants updates."""
        return self.confirmed_on is not None

    def confirm(self, today: date) -> None:
        """Record the address's own yes to updates; confirming twice is refused."""
        if self.confirmed_on is not None:
            raise InvalidTransition("This subscription is already confirmed.")
        self.confirmed_on = today
