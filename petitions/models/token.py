"""Single-use secrets sent by email: confirmation links and codes, resets, withdrawals."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow


class TokenPurpose(enum.StrEnum):
    """What a token may be used for; a token of one purpose is useless for another."""

    CONFIRM_SIGNATURE = "confirm_signature"
    WITHDRAW_SIGNATURE = "withdraw_signature"
    CONFIRM_ACCOUNT = "confirm_account"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a password
    CHANGE_EMAIL = "change_email"


class Token(Base):
    """A server-side nonce, stored only as hashes, deleted when used.

    The link carries the signed nonce; the short code is tied to `handle`, a random
    public id that the page where the code is typed carries in a hidden field.
    """

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[TokenPurpose] = mapped_column(String(24))
    #: SHA-256 of the nonce that the emailed link carries
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: random public id naming this token on the code-entry form
    handle: Mapped[str] = mapped_column(String(32), unique=True)
    #: keyed hash of the short code; None where no code is offered
    code_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    #: wrong codes typed so far; the code dies at the configured limit
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    signature_id: Mapped[int | None] = mapped_column(
        ForeignKey("signatures.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: when it was used; a used token is refused, but can still say "already done"
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    def is_expired(self, now: datetime) -> bool:
        """Whether the token is past its lifetime."""
        return now >= self.expires_at
