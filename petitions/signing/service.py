"""Signing a letter: sign, confirm by link or code, resend, withdraw.

Who signed is never revealed by what this returns: signing with a new, pending or already
counted address runs the same statements and gives the same kind of answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from petitions import hashing, tokens
from petitions.mail import queue_email
from petitions.models import (
    Affiliation,
    Display,
    Petition,
    PetitionState,
    Signature,
    SignatureState,
    Token,
    TokenPurpose,
)
from petitions.models.errors import DomainError
from petitions.signing import pending_mail, subscribers
from petitions.tallies import counts

WITHDRAW_MAX_AGE = 10 * 365 * 24 * 3600
#: a time no token was issued at, for statements that must run and match nothing
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)
CONFIRM = TokenPurpose.CONFIRM_SIGNATURE
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
    """The signature was confirmed before (told only to whoever holds its link or code)."""

    def __init__(self, petition: Petition) -> None:
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


@dataclass
class Confirmed:
    """A signature just confirmed, with the means to withdraw it, shown once."""

    petition: Petition
    withdraw_url: str
    withdraw_code: str
    #: the details were given with another sign form, so only the count was kept
    details_dropped: bool = False


def confirm_url(link_token: str) -> str:
    """The emailed link that opens the confirmation page (built from PUBLIC_URL only)."""
    return f"{current_app.config['PUBLIC_URL']}/c/{link_token}"


def withdraw_url(link_token: str) -> str:
    """The link that opens the withdrawal page."""
    return f"{current_app.config['PUBLIC_URL']}/w/{link_token}"


def employer_for(petition: Petition, address: str) -> int | None:
    """The listed employer whose domain (or a subdomain of it) the address is at."""
    domain = address.rpartition("@")[2].casefold()
    for employer in petition.domains:
        if domain == employer.domain or domain.endswith("." + employer.domain):
            return employer.id
    return None


def check_allowed(petition: Petition, email: str) -> int | None:
    """The employer the address counts for; raises when the letter refuses it."""
    if petition.state != PetitionState.OPEN:
        raise SigningClosed("This letter is closed and no longer takes signatures.")
    employer_id = employer_for(petition, email)
    if employer_id is None and not petition.allow_supporters:
        companies = ", ".join(f"@{d.domain}" for d in petition.domains) or "the listed companies"
        raise DomainNotAllowed(f"This letter takes signatures only from addresses at {companies}.")
    return employer_id


def sign(session: Session, petition: Petition, request: SignRequest, now: datetime) -> str:
    """Record a pending signature and queue its confirmation email; the code form's handle.

    An address that already counts gets a decoy: a handle whose code nobody knows, and a short
    note in its own mailbox instead of a link. The statements are the same either way.
    """
    signature_id, state = record_pending(session, petition, request, now)
    pending = state == SignatureState.PENDING
    issued = tokens.issue(
        session, CONFIRM, now, signature_id=signature_id if pending else None, with_code=True
    )
    if pending:
        _queue_confirmation(session, issued, request.email)
    else:
        queue_email(session, request.email, "already_signed")
    session.flush()
    return issued.handle


def record_pending(
    session: Session, petition: Petition, request: SignRequest, now: datetime
) -> tuple[int, SignatureState]:
    """Add (or refresh) the pending signature of an address; its id and state.

    Both ways of proving an address start here, so they share "one signature per person".
    """
    employer_id = check_allowed(petition, request.email)
    canonical = hashing.canonical_address(request.email)
    shown = request.display != Display.COUNTED
    details = {
        "email": request.email,
        "email_domain": canonical.rpartition("@")[2],
        "employer_id": employer_id,
        "affiliation": request.affiliation,
        "display": request.display,
        # Only what the chosen display shows is kept: counted-only keeps no name or role.
        "name": request.name if request.display.keeps_name else None,
        "job_title": (request.job_title or None) if shown else None,
        "team": (request.team or None) if shown else None,
        # Sealed here, opened only by the worker that moves it to the subscriber store.
        "updates_sealed": (
            subscribers.seal_for_signature(petition.id, request.updates_email)
            if request.updates_email
            else None
        ),
        "details_at": now,
    }
    key = {"petition_id": petition.id, "address_hash": hashing.hash_address(canonical)}
    # One signature per address and letter: the unique constraint decides, races included.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Signature)
        .values(state=SignatureState.PENDING, created_at=now, **key, **details)
        .on_conflict_do_nothing(index_elements=["petition_id", "address_hash"])
    )
    signature_id, state = session.execute(
        select(Signature.id, Signature.state).filter_by(**key).with_for_update()
    ).one()
    # A pending signature takes the newest details; a confirmed one is left as it is.
    session.execute(
        update(Signature)
        .where(Signature.id == signature_id, Signature.state == SignatureState.PENDING)
        .values(**details)
        .execution_options(synchronize_session=False)
    )
    return signature_id, state


def _queue_confirmation(session: Session, issued: tokens.IssuedToken, email: str) -> None:
    """Queue the discreet email with a confirmation's link and code."""
    queue_email(
        session,
        email,
        "confirm_signature",
        url=confirm_url(issued.link_token),
        code=issued.display_code,
        max_age_days=current_app.config["TOKEN_MAX_AGE"] // 86400,
    )


def _confirm(session: Session, token: Token, now: datetime) -> Confirmed:
    """Count the pending signature behind a usable confirmation token."""
    signature = session.get(Signature, token.signature_id, with_for_update=True)
    if signature is None:
        raise tokens.TokenInvalid("This signature no longer exists.")
    petition = session.get(Petition, signature.petition_id)
    assert petition is not None
    if signature.is_confirmed:
        raise AlreadyConfirmed(petition)
    token.check_usable(now)
    if petition.state != PetitionState.OPEN:
        raise SigningClosed("This letter closed before the signature was confirmed.")
    if signature.details_at != token.created_at:
        # The details came with a later sign form than this token's, perhaps typed by someone
        # else: confirming must not publish a name or mail updates that this signer never gave.
        signature.keep_only_the_count()
        return replace(count_signature(session, signature, petition, now), details_dropped=True)
    return count_signature(session, signature, petition, now)


def count_signature(
    session: Session, signature: Signature, petition: Petition, now: datetime
) -> Confirmed:
    """Confirm a pending signature whose address was just proven, by code, link or message."""
    signature.confirm(now)
    # Every confirmation link and code of this signature is spent now.
    session.execute(
        update(Token)
        .where(
            Token.signature_id == signature.id, Token.purpose == CONFIRM, Token.used_at.is_(None)
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    counts.add(session, petition.id, counts.buckets_for(signature), +1)
    issued = tokens.issue(
        session, WITHDRAW, now, signature_id=signature.id, long_code=True, max_age=WITHDRAW_MAX_AGE
    )
    if signature.updates_sealed is not None:
        # The worker sends the "signed" email when it moves the address to the subscriber
        # store, in a batch, so that no mail or row is stamped with this confirmation's time.
        signature.withdrawal_sealed = subscribers.seal_withdrawal(
            petition.id, withdraw_url(issued.link_token), issued.display_code or ""
        )
    session.flush()
    return Confirmed(petition, withdraw_url(issued.link_token), issued.display_code or "")


def check_link(session: Session, link_token: str, now: datetime) -> Token:
    """The token behind a confirmation link, without using it (the GET landing page)."""
    token = tokens.find_by_link(session, CONFIRM, link_token)
    if token.signature_id is None:
        raise tokens.TokenInvalid("This link is not valid, or it is too old to be used.")
    try:
        token.check_usable(now)
    except tokens.TokenUsed:
        signature = session.get(Signature, token.signature_id)
        if signature is not None and signature.is_confirmed:
            petition = session.get(Petition, signature.petition_id)
            assert petition is not None
            raise AlreadyConfirmed(petition) from None
        raise
    return token


def confirm_by_link(session: Session, link_token: str, now: datetime) -> Confirmed:
    """Confirm through the emailed link (POST only: scanners fetch links with GET)."""
    token = tokens.find_by_link(session, CONFIRM, link_token)
    if token.signature_id is None:
        raise tokens.TokenInvalid("This link is not valid, or it is too old to be used.")
    return _confirm(session, token, now)


def confirm_by_code(session: Session, handle: str, typed_code: str, now: datetime) -> Confirmed:
    """Confirm with the code typed into the page the signer already has open.

    Every try is counted with one conditional UPDATE before the code is compared, so parallel
    guesses get no more tries than the limit. Until the right code is typed, the answer is the
    same whatever the signature behind the handle became. The caller commits even when this
    raises CodeInvalid, so the attempt is remembered.
    """
    token = tokens.find_by_handle(session, CONFIRM, handle)
    code = hashing.normalize_code(typed_code or "")
    if token is None or token.code_hash is None:
        raise CodeInvalid("That code is not right. Check the email and try again.")
    limit = current_app.config["CODE_MAX_ATTEMPTS"]
    attempts = session.execute(
        update(Token)
        .where(Token.id == token.id, Token.code_attempts < limit)
        .values(code_attempts=Token.code_attempts + 1)
        .returning(Token.code_attempts)
        .execution_options(synchronize_session=False)
    ).scalar()
    if attempts is None:
        raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
    if code is None or not hashing.codes_match(token.code_hash, token.handle, code):
        left = limit - attempts
        if left <= 0:
            raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
        raise CodeInvalid(f"That code is not right. {left} more {'try' if left == 1 else 'tries'}.")
    if token.signature_id is None:  # a decoy's code is never sent, so this cannot happen
        raise CodeInvalid("That code is not right. Check the email and try again.")
    return _confirm(session, token, now)


def resend(session: Session, handle: str | None, now: datetime) -> str:
    """Mail a fresh link and code for the pending signature behind a handle; the new handle.

    Whatever the handle names (nothing, a decoy, a counted or withdrawn signature), the same
    statements run and a new handle comes back that behaves like a real one.
    """
    token = tokens.find_by_handle(session, CONFIRM, handle)
    # 0 names no signature: the same SELECT and INSERT run, and find nothing to mail.
    wanted = token.signature_id if token is not None and token.signature_id is not None else 0
    pending = (
        Signature.id == wanted,
        Signature.state == SignatureState.PENDING,
        Signature.email.is_not(None),
    )
    live = session.scalar(select(Signature.id).where(*pending))
    issued = tokens.issue(session, CONFIRM, now, signature_id=live, with_code=True)
    session.flush()
    # The fresh token confirms the details as they are only if the old one could.
    session.execute(
        update(Signature)
        .where(*pending, Signature.details_at == (token.created_at if token else _NEVER))
        .values(details_at=now)
        .execution_options(synchronize_session=False)
    )
    # Added only when the signature is pending: the same INSERT runs for a decoy.
    context = {
        "url": confirm_url(issued.link_token),
        "code": issued.display_code,
        "max_age_days": current_app.config["TOKEN_MAX_AGE"] // 86400,
    }
    pending_mail.queue_if_pending(session, pending, "confirm_signature", context, now)
    return issued.handle


def withdraw(session: Session, token: Token, now: datetime) -> Petition:
    """Delete a confirmed signature and lower every count it was in."""
    token.check_usable(now)
    signature = session.get(Signature, token.signature_id, with_for_update=True)
    if signature is None:
        raise tokens.TokenInvalid("This signature was already withdrawn.")
    signature.withdraw()
    petition = session.get(Petition, signature.petition_id)
    assert petition is not None
    counts.add(session, petition.id, counts.buckets_for(signature), -1)
    # Its confirmation tokens live on as decoys, so that a code form someone kept open answers
    # as it did before; its withdrawal tokens go.
    session.execute(
        update(Token)
        .where(Token.signature_id == signature.id, Token.purpose == CONFIRM)
        .values(signature_id=None)
        .execution_options(synchronize_session=False)
    )
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
