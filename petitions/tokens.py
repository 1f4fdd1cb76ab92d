"""Issuing and finding the single-use tokens behind emailed links and codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions import hashing
from petitions.models import Token, TokenPurpose
from petitions.models.token import LONG_CODE_PURPOSE, TokenExpired, TokenInvalid, TokenUsed

__all__ = ["IssuedToken", "TokenExpired", "TokenInvalid", "TokenUsed", "issue"]


@dataclass
class IssuedToken:
    """A token as it is sent: its stored row, the link secret and, where offered, the code."""

    row: Token
    link_token: str
    code: str | None

    @property
    def handle(self) -> str:
        """The public id that the code-entry form carries."""
        return self.row.handle

    @property
    def display_code(self) -> str | None:
        """The code as a person reads it."""
        return hashing.format_code(self.code) if self.code else None


def issue(
    session: Session,
    purpose: TokenPurpose,
    now: datetime,
    *,
    signature_id: int | None = None,
    user_id: int | None = None,
    with_code: bool = False,
    long_code: bool = False,
    max_age: int | None = None,
) -> IssuedToken:
    """Add a token for one purpose to `session`, storing only the hashes of its secrets.

    A short code is bound to the token's handle (the form that takes it carries the handle);
    a long code stands alone and is found by its hash.
    """
    if long_code and purpose != LONG_CODE_PURPOSE:
        raise ValueError(f"{purpose} tokens take no standalone code")
    nonce = hashing.new_nonce()
    handle = hashing.new_handle()
    code = None
    if with_code or long_code:
        code = hashing.new_code(hashing.LONG_CODE_LENGTH if long_code else hashing.CODE_LENGTH)
    lifetime = max_age if max_age is not None else current_app.config["TOKEN_MAX_AGE"]
    row = Token(
        purpose=purpose,
        nonce_hash=hashing.hash_nonce(nonce),
        handle=handle,
        code_hash=hashing.hash_code("standalone" if long_code else handle, code) if code else None,
        code_attempts=0,
        signature_id=signature_id,
        user_id=user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    session.add(row)
    return IssuedToken(row=row, link_token=hashing.sign_nonce(purpose, nonce), code=code)


def find_by_link(session: Session, purpose: TokenPurpose, link_token: str) -> Token:
    """The token behind a link, locked for update; raises TokenInvalid when there is none."""
    nonce = hashing.unsign_nonce(purpose, link_token)
    if nonce is None:
        raise TokenInvalid("This link is not valid. It may have been cut short or changed.")
    row = session.scalars(
        select(Token)
        .where(Token.nonce_hash == hashing.hash_nonce(nonce), Token.purpose == purpose)
        .with_for_update()
    ).first()
    if row is None:
        raise TokenInvalid("This link is not valid, or it is too old to be used.")
    return row


def find_by_handle(session: Session, purpose: TokenPurpose, handle: str | None) -> Token | None:
    """The token a code-entry form names, locked for update, if any."""
    if not hashing.is_handle(handle):
        return None
    return session.scalars(
        select(Token).where(Token.handle == handle, Token.purpose == purpose).with_for_update()
    ).first()


def find_by_long_code(session: Session, purpose: TokenPurpose, typed: str) -> Token | None:
    """The token a standalone (long) code belongs to, if any."""
    code = hashing.normalize_code(typed or "", hashing.LONG_CODE_LENGTH)
    if code is None or purpose != LONG_CODE_PURPOSE:
        return None
    return session.scalars(
        select(Token)
        .where(Token.purpose == purpose, Token.code_hash == hashing.hash_code("standalone", code))
        .with_for_update()
    ).first()
