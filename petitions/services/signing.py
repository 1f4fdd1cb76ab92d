"""Signing a letter: sign, confirm by link or code, resend, withdraw.

Who signed is never revealed by what this returns: signing with a new, pending or
already confirmed address gives the caller the same kind of answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions import tokens
from petitions.mail import queue_email
from petitions.models import (
    Affiliation,
    Display,
    Petition,
    Signature,
    SignatureState,
    Token,
    TokenPurpose,
)
from petitions.models.errors import DomainError
from petitions.services import counts
from petitions.services import tokens as token_service

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
    signature: Signature
    withdraw_url: str
    withdraw_code: str


def confirm_url(link_token: str) -> str:
    """The emailed link that opens the confirmation page (built from PUBLIC_URL only)."""
    return f"{current_app.config['PUBLIC_URL']}/c/{link_token}"


def withdraw_url(link_token: str) -> str:
    """The link that opens the withdrawal page."""
    return f"{current_app.config['PUBLIC_URL']}/w/{link_token}"


def check_allowed(petition: Petition, email: str) -> None:
    """Refuse before anything is stored when the letter is closed or the domain is not listed."""
    if not petition.is_open:
        raise SigningClosed("This letter is closed and no longer takes signatures.")
    domain = email.rpartition("@")[2].casefold()
    if petition.company_for(domain) is None and not petition.allow_supporters:
        companies = ", ".join(f"@{d.domain}" for d in petition.domains) or "the listed companies"
        raise DomainNotAllowed(f"This letter takes signatures only from addresses at {companies}.")


def sign(session: Session, petition: Petition, request: SignRequest, now: datetime) -> str:
    """Record a pending signature and queue the confirmation email.

    Returns the handle for the code-entry form. When the address has already signed,
    a decoy handle is returned and the mailbox owner gets a short note instead, so the
    answer looks the same.
    """
    check_allowed(petition, request.email)
    canonical = tokens.canonical_address(request.email)
    domain = canonical.rpartition("@")[2]
    employer = petition.company_for(domain)
    fields = {
        "email": request.email,
        "email_domain": domain,
        "employer_id": employer.id if employer else None,
        "affiliation": request.affiliation,
        "display": request.display,
        # Only what the chosen display shows is kept: counted-only keeps no name or role.
        "name": request.name if request.display.keeps_name else None,
        "job_title": (request.job_title or None) if request.display != Display.COUNTED else None,
        "team": (request.team or None) if request.display != Display.COUNTED else None,
        "updates_email": request.updates_email or None,
    }
    address_hash = tokens.hash_address(canonical)
    signature = Signature(
        petition_id=petition.id, address_hash=address_hash, created_at=now, **fields
    )
    try:
        with session.begin_nested():
            session.add(signature)
            session.flush()
    except IntegrityError:
        # The address is on this letter already (perhaps from a racing request).
        signature = session.scalars(
            select(Signature)
            .where(Signature.petition_id == petition.id, Signature.address_hash == address_hash)
            .with_for_update()
        ).one()
        if signature.is_confirmed:
            queue_email(session, request.email, "already_signed")
            return tokens.new_handle()
        for key, value in fields.items():
            setattr(signature, key, value)
    return _mail_confirmation(session, signature.id, request.email, now)


def _mail_confirmation(session: Session, signature_id: int, email: str, now: datetime) -> str:
    """Issue a link and code for a pending signature and queue the discreet email; the handle."""
    issued = token_service.issue(
        session, TokenPurpose.CONFIRM_SIGNATURE, now, signature_id=signature_id, with_code=True
    )
    queue_email(
        session,
        email,
        "confirm_signature",
        url=confirm_url(issued.link_token),
        code=issued.display_code,
        max_age_days=current_app.config["TOKEN_MAX_AGE"] // 86400,
    )
    return issued.handle


def _confirm(session: Session, row: Token, now: datetime) -> Confirmed:
    signature = session.scalars(
        select(Signature).where(Signature.id == row.signature_id).with_for_update()
    ).first()
    if signature is None:
        raise token_service.TokenInvalid("This signature no longer exists.")
    petition = session.get(Petition, signature.petition_id)
    assert petition is not None
    if signature.is_confirmed:
        raise AlreadyConfirmed(petition)
    if not petition.is_open:
        raise SigningClosed("This letter closed before the signature was confirmed.")
    signature.confirm(now)
    # Every confirmation link and code of this signature is spent now.
    for other in session.scalars(
        select(Token).where(
            Token.signature_id == signature.id, Token.purpose == TokenPurpose.CONFIRM_SIGNATURE
        )
    ):
        other.used_at = now
    counts.add(session, petition.id, counts.buckets_for(signature), +1)
    issued = token_service.issue(
        session,
        TokenPurpose.WITHDRAW_SIGNATURE,
        now,
        signature_id=signature.id,
        long_code=True,
        max_age=WITHDRAW_MAX_AGE,
    )
    if signature.updates_email:
        queue_email(
            session,
            signature.updates_email,
            "signed",
            petition=petition,
            withdraw_url=withdraw_url(issued.link_token),
            withdraw_code=issued.display_code,
        )
    return Confirmed(
        petition=petition,
        signature=signature,
        withdraw_url=withdraw_url(issued.link_token),
        withdraw_code=issued.display_code or "",
    )


def _raise_if_spent(session: Session, row: Token, now: datetime) -> None:
    try:
        token_service.check_usable(row, now)
    except token_service.TokenUsed:
        signature = session.get(Signature, row.signature_id) if row.signature_id else None
        if signature is not None and signature.is_confirmed:
            petition = session.get(Petition, signature.petition_id)
            assert petition is not None
            raise AlreadyConfirmed(petition) from None
        raise


def check_link(session: Session, link_token: str, now: datetime) -> Token:
    """The token behind a confirmation link, without using it (the GET landing page)."""
    row = token_service.find_by_link(session, TokenPurpose.CONFIRM_SIGNATURE, link_token)
    _raise_if_spent(session, row, now)
    return row


def confirm_by_link(session: Session, link_token: str, now: datetime) -> Confirmed:
    """Confirm through the emailed link (POST only: scanners fetch links with GET)."""
    row = check_link(session, link_token, now)
    return _confirm(session, row, now)


def confirm_by_code(session: Session, handle: str, typed_code: str, now: datetime) -> Confirmed:
    """Confirm with the code typed into the page the signer already has open.

    A wrong code counts against the token; at the limit it dies. The caller commits
    even when this raises CodeInvalid, so the attempt is remembered.
    """
    row = None
    if tokens.is_handle(handle):
        row = session.scalars(
            select(Token)
            .where(Token.handle == handle, Token.purpose == TokenPurpose.CONFIRM_SIGNATURE)
            .with_for_update()
        ).first()
    code = tokens.normalize_code(typed_code or "")
    if row is None or row.code_hash is None:
        raise CodeInvalid("That code is not right. Check the email and try again.")
    _raise_if_spent(session, row, now)
    limit = current_app.config["CODE_MAX_ATTEMPTS"]
    if row.code_attempts >= limit:
        raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
    if code is None or not tokens.codes_match(row.code_hash, row.handle, code):
        row.code_attempts += 1
        left = limit - row.code_attempts
        if left <= 0:
            raise CodeLocked("Too many wrong codes. Ask for a fresh email to get a new one.")
        raise CodeInvalid(f"That code is not right. {left} more {'try' if left == 1 else 'tries'}.")
    return _confirm(session, row, now)


def resend(session: Session, row: Token, now: datetime) -> str | None:
    """Mail a fresh link and code for the pending signature behind an expired or dead token.

    Returns the new handle, or None when there is nothing left to confirm.
    """
    signature = session.get(Signature, row.signature_id) if row.signature_id else None
    if signature is None or signature.is_confirmed or signature.email is None:
        return None
    return _mail_confirmation(session, signature.id, signature.email, now)


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
