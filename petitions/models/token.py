"""Single-use secrets sent by email: confirmation links and codes, resets, withdrawals."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import DomainError


class TokenPurpose(enum.StrEnum):
    """What a token may be used for; a token of one purpose is useless for another."""

    CONFIRM_SIGNATURE = "confirm_signature"
    WITHDRAW_SIGNATURE = "withdraw_signature"
    CONFIRM_ACCOUNT = "confirm_account"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a password
    CHANGE_EMAIL = "change_email"


#: the one purpose whose tokens carry a standalone (long) code, found by its hash alone;
#: other codes are bound to their token's handle and never looked up by hash
LONG_CODE_PURPOSE = TokenPurpose.WITHDRAW_SIGNATURE


class TokenInvalid(DomainError):
    """The link or code is malformed, tampered, unknown, or for something else."""


class TokenExpired(DomainError):
    """The token was real but is past its lifetime."""

    def __init__(self, token: Token) -> None:
        super().__init__("This link has expired.")
        self.token = token


class TokenUsed(DomainError):
    """The token was already used."""

    def __init__(self, token: Token) -> None:
        super().__init__("This link was already used.")
        self.token = token


class Token(Base):
    """A server-side nonce, stored only as hashes, deleted when used.

    The link carries the signed nonce; the short code is tied to `handle`, a random
    public id that the page where the code is typed carries in a hidden field.
    """

    __tablename__ = "tokens"
    # Every signature's confirmation writes a row here, so each index is a B-tree written per
    # signer (on SQLite a WAL page, read again by every process). The account index holds
    # only account tokens (`user_id = ?` implies NOT NULL, foreign keys included). The code
    # hash is looked up only for withdrawal codes, but a partial index on `purpose = '...'`
    # cost more than it saved: SQLite re-prepares every statement that binds `purpose = ?`
    # (the confirmation's reads and writes) each time it runs, in case the bound value makes
    # the partial index usable (8 % of a confirmation's rate under load).
    __table_args__ = (
        Index(
            "ix_tokens_user_id",
            "user_id",
            sqlite_where=text("user_id IS NOT NULL"),
            postgresql_where=text("user_id IS NOT NULL"),
        ),
    )

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
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: when it was used; a used token is refused, but can still say "already done"
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    def is_expired(self, now: datetime) -> bool:
        """Whether the token is past its lifetime."""
        return now >= self.expires_at

    def check_usable(self, now: datetime) -> None:
        """Raise TokenUsed or TokenExpired unless the token may still be used."""
        if self.used_at is not None:
            raise TokenUsed(self)
        if self.is_expired(now):
            raise TokenExpired(self)

    def spend(self, now: datetime) -> None:
        """Use the token once; a used or expired token raises."""
        self.check_usable(now)
        self.used_at = now
