"""Organizer accounts."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition


class User(UserMixin, Base):
    """An organizer who drafts, publishes and closes letters."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: login address, stored case-folded; unique
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    #: argon2id hash in PHC string format
    password_hash: Mapped[str] = mapped_column(String(255))
    #: set when the address was proven through an emailed link; login needs it
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: a new address waiting to be proven through the link sent to it
    pending_email: Mapped[str | None] = mapped_column(String(254))
    #: bumped to end every session at once (password change, "log out everywhere")
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def get_id(self) -> str:
        """Session identity: the id and the session version, so a bump logs everyone out."""
        return f"{self.id}:{self.session_version}"

    @property
    def is_confirmed(self) -> bool:
        """Whether the organizer proved the address."""
        return self.email_confirmed_at is not None

    def end_all_sessions(self) -> None:
        """Invalidate every session and remember-me cookie of this account."""
        self.session_version += 1

    def confirm_email(self, now: datetime) -> None:
        """Mark the address proven; confirming twice is refused."""
        if self.email_confirmed_at is not None:
            raise InvalidTransition("This address is already confirmed.")
        self.email_confirmed_at = now
