"""The personal-address store: addresses for a letter's updates, sealed under UPDATES_KEY.

A request only seals (AES-GCM) and hashes; opening a sealed address needs the worker. A
signer's address waits on their signature, sealed, until the worker moves the batch of new
subscribers here in random order, each with a random id and the day only, and wipes it from
the signature: a copy of the database cannot tell which signature a subscriber came from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from datetime import date, datetime
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, has_request_context
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from petitions import hashing
from petitions.mail import queue_email
from petitions.models import Petition, Signature, SignatureState
from petitions.models.subscriber import Subscriber

NONCE_BYTES = 12
_random = secrets.SystemRandom()


class SealBroken(Exception):
    """A sealed value did not open: another key, another row, or tampered bytes."""


@lru_cache(maxsize=4)
def _keys(updates_key: str) -> tuple[bytes, bytes]:
    """The AES-256 key and the hash key, derived apart from UPDATES_KEY with HKDF-SHA256."""

    def derive(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            updates_key.encode()
        )

    return derive(b"undersigned/updates/aes-gcm"), derive(b"undersigned/updates/hash")


def _key(which: int) -> bytes:
    return _keys(current_app.config["UPDATES_KEY"])[which]


def seal(plain: str, bound_to: str) -> bytes:
    """`plain` encrypted with AES-GCM under a fresh nonce; it opens only with `bound_to`."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_key(0)).encrypt(nonce, plain.encode(), bound_to.encode())


def open_sealed(blob: bytes, bound_to: str) -> str:
    """What `seal` sealed (for the worker only); raises SealBroken on any mismatch."""
    if has_request_context():
        raise RuntimeError("sealed addresses are opened by the worker only, never in a request")
    try:
        plain = AESGCM(_key(0)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], bound_to.encode())
    except (InvalidTag, ValueError):
        raise SealBroken("this value does not open with UPDATES_KEY") from None
    return plain.decode()


def subscriber_hash(petition_id: int, address: str) -> str:
    """The keyed hash naming one address's subscription to one letter."""
    message = f"subscriber:{petition_id}:{hashing.canonical_address(address)}"
    return hmac.new(_key(1), message.encode(), hashlib.sha256).hexdigest()


def seal_for_signature(petition_id: int, address: str) -> bytes:
    """A signer's personal address as their pending signature keeps it until the move."""
    return seal(address, f"signature:{petition_id}")


def seal_withdrawal(petition_id: int, url: str, code: str) -> bytes:
    """The withdrawal link and code that the "signed" email will carry, sealed the same way."""
    return seal(json.dumps({"url": url, "code": code}), f"withdrawal:{petition_id}")


def add(session: Session, petition_id: int, address: str, today: date) -> None:
    """Subscribe `address` to a letter's updates, once: a second add changes nothing."""
    row_id = secrets.token_hex(16)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Subscriber)
        .values(
            id=row_id,
            petition_id=petition_id,
            address_hash=subscriber_hash(petition_id, address),
            address_sealed=seal(address, f"subscriber:{row_id}:{petition_id}"),
            created_on=today,
        )
        .on_conflict_do_nothing(index_elements=["address_hash"])
    )


def confirm(session: Session, address_hash: str, today: date) -> bool:
    """Record the address's own yes to updates; whether there was such a subscription."""
    done = session.execute(
        update(Subscriber)
        .where(Subscriber.address_hash == address_hash, Subscriber.confirmed_on.is_(None))
        .values(confirmed_on=today)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)


def unsubscribe(session: Session, address_hash: str) -> bool:
    """Delete the subscription an unsubscribe link names; whether there was one."""
    gone = session.execute(
        delete(Subscriber)
        .where(Subscriber.address_hash == address_hash)
        .execution_options(synchronize_session=False)
    )
    return bool(gone.rowcount)


def count(session: Session, petition_id: int) -> int:
    """How many addresses want a letter's updates (what organizers may see)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.petition_id == petition_id)
        )
        or 0
    )


def addresses(session: Session, petition_id: int, confirmed_only: bool = True) -> Iterator[str]:
    """The letter's subscribers' addresses, opened (for the worker only, never a request)."""
    query = select(Subscriber).where(Subscriber.petition_id == petition_id)
    if confirmed_only:
        query = query.where(Subscriber.confirmed_on.is_not(None))
    for row in session.scalars(query):
        yield open_sealed(row.address_sealed, f"subscriber:{row.id}:{row.petition_id}")


def move_new_subscribers(session: Session, now: datetime) -> int:
    """Worker chore: move every confirmed signer's sealed address into the store and queue
    their "signed" email, in random order, then wipe both from the signatures; how many."""
    waiting = session.execute(
        select(
            Signature.id,
            Signature.petition_id,
            Signature.updates_sealed,
            Signature.withdrawal_sealed,
        )
        .where(Signature.state == SignatureState.CONFIRMED, Signature.updates_sealed.is_not(None))
        .with_for_update(skip_locked=True)
    ).all()
    if not waiting:
        return 0
    letters = {
        petition.id: petition
        for petition in session.scalars(
            select(Petition).where(Petition.id.in_({row.petition_id for row in waiting}))
        )
    }
    opened = []
    for row in waiting:
        address = open_sealed(row.updates_sealed, f"signature:{row.petition_id}")
        note = None
        if row.withdrawal_sealed is not None:
            note = json.loads(open_sealed(row.withdrawal_sealed, f"withdrawal:{row.petition_id}"))
        opened.append((row.petition_id, address, note))
    # Two independent shuffles: neither the store's rows nor the outbox's follow the order of
    # the signatures, nor each other.
    for petition_id, address, _note in _random.sample(opened, len(opened)):
        add(session, petition_id, address, now.date())
    for petition_id, address, note in _random.sample(opened, len(opened)):
        if note is not None:
            queue_email(
                session,
                address,
                "signed",
                petition=letters[petition_id],
                withdraw_url=note["url"],
                withdraw_code=note["code"],
                # the "signed" email is also the double opt-in for updates (issue 27)
                updates_hash=subscriber_hash(petition_id, address),
            )
    session.execute(
        update(Signature)
        .where(Signature.id.in_([row.id for row in waiting]))
        .values(updates_sealed=None, withdrawal_sealed=None)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return len(waiting)
