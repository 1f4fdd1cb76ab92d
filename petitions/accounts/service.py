"""Organizer accounts: register, confirm the address, log in."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from petitions import tokens
from petitions.mail import queue_email
from petitions.models import Token, TokenPurpose, User
from petitions.models.errors import DomainError

# argon2id, 64 MiB, 3 passes, 4 lanes: above OWASP ASVS 5's minimum (19 MiB, 2 passes, 1 lane).
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)
# Verified against when no account matches, so a wrong address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("undersigned-dummy-password")
#: password-reset links live one hour
RESET_MAX_AGE = 3600


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """Whether the password is right, taking the same time whether or not the user exists."""
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


def find_by_email(session: Session, email: str) -> User | None:
    """The account registered with this address, if any."""
    return session.scalars(select(User).where(User.email == email.casefold())).first()


def confirmation_url(link_token: str) -> str:
    """The emailed link that confirms an organizer's address."""
    return f"{current_app.config['PUBLIC_URL']}/account/confirm/{link_token}"


def register(
    session: Session, *, email: str, display_name: str, password: str, now: datetime
) -> None:
    """Create an account and mail a confirmation link.

    If the address already has an account, that account's owner gets a note instead. The
    page, the work and the statements are the same either way: an INSERT that the unique
    address may turn into nothing, a SELECT, a token (a decoy for a taken address), a mail.
    """
    email = email.casefold()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    created = session.execute(
        insert(User)
        .values(
            email=email,
            display_name=display_name,
            password_hash=hash_password(password),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(User.id)
    ).scalar()
    user = find_by_email(session, email)
    assert user is not None
    issued = tokens.issue(session, TokenPurpose.CONFIRM_ACCOUNT, now, user_id=created)
    if created is None:
        queue_email(session, email, "account_exists", user=user)
    else:
        _queue_confirmation(session, user, issued)


def send_confirmation(session: Session, user: User, now: datetime) -> None:
    """Mail a fresh confirmation link to an unconfirmed organizer."""
    issued = tokens.issue(session, TokenPurpose.CONFIRM_ACCOUNT, now, user_id=user.id)
    _queue_confirmation(session, user, issued)


def _queue_confirmation(session: Session, user: User, issued: tokens.IssuedToken) -> None:
    queue_email(
        session, user.email, "confirm_account", user=user, url=confirmation_url(issued.link_token)
    )


def resend_confirmation(session: Session, email: str, now: datetime) -> None:
    """Mail a fresh confirmation link if the address has an unconfirmed account; otherwise a
    note saying why none came. The same statements run whatever the address's state."""
    user = find_by_email(session, email)
    waiting = user is not None and not user.is_confirmed
    issued = tokens.issue(
        session, TokenPurpose.CONFIRM_ACCOUNT, now, user_id=user.id if waiting else None
    )
    if user is None:
        queue_email(session, email.casefold(), "no_account")
    elif waiting:
        _queue_confirmation(session, user, issued)
    else:
        queue_email(session, user.email, "account_exists", user=user)


def _live_link(
    session: Session, purpose: TokenPurpose, link_token: str, now: datetime
) -> tuple[Token, User]:
    """The unused, unexpired token behind an account link, and its account; raises otherwise."""
    row = tokens.find_by_link(session, purpose, link_token)
    row.check_usable(now)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None:
        raise tokens.TokenInvalid("This link is not valid.")
    return row, user


def confirm_account(session: Session, link_token: str, now: datetime) -> User:
    """Use a confirmation link: the account may log in from now on."""
    row, user = _live_link(session, TokenPurpose.CONFIRM_ACCOUNT, link_token, now)
    row.spend(now)
    if not user.is_confirmed:
        user.confirm_email(now)
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The account for these credentials, or None; unconfirmed accounts are refused too."""
    user = find_by_email(session, email)
    if not check_password(user, password):
        return None
    if user is not None and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def reset_url(link_token: str) -> str:
    """The emailed link that opens the choose-a-new-password page."""
    return f"{current_app.config['PUBLIC_URL']}/account/reset/{link_token}"


def request_password_reset(session: Session, email: str, now: datetime) -> None:
    """Mail a single-use reset link if the address has an account, or a note that none uses
    it: the same statements either way (a decoy token where there is no account)."""
    user = find_by_email(session, email)
    issued = tokens.issue(
        session,
        TokenPurpose.RESET_PASSWORD,
        now,
        user_id=user.id if user is not None else None,
        max_age=RESET_MAX_AGE,
    )
    if user is None:
        queue_email(session, email.casefold(), "no_account")
        return
    queue_email(session, user.email, "reset_password", user=user, url=reset_url(issued.link_token))


def check_reset_link(session: Session, link_token: str, now: datetime) -> User:
    """The account a live reset link belongs to (without using the link)."""
    return _live_link(session, TokenPurpose.RESET_PASSWORD, link_token, now)[1]


def reset_password(session: Session, link_token: str, new_password: str, now: datetime) -> User:
    """Use a reset link: set the password, end every session, and spend the link."""
    row, user = _live_link(session, TokenPurpose.RESET_PASSWORD, link_token, now)
    row.spend(now)
    user.password_hash = hash_password(new_password)
    user.end_all_sessions()
    if not user.is_confirmed:
        user.confirm_email(now)  # the link proved the address
    return user


class WrongPassword(DomainError):
    """The current password given to authorize a change is wrong."""


def change_password(session: Session, user: User, current: str, new_password: str) -> None:
    """Set a new password after checking the current one; every other session ends."""
    if not check_password(user, current):
        raise WrongPassword("Your current password is not right.")
    user.password_hash = hash_password(new_password)
    user.end_all_sessions()
    session.flush()


def request_email_change(
    session: Session, user: User, current: str, new_email: str, now: datetime
) -> None:
    """Send a confirmation link to the new address; the switch happens when it is used."""
    if not check_password(user, current):
        raise WrongPassword("Your current password is not right.")
    new_email = new_email.casefold()
    other = find_by_email(session, new_email)
    issued = tokens.issue(
        session, TokenPurpose.CHANGE_EMAIL, now, user_id=user.id if other is None else None
    )
    if other is not None:
        # Say nothing here about the other account; its owner is told instead.
        queue_email(session, new_email, "account_exists", user=other)
        return
    user.pending_email = new_email
    queue_email(
        session,
        new_email,
        "change_email",
        user=user,
        url=f"{current_app.config['PUBLIC_URL']}/account/email/{issued.link_token}",
    )


def confirm_email_change(session: Session, link_token: str, now: datetime) -> User:
    """Use the link sent to the new address: it becomes the login address."""
    row, user = _live_link(session, TokenPurpose.CHANGE_EMAIL, link_token, now)
    if not user.pending_email:
        raise tokens.TokenInvalid("This link is not valid.")
    if find_by_email(session, user.pending_email) is not None:
        raise tokens.TokenInvalid("That address is already in use by another account.")
    row.spend(now)
    old_email, user.email, user.pending_email = user.email, user.pending_email, None
    user.end_all_sessions()
    queue_email(session, old_email, "email_changed", user=user)
    return user
