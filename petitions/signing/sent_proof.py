"""Proving a work address with a message the signer sends themself: no mail from us at work.

The page shows a one-time phrase; the signer sends it from their work account to their own
personal address and uploads the raw message. A valid DKIM signature from a listed employer
covering From, Date and the phrase then counts the signature exactly as a typed code does.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from petitions import hashing
from petitions.models import Petition, Signature, SignatureState
from petitions.models.proof import PhraseExpired, PhraseUsed, ProofPhrase
from petitions.signing import dkim
from petitions.signing import service as signing

#: how long a phrase may be used, from the moment the page showed it
PHRASE_LIFETIME = timedelta(hours=1)
#: 12 characters of base32: 60 bits, and a DKIM-signed message quoting them is needed anyway
PHRASE_LENGTH = 12
PHRASE_PREFIX = "Undersigned"
_CANDIDATE = re.compile(r"(?<![0-9A-Z])[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}(?![0-9A-Z])")


class PhraseMissing(dkim.ProofRefused):
    """The message does not quote the phrase this browser was given."""


def _check_takes_proofs(petition: Petition) -> None:
    """Raise unless the letter is open and names companies whose addresses can be proven."""
    if not petition.is_open:
        raise signing.SigningClosed("This letter is closed and no longer takes signatures.")
    if not petition.domains:
        raise dkim.ProofRefused(
            "This letter names no company, so there is no work address to prove. Use the sign form."
        )


def issue_phrase(session: Session, petition: Petition, now: datetime) -> tuple[str, str]:
    """A fresh phrase for one browser: (handle to keep in its session, phrase to show)."""
    _check_takes_proofs(petition)
    # Phrases an hour past their end are forgotten; until then they still explain themselves.
    session.execute(
        delete(ProofPhrase)
        .where(ProofPhrase.expires_at < now - PHRASE_LIFETIME)
        .execution_options(synchronize_session=False)
    )
    handle = hashing.new_handle()
    code = hashing.new_code(PHRASE_LENGTH)
    session.add(
        ProofPhrase(
            handle=handle,
            petition_id=petition.id,
            phrase_hash=hashing.hash_code(handle, code),
            created_at=now,
            expires_at=now + PHRASE_LIFETIME,
        )
    )
    session.flush()
    return handle, f"{PHRASE_PREFIX} {hashing.format_code(code)}"


def _phrase(session: Session, petition: Petition, handle: str | None) -> ProofPhrase:
    """The phrase this browser was given for this letter."""
    row = None
    if hashing.is_handle(handle):
        row = session.execute(
            select(ProofPhrase).filter_by(handle=handle, petition_id=petition.id)
        ).scalar_one_or_none()
    if row is None:
        raise PhraseExpired(
            "This page has no live phrase: each phrase works once, for an hour. Get a new one."
        )
    return row


def prove(
    session: Session,
    petition: Petition,
    handle: str | None,
    raw: bytes,
    details: signing.SignRequest,
    now: datetime,
) -> signing.Confirmed:
    """Count a signature for the sender of `raw`, a message quoting this browser's phrase."""
    phrase = _phrase(session, petition, handle)
    phrase.check_usable(now)
    _check_takes_proofs(petition)
    config = current_app.config
    message = dkim.check_message(
        raw,
        petition,
        now,
        dkim.txt_lookup(config["DKIM_NAMESERVER"], config["DKIM_DNS_TIMEOUT"]),
        PHRASE_LIFETIME + dkim.CLOCK_SKEW,
    )
    if message.sent_at < phrase.created_at - dkim.CLOCK_SKEW:
        raise dkim.ProofRefused(
            "This message was sent before this page showed its phrase. Send a new message."
        )
    quoted = {hashing.normalize_code(found, PHRASE_LENGTH) for found in _candidates(message.text)}
    if not any(
        code and hashing.codes_match(phrase.phrase_hash, phrase.handle, code) for code in quoted
    ):
        raise PhraseMissing(
            "This message does not contain the phrase shown on this page. Copy the phrase into"
            " a new message exactly as shown, send it, and upload that one."
        )
    # A phrase works once, even when two uploads race: the first UPDATE wins.
    spent = session.execute(
        update(ProofPhrase)
        .where(ProofPhrase.id == phrase.id, ProofPhrase.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        raise PhraseUsed("This phrase was already used. Each phrase works once: get a new one.")
    signature_id, state = signing.record_pending(
        session, petition, replace(details, email=message.address), now
    )
    if state == SignatureState.CONFIRMED:
        raise signing.AlreadyConfirmed(petition)
    signature = session.get(Signature, signature_id, with_for_update=True, populate_existing=True)
    assert signature is not None
    return signing.count_signature(session, signature, petition, now)


def _candidates(text: str) -> list[str]:
    """Everything in the text shaped like a phrase's code (case and spacing forgiven)."""
    squeezed = re.sub(r"\s*-\s*", "-", text.upper())
    return _CANDIDATE.findall(squeezed)
