"""Issuing and redeeming single-use tokens stored in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from petitions import hashing as tokens
from petitions.db import FastStatement, Writes
from petitions.models import Token, TokenPurpose
from petitions.models.errors import DomainError
from petitions.models.token import LONG_CODE_PURPOSE


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What a confirmation reads of its token, without an ORM object: building a transient
    `Token` cost a confirmation more than reading the row."""

    id: int
    purpose: TokenPurpose
    handle: str | None
    code_hash: str | None
    code_attempts: int
    used_at: datetime | None
    expires_at: datetime
    signature_id: int | None

    def is_expired(self, now: datetime) -> bool:
        """Whether the token is past its lifetime (as `Token.is_expired`)."""
        return now >= self.expires_at


class TokenInvalid(DomainError):
    """The link or code is malformed, tampered, unknown, or for something else."""


class TokenExpired(DomainError):
    """The token was real but is past its lifetime."""

    def __init__(self, token: Token | TokenFacts) -> None:
        super().__init__("This link has expired.")
        self.token = token


class TokenUsed(DomainError):
    """The token was already used."""

    def __init__(self, token: Token | TokenFacts) -> None:
        super().__init__("This link was already used.")
        self.token = token


@dataclass
class IssuedToken:
    """A token as it is sent: the link secret and, where offered, the short code.

    `values` is the row as it will be stored (hashes only); `row` is the ORM object once
    `issue` added it to a session.
    """

    values: dict[str, Any]
    link_token: str
    code: str | None
    row: Token | None = None

    @property
    def handle(self) -> str:
        """The public id that the code-entry form carries."""
        return str(self.values["handle"])

    @property
    def display_code(self) -> str | None:
        """The code as a person reads it."""
        return tokens.format_code(self.code) if self.code else None


def prepare(
    purpose: TokenPurpose,
    now: datetime,
    *,
    signature_id: int | None = None,
    user_id: int | None = None,
    with_code: bool = False,
    long_code: bool = False,
    max_age: int | None = None,
) -> IssuedToken:
    """Make a token's secrets and the row that stores their hashes, without touching the database.

    A short code is bound to the token's handle (the form that takes it carries the
    handle); a long code stands alone and is found by its hash.
    """
    nonce = tokens.new_nonce()
    handle = tokens.new_handle()
    code = None
    if with_code or long_code:
        code = tokens.new_code(tokens.LONG_CODE_LENGTH if long_code else tokens.CODE_LENGTH)
    if long_code and purpose != LONG_CODE_PURPOSE:
        raise ValueError(f"{purpose} tokens take no standalone code")
    code_scope = "standalone" if long_code else handle
    lifetime = max_age if max_age is not None else current_app.config["TOKEN_MAX_AGE"]
    values: dict[str, Any] = {
        "purpose": purpose,
        "nonce_hash": tokens.hash_nonce(nonce),
        "handle": handle,
        "code_hash": tokens.hash_code(code_scope, code) if code else None,
        "code_attempts": 0,
        "signature_id": signature_id,
        "user_id": user_id,
        "created_at": now,
        "expires_at": now + timedelta(seconds=lifetime),
    }
    return IssuedToken(values=values, link_token=tokens.sign_nonce(purpose, nonce), code=code)


_INSERT = FastStatement(insert(Token.__table__))
#: the columns `prepare` gives a token
COLUMNS = (
    "purpose",
    "nonce_hash",
    "handle",
    "code_hash",
    "code_attempts",
    "signature_id",
    "user_id",
    "created_at",
    "expires_at",
)


def record(session: Writes, issued: IssuedToken) -> None:
    """Store a prepared token with one INSERT (no ORM object, no flush)."""
    _INSERT(session.connection(), issued.values)


def issue(session: Session, purpose: TokenPurpose, now: datetime, **options: Any) -> IssuedToken:
    """Create a token for one purpose and one signature or user, as an ORM row in `session`.

    `options` are those of `prepare`.
    """
    issued = prepare(purpose, now, **options)
    issued.row = Token(**issued.values)
    session.add(issued.row)
    session.flush()
    return issued


def find_by_link(session: Session, purpose: TokenPurpose, link_token: str) -> Token:
    """The live token behind a link, locked for update; raises when it cannot be used."""
    nonce = tokens.unsign_nonce(purpose, link_token)
    if nonce is None:
        raise TokenInvalid("This link is not valid. It may have been cut short or changed.")
    row = session.scalars(
        select(Token)
        .where(Token.nonce_hash == tokens.hash_nonce(nonce), Token.purpose == purpose)
        .with_for_update()
    ).first()
    if row is None:
        raise TokenInvalid("This link is not valid, or it is too old to be used.")
    return row


def find_by_long_code(session: Session, purpose: TokenPurpose, typed: str) -> Token | None:
    """The token a standalone (long) code belongs to, if any."""
    code = tokens.normalize_code(typed or "", tokens.LONG_CODE_LENGTH)
    if code is None or purpose != LONG_CODE_PURPOSE:
        return None
    return session.scalars(
        select(Token)
        .where(Token.purpose == purpose, Token.code_hash == tokens.hash_code("standalone", code))
        .with_for_update()
    ).first()


def check_usable(row: Token | TokenFacts, now: datetime) -> None:
    """Raise if the token was used or is expired."""
    if row.used_at is not None:
        raise TokenUsed(row)
    if row.is_expired(now):
        raise TokenExpired(row)
