"""Signing a letter: sign, confirm by link or code, resend, withdraw.

Who signed is never revealed by what this returns: signing with a new, pending or
already confirmed address gives the caller the same kind of answer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Integer, Table, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions import hashing as tokens
from petitions import tokens as token_service
from petitions.db import FastRow, FastStatement, Writes
from petitions.mail import OUTBOX_COLUMNS, outbox_row, queue_email, queue_row
from petitions.microcache import TimedStore
from petitions.models import (
    Affiliation,
    Display,
    EmployerDomain,
    OutboxMessage,
    Petition,
    PetitionState,
    Signature,
    SignatureState,
    Token,
    TokenPurpose,
)
from petitions.models.errors import DomainError
from petitions.tallies import counts

WITHDRAW_MAX_AGE = 10 * 365 * 24 * 3600
WITHDRAW = TokenPurpose.WITHDRAW_SIGNATURE


class SigningClosed(DomainError):
    """The letter does not take signatures."""


class DomainNotAllowed(DomainError):
    """Only listed employer domains may sign this letter."""


class CodeInvalid(DomainError):
    """The typed code is wrong, or names no pending signature."""


class CodeLocked(DomainError):
    """Too many wrong codes: this code is dead; a fresh email is needed."""


class AlreadyConfirmed(DomainError):
    """The signature was confirmed before."""

    def __init__(self, petition: LetterRef) -> None:
        super().__init__("This signature is already confirmed.")
        self.petition = petition


@dataclass
class SignRequest:
    """What the sign form collects."""

    email: str
    name: str
    job_title: str | None = None
    team: str | None = None
    affiliation: Affiliation = Affiliation.CURRENT
    display: Display = Display.COUNTED
    updates_email: str | None = None


@dataclass(frozen=True)
class LetterRef:
    """What the pages after signing show of a letter: where it is and what it is called."""

    id: int
    slug: str
    title: str
    addressed_to: str


@dataclass(frozen=True)
class LetterRules:
    """What signing needs to know of a published letter, read in one statement."""

    letter: LetterRef
    is_open: bool
    allow_supporters: bool
    #: (domain, employer id) of each listed employer
    employers: tuple[tuple[str, int], ...]

    def employer_for(self, email_domain: str) -> int | None:
        """The listed employer whose domain (or a subdomain of it) the address is at."""
        for domain, employer_id in self.employers:
            if email_domain == domain or email_domain.endswith("." + domain):
                return employer_id
        return None


@dataclass
class Confirmed:
    """A signature just confirmed, with the means to withdraw it, shown once."""

    petition: LetterRef
    withdraw_url: str
    withdraw_code: str


def confirm_url(link_token: str) -> str:
    """The emailed link that opens the confirmation page (built from PUBLIC_URL only)."""
    return f"{current_app.config['PUBLIC_URL']}/c/{link_token}"


def withdraw_url(link_token: str) -> str:
    """The link that opens the withdrawal page."""
    return f"{current_app.config['PUBLIC_URL']}/w/{link_token}"


# The statements of the hot paths are built once: constructing them is most of what a
# SQLAlchemy statement costs. They run on the session's connection, as Core.
_SIGNATURES: Table = Signature.__table__  # type: ignore[assignment]
_TOKENS: Table = Token.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]

_RULES = (
    select(
        Petition.id,
        Petition.title,
        Petition.addressed_to,
        Petition.state,
        Petition.hidden_at,
        Petition.allow_supporters,
        EmployerDomain.domain,
        EmployerDomain.id.label("employer_id"),
    )
    .outerjoin(EmployerDomain, EmployerDomain.petition_id == Petition.id)
    .where(Petition.slug == bindparam("slug"))
    .order_by(EmployerDomain.domain)
)

#: a new pending signature, run on the driver's cursor (a duplicate address raises)
_NEW_SIGNATURE = FastStatement(insert(_SIGNATURES).returning(_SIGNATURES.c.id))
#: the signature an address already has on a letter
_EXISTING = (
    select(_SIGNATURES.c.id, _SIGNATURES.c.state)
    .where(
        _SIGNATURES.c.petition_id == bindparam("petition_id"),
        _SIGNATURES.c.address_hash == bindparam("address_hash"),
    )
    .with_for_update()
)

_CONFIRM = FastStatement(
    update(_SIGNATURES)
    .where(
        _SIGNATURES.c.id == bindparam("which"),
        _SIGNATURES.c.state == SignatureState.PENDING,
    )
    .values(state=SignatureState.CONFIRMED, confirmed_at=bindparam("now"), email=None)
)

_SPEND_CONFIRM_TOKENS = FastStatement(
    update(_TOKENS)
    .where(
        _TOKENS.c.signature_id == bindparam("which"),
        _TOKENS.c.purpose == TokenPurpose.CONFIRM_SIGNATURE,
        _TOKENS.c.used_at.is_(None),
    )
    .values(used_at=bindparam("now"))
)


def rules_for(session: Writes, slug: str) -> LetterRules | None:
    """The signing rules of the public letter at `slug`; None for drafts, hidden and unknown."""
    rows = session.connection().execute(_RULES, {"slug": slug}).all()
    if not rows or rows[0].state == PetitionState.DRAFT or rows[0].hidden_at is not None:
        return None
    first = rows[0]
    return LetterRules(
        letter=LetterRef(first.id, slug, first.title, first.addressed_to),
        is_open=first.state == PetitionState.OPEN,
        allow_supporters=first.allow_supporters,
        employers=tuple((row.domain, row.employer_id) for row in rows if row.domain),
    )


#: where a process keeps a letter's signing rules among its shared pages
RULES_KEY = "signing rules"


def kept_rules(
    store: TimedStore | None, slug: str, load: Callable[[], LetterRules | None]
) -> LetterRules | None:
    """The letter's signing rules from `store` (a process's shared pages, kept for
    READ_CACHE_SECONDS and forgotten after any write the process serves), read with `load`
    and kept when not there. Another process may take signatures for that long after a
    letter closed; confirming checks again, so none of them can count."""
    key = (RULES_KEY, slug)
    rules: LetterRules | None = store.get(key) if store is not None else None
    if rules is None:
        rules = load()
        if rules is not None and store is not None:
            store.put(key, rules, 512)
    return rules


def check_allowed(rules: LetterRules, email: str) -> None:
    """Refuse before anything is stored when the letter is closed or the domain is not listed."""
    if not rules.is_open:
        raise SigningClosed("This letter is closed and no longer takes signatures.")
    domain = email.rpartition("@")[2].casefold()
    if rules.employer_for(domain) is None and not rules.allow_supporters:
        companies = ", ".join(f"@{d}" for d, _ in rules.employers) or "the listed companies"
        raise DomainNotAllowed(f"This letter takes signatures only from addresses at {companies}.")


def sign(session: Writes, rules: LetterRules, request: SignRequest, now: datetime) -> str:
    """Record a pending signature and queue the confirmation email.

    Returns the handle for the code-entry form. When the address has already signed,
    a decoy handle is returned and the mailbox owner gets a short note instead, so the
    answer looks the same. Everything but the writes (hashing, secrets) is done before the
    first statement, so on SQLite the write lock is held only for a few inserts.
    """
    check_allowed(rules, request.email)
    canonical = tokens.canonical_address(request.email)
    domain = canonical.rpartition("@")[2]
    fields = {
        "email": request.email,
        "email_domain": domain,
        "employer_id": rules.employer_for(domain),
        "affiliation": request.affiliation,
        "display": request.display,
        # Only what the chosen display shows is kept: counted-only keeps no name or role.
        "name": request.name if request.display.keeps_name else None,
        "job_title": (request.job_title or None) if request.display != Display.COUNTED else None,
        "team": (request.team or None) if request.display != Display.COUNTED else None,
        "updates_email": request.updates_email or None,
    }
    address_hash = tokens.hash_address(canonical)
    issued = token_service.prepare(TokenPurpose.CONFIRM_SIGNATURE, now, with_code=True)
    petition_id = rules.letter.id
    # A second signature from one address is refused by the unique constraint, races included.
    params = {
        "petition_id": petition_id,
        "state": SignatureState.PENDING,
        "address_hash": address_hash,
        "created_at": now,
        "confirmed_at": None,
        **fields,
    }
    mail = _confirmation_mail(issued, request.email)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One statement, one round trip, for a new address and for one that signed before
        # alike, so the time of the answer does not tell them apart.
        already = outbox_row(request.email, "already_signed")
        found = _SIGN_AT_ONCE(connection, _at_once_params(params, issued.values, mail, already))
        if found == _ALREADY_CONFIRMED:
            return tokens.new_handle()
        if found is not None:
            return issued.handle
        # A racing transaction holds the address (or just removed it): take the long way.
        session.rollback()
        connection = session.connection()
    try:
        signature_id = _NEW_SIGNATURE(connection, params)
    except IntegrityError:
        # The address is on this letter already (perhaps from a racing request). SQLite undid
        # only the failed INSERT and the writer lock is still held, so this path queues no
        # more than a new address does; PostgreSQL must start the transaction again.
        if connection.dialect.name != "sqlite":
            session.rollback()
            connection = session.connection()
        existing = connection.execute(
            _EXISTING, {"petition_id": petition_id, "address_hash": address_hash}
        ).first()
        if existing is None:  # the other signature was withdrawn, or the letter deleted
            raise SigningClosed("This letter no longer takes signatures.") from None
        if existing.state == SignatureState.CONFIRMED:
            queue_email(session, request.email, "already_signed")
            return tokens.new_handle()
        connection.execute(_REFRESH, {"which": existing.id, **fields})
        signature_id = existing.id
    issued.values["signature_id"] = signature_id
    token_service.record(session, issued)
    queue_row(session, mail)
    return issued.handle


def _confirmation_mail(issued: token_service.IssuedToken, email: str) -> dict[str, Any]:
    """The outbox row of the discreet email with a prepared confirmation's link and code."""
    return outbox_row(
        email,
        "confirm_signature",
        url=confirm_url(issued.link_token),
        code=issued.display_code,
        max_age_days=current_app.config["TOKEN_MAX_AGE"] // 86400,
    )


def _mail_confirmation(session: Writes, issued: token_service.IssuedToken, email: str) -> str:
    """Store a prepared confirmation token and queue its email; the handle for the code-entry
    form."""
    token_service.record(session, issued)
    queue_row(session, _confirmation_mail(issued, email))
    return issued.handle


#: the columns a second signature from the same address may change (its pending details)
_REFRESHED_COLUMNS = (
    "email",
    "email_domain",
    "employer_id",
    "affiliation",
    "display",
    "name",
    "job_title",
    "team",
    "updates_email",
)
#: what `sign` gives a new signature (with its token and its email)
_SIGNATURE_COLUMNS = (
    "petition_id",
    "state",
    "address_hash",
    "created_at",
    "confirmed_at",
    *_REFRESHED_COLUMNS,
)
_TOKEN_COLUMNS = tuple(column for column in token_service.COLUMNS if column != "signature_id")


_REFRESH = (
    update(_SIGNATURES)
    .where(_SIGNATURES.c.id == bindparam("which"))
    .values({name: bindparam(name) for name in _REFRESHED_COLUMNS})
)
#: what `_SIGN_AT_ONCE` gives back for an address whose signature is already confirmed
_ALREADY_CONFIRMED = -1


def _casts(table: Table, prefix: str, columns: tuple[str, ...]) -> list[str]:
    """`CAST(:<prefix><column> AS <the column's type>)` for each column. Lengths are left out:
    a cast to VARCHAR(n) would cut a longer value short, where storing it fails."""
    dialect = postgresql.dialect()
    types = [
        re.sub(r"[(][0-9]+[)]", "", table.c[name].type.compile(dialect=dialect)) for name in columns
    ]
    return [f"CAST(:{prefix}{name} AS {type_})" for name, type_ in zip(columns, types, strict=True)]


def _typed(table: Table, prefix: str, columns: tuple[str, ...]) -> str:
    """`_casts`, comma-separated."""
    return ", ".join(_casts(table, prefix, columns))


def _sign_at_once() -> FastStatement:
    """PostgreSQL: a signature as one statement (INSERTs and an UPDATE in CTEs), whatever the
    address's history, as `sign` does it in several: a new address gets a pending signature,
    its token and its email; a pending one gets its details refreshed, a new token and a new
    email; a confirmed one gets the short "already signed" note. It gives back the signature's
    id, `_ALREADY_CONFIRMED`, or NULL when a racing transaction holds the address."""
    refreshed = ", ".join(
        f"{name} = {value}"
        for name, value in zip(
            _REFRESHED_COLUMNS, _casts(_SIGNATURES, "s_", _REFRESHED_COLUMNS), strict=True
        )
    )
    sql = f"""
WITH new_signature AS (
    INSERT INTO signatures ({", ".join(_SIGNATURE_COLUMNS)})
    VALUES ({_typed(_SIGNATURES, "s_", _SIGNATURE_COLUMNS)})
    ON CONFLICT (petition_id, address_hash) DO NOTHING
    RETURNING id
), existing AS (
    SELECT id, state FROM signatures
    WHERE petition_id = CAST(:s_petition_id AS INTEGER)
        AND address_hash = CAST(:s_address_hash AS VARCHAR)
        AND NOT EXISTS (SELECT 1 FROM new_signature)
    FOR UPDATE
), refreshed AS (
    UPDATE signatures SET {refreshed}
    WHERE id IN (SELECT id FROM existing WHERE state = :pending)
    RETURNING id
), target AS (
    SELECT id FROM new_signature UNION ALL SELECT id FROM refreshed
), new_token AS (
    INSERT INTO tokens ({", ".join(_TOKEN_COLUMNS)}, signature_id)
    SELECT {_typed(_TOKENS, "t_", _TOKEN_COLUMNS)}, id FROM target
), confirmation_mail AS (
    INSERT INTO outbox ({", ".join(OUTBOX_COLUMNS)})
    SELECT {_typed(_OUTBOX, "m_", OUTBOX_COLUMNS)} FROM target
), already_signed_mail AS (
    INSERT INTO outbox ({", ".join(OUTBOX_COLUMNS)})
    SELECT {_typed(_OUTBOX, "a_", OUTBOX_COLUMNS)} FROM existing WHERE state = :confirmed
)
SELECT COALESCE(
    (SELECT id FROM target),
    (SELECT CAST(:already AS INTEGER) FROM existing WHERE state = :confirmed)
) AS id"""  # noqa: S608 - only our own column, type and placeholder names go in
    return FastStatement(text(sql).columns(id=Integer))


_SIGN_AT_ONCE = _sign_at_once()


def _at_once_params(
    signature: dict[str, Any],
    token: dict[str, Any],
    mail: dict[str, Any],
    already: dict[str, Any],
) -> dict[str, Any]:
    """`_SIGN_AT_ONCE`'s parameters, as the driver takes them (its SQL is plain text)."""
    params: dict[str, Any] = {
        "pending": SignatureState.PENDING.value,
        "confirmed": SignatureState.CONFIRMED.value,
        "already": _ALREADY_CONFIRMED,
    }
    params.update((f"s_{name}", signature[name]) for name in _SIGNATURE_COLUMNS)
    params.update((f"t_{name}", token[name]) for name in _TOKEN_COLUMNS)
    for prefix, row in (("m_", mail), ("a_", already)):
        params.update((f"{prefix}{name}", row[name]) for name in OUTBOX_COLUMNS)
        params[f"{prefix}context"] = json.dumps(row["context"])
    return params


@dataclass(frozen=True)
class _Pending:
    """A confirmation token with its signature and letter, as read before any lock."""

    token: token_service.TokenFacts
    signature_id: int | None
    signature_state: str | None
    employer_id: int | None
    affiliation: str
    display: str
    updates_email: str | None
    letter: LetterRef | None
    letter_open: bool


_PENDING = (
    select(
        Token.id,
        Token.purpose,
        Token.handle,
        Token.code_hash,
        Token.code_attempts,
        Token.used_at,
        Token.expires_at,
        Token.signature_id,
        Signature.state,
        Signature.employer_id,
        Signature.affiliation,
        Signature.display,
        Signature.updates_email,
        Petition.id.label("petition_id"),
        Petition.slug,
        Petition.title,
        Petition.addressed_to,
        Petition.state.label("petition_state"),
    )
    .outerjoin(Signature, Signature.id == Token.signature_id)
    .outerjoin(Petition, Petition.id == Signature.petition_id)
    .where(Token.purpose == TokenPurpose.CONFIRM_SIGNATURE)
)
_PENDING_BY = {
    "nonce_hash": FastRow(_PENDING.where(Token.nonce_hash == bindparam("key"))),
    "handle": FastRow(_PENDING.where(Token.handle == bindparam("key"))),
}


def _find_pending(session: Writes, by: str, key: str) -> _Pending | None:
    """A confirmation token by its nonce hash or handle, with its signature and letter."""
    row = _PENDING_BY[by](session.connection(), {"key": key})
    if row is None:
        return None
    token = token_service.TokenFacts(
        id=row.id,
        purpose=TokenPurpose(row.purpose),
        handle=row.handle,
        code_hash=row.code_hash,
        code_attempts=row.code_attempts,
        used_at=row.used_at,
        expires_at=row.expires_at,
        signature_id=row.signature_id,
    )
    letter = None
    if row.petition_id is not None:
        letter = LetterRef(row.petition_id, row.slug or "", row.title, row.addressed_to)
    return _Pending(
        token=token,
        signature_id=row.signature_id if row.state is not None else None,
        signature_state=row.state,
        employer_id=row.employer_id,
        affiliation=row.affiliation or "",
        display=row.display or "",
        updates_email=row.updates_email,
        letter=letter,
        letter_open=row.petition_state == PetitionState.OPEN,
    )


def _check_pending(found: _Pending, now: datetime) -> LetterRef:
    """Raise unless the token can confirm its signature now; the signature's letter."""
    if found.signature_id is None or found.letter is None:
        raise token_service.TokenInvalid("This signature no longer exists.")
    if found.signature_state == SignatureState.CONFIRMED:
        raise AlreadyConfirmed(found.letter)
    token_service.check_usable(found.token, now)
    if not found.letter_open:
        raise SigningClosed("This letter closed before the signature was confirmed.")
    return found.letter


def record_confirmation(
    session: Writes, found: _Pending, letter: LetterRef, now: datetime
) -> Confirmed:
    """The writes of a confirmation that `_check_pending` allowed, each conditional, so a
    racing second click changes nothing. On PostgreSQL, unless the signer asked for updates,
    they are one statement, which a caller may run outside a transaction (`quicksign`)."""
    connection = session.connection()
    buckets = counts.bucket_names(found.employer_id, found.affiliation, found.display)
    issued = token_service.prepare(
        TokenPurpose.WITHDRAW_SIGNATURE,
        now,
        signature_id=found.signature_id,
        long_code=True,
        max_age=WITHDRAW_MAX_AGE,
    )
    if connection.dialect.name == "postgresql" and not found.updates_email:
        # One statement, one round trip; it changes nothing if another click came first.
        params = _confirm_at_once_params(found, letter, buckets, issued, now)
        if _confirm_at_once(len(buckets))(connection, params) is None:
            raise AlreadyConfirmed(letter)
    else:
        spent = {"which": found.signature_id, "now": now}
        if _CONFIRM(connection, spent) != 1:
            raise AlreadyConfirmed(letter)
        # Every confirmation link and code of this signature is spent now.
        _SPEND_CONFIRM_TOKENS(connection, spent)
        counts.add(session, letter.id, buckets, +1)
        token_service.record(session, issued)
    if found.updates_email:
        queue_email(
            session,
            found.updates_email,
            "signed",
            # the letter's MAIL_FIELDS, as the worker's templates read them
            petition={"id": letter.id, "title": letter.title, "addressed_to": letter.addressed_to},
            withdraw_url=withdraw_url(issued.link_token),
            withdraw_code=issued.display_code,
        )
    return Confirmed(
        petition=letter,
        withdraw_url=withdraw_url(issued.link_token),
        withdraw_code=issued.display_code or "",
    )


@functools.cache
def _confirm_at_once(buckets: int) -> FastStatement:
    """PostgreSQL: a confirmation's writes as one statement (UPDATEs and INSERTs in CTEs),
    each as conditional as its separate form: when the signature is no longer pending, none
    of them changes anything and no row comes back."""
    values = ", ".join(f"(CAST(:bucket_{number} AS VARCHAR))" for number in range(buckets))
    columns = ", ".join(_TOKEN_COLUMNS)
    token_values = _typed(_TOKENS, "t_", _TOKEN_COLUMNS)
    sql = f"""
WITH confirmed AS (
    UPDATE signatures SET state = :confirmed, confirmed_at = :now, email = NULL
    WHERE id = :which AND state = :pending
    RETURNING id
), spent AS (
    UPDATE tokens SET used_at = :now
    WHERE signature_id IN (SELECT id FROM confirmed) AND purpose = :purpose AND used_at IS NULL
), counted AS (
    INSERT INTO petition_counters (petition_id, bucket, shard, value)
    SELECT CAST(:petition_id AS INTEGER), bucket, CAST(:shard AS INTEGER), CAST(:delta AS BIGINT)
    FROM confirmed CROSS JOIN (VALUES {values}) AS new (bucket)
    ON CONFLICT (petition_id, bucket, shard)
    DO UPDATE SET value = petition_counters.value + excluded.value
), withdrawal AS (
    INSERT INTO tokens ({columns}, signature_id)
    SELECT {token_values}, id FROM confirmed
)
SELECT id FROM confirmed"""  # noqa: S608 - only our own column and placeholder names go in
    return FastStatement(text(sql).columns(id=Integer))


def _confirm_at_once_params(
    found: _Pending,
    letter: LetterRef,
    buckets: list[str],
    issued: token_service.IssuedToken,
    now: datetime,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "confirmed": SignatureState.CONFIRMED.value,
        "pending": SignatureState.PENDING.value,
        "purpose": TokenPurpose.CONFIRM_SIGNATURE.value,
        "which": found.signature_id,
        "now": now,
        **counts.adding(letter.id, buckets, +1),
    }
    params.update((f"t_{name}", issued.values[name]) for name in _TOKEN_COLUMNS)
    return params


def _raise_if_spent(session: Session, row: Token, now: datetime) -> None:
    try:
        token_service.check_usable(row, now)
    except token_service.TokenUsed:
        signature = session.get(Signature, row.signature_id) if row.signature_id else None
        if signature is not None and signature.is_confirmed:
            petition = session.get(Petition, signature.petition_id)
            assert petition is not None
            raise AlreadyConfirmed(
                LetterRef(petition.id, petition.slug or "", petition.title, petition.addressed_to)
            ) from None
        raise


def check_link(session: Session, link_token: str, now: datetime) -> Token:
    """The token behind a confirmation link, without using it (the GET landing page)."""
    row = token_service.find_by_link(session, TokenPurpose.CONFIRM_SIGNATURE, link_token)
    _raise_if_spent(session, row, now)
    return row


def pending_by_link(
    reads: Writes, link_token: str, now: datetime, *, end_reads: bool
) -> tuple[_Pending, LetterRef]:
    """The pending signature behind a confirmation link and its letter, if the link can
    confirm it now (raises otherwise). Read with `reads`, which takes no lock; with
    `end_reads` its transaction is ended here, so that on SQLite its connection goes back to
    the pool before any write."""
    nonce = tokens.unsign_nonce(TokenPurpose.CONFIRM_SIGNATURE, link_token)
    if nonce is None:
        raise token_service.TokenInvalid(
            "This link is not valid. It may have been cut short or changed."
        )
    found = _find_pending(reads, "nonce_hash", tokens.hash_nonce(nonce))
    if end_reads:
        reads.rollback()
    if found is None:
        raise token_service.TokenInvalid("This link is not valid, or it is too old to be used.")
    return found, _check_pending(found, now)


def confirm_by_link(reads: Writes, writes: Writes, link_token: str, now: datetime) -> Confirmed:
    """Confirm through the emailed link (POST only: scanners fetch links with GET).

    The token, signature and letter are read with `reads`, which takes no lock; `writes`
    then makes only conditional changes, so the write lock is held for a few statements.
    """
    found, letter = pending_by_link(reads, link_token, now, end_reads=reads is not writes)
    return record_confirmation(writes, found, letter, now)


def confirm_by_code(
    reads: Session, writes: Session, handle: str, typed_code: str, now: datetime
) -> Confirmed:
    """Confirm with the code typed into the page the signer already has open.

    Every try is counted with one atomic UPDATE before the code is compared, so parallel
    guesses cannot get more tries than the limit; at the limit the code dies. The caller
    commits even when this raises CodeInvalid, so the attempt is remembered.
    """
    found = _find_pending(reads, "handle", handle) if tokens.is_handle(handle) else None
    if reads is not writes:  # SQLite: end the read, so its connection goes back to the pool
        reads.rollback()
    code = tokens.normalize_code(typed_code or "")
    if found is None or found.token.code_hash is None:
        raise CodeInvalid("That code is not right. Check the email and try again.")
    letter = _check_pending(found, now)
    limit = current_app.config["CODE_MAX_ATTEMPTS"]
    attempts = writes.execute(
        update(Token)
        .where(Token.id == found.token.id, Token.code_attempts < limit)
        .values(code_attempts=Token.code_attempts + 1)
        .returning(Token.code_attempts)
        .execution_options(synchronize_session=False)
    ).scalar()
    if attempts is None:
        raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
    if code is None or not tokens.codes_match(found.token.code_hash, found.token.handle, code):
        left = limit - attempts
        if left <= 0:
            raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
        raise CodeInvalid(f"That code is not right. {left} more {'try' if left == 1 else 'tries'}.")
    return record_confirmation(writes, found, letter, now)


def resend(session: Session, row: Token, now: datetime) -> str | None:
    """Mail a fresh link and code for the pending signature behind an expired or dead token.

    Returns the new handle, or None when there is nothing left to confirm.
    """
    signature = session.get(Signature, row.signature_id) if row.signature_id else None
    if signature is None or signature.is_confirmed or signature.email is None:
        return None
    issued = token_service.prepare(
        TokenPurpose.CONFIRM_SIGNATURE, now, signature_id=signature.id, with_code=True
    )
    return _mail_confirmation(session, issued, signature.email)


def find_by_handle(session: Session, handle: str) -> Token | None:
    """The confirmation token a code-entry form names, if any."""
    if not tokens.is_handle(handle):
        return None
    return session.scalars(
        select(Token).where(Token.handle == handle, Token.purpose == TokenPurpose.CONFIRM_SIGNATURE)
    ).first()


def withdraw(session: Session, row: Token, now: datetime) -> Petition:
    """Delete a confirmed signature and lower every count it was in."""
    token_service.check_usable(row, now)
    signature = session.scalars(
        select(Signature).where(Signature.id == row.signature_id).with_for_update()
    ).first()
    if signature is None:
        raise token_service.TokenInvalid("This signature was already withdrawn.")
    petition = session.get(Petition, signature.petition_id)
    assert petition is not None
    if signature.state == SignatureState.CONFIRMED:
        counts.add(session, petition.id, counts.buckets_for(signature), -1)
    session.execute(delete(Token).where(Token.signature_id == signature.id))
    session.delete(signature)
    session.flush()
    return petition


def purge_expired(session: Session, now: datetime) -> tuple[int, int]:
    """Delete pending signatures whose every token has expired, and all expired tokens.

    Returns (signatures deleted, tokens deleted).
    """
    live = select(Token.signature_id).where(
        Token.signature_id.is_not(None), Token.expires_at > now, Token.used_at.is_(None)
    )
    doomed = session.execute(
        delete(Signature)
        .where(Signature.state == SignatureState.PENDING, Signature.id.not_in(live))
        .execution_options(synchronize_session=False)
    )
    expired = session.execute(
        delete(Token).where(Token.expires_at <= now).execution_options(synchronize_session=False)
    )
    return doomed.rowcount or 0, expired.rowcount or 0
