"""Updates to the addresses that asked for them: subscribing (double opt-in), the limits on
sending, proposing and sending an update through the committee, and unsubscribing.

A request seals and hashes addresses and never opens one; the worker (`sending`) does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions.committee import actions
from petitions.delivery import timeline
from petitions.mail import queue_email
from petitions.models import ActionKind, PendingAction, Petition, TimelineKind, User
from petitions.models.errors import DomainError
from petitions.models.subscriber import Subscriber
from petitions.models.update import Update
from petitions.signing import subscribers

#: at most one update in any 24 hours, and three in any 7 days, per letter
DAY, WEEK, PER_WEEK = timedelta(days=1), timedelta(days=7), 3
#: how long a double opt-in link works (unconfirmed subscriptions go a day after)
CONFIRM_DAYS = 14
#: subscribers of a letter go this long after it closed or its outcome, whichever is later
RETENTION = timedelta(days=90)
SUBJECT_MAX, BODY_MAX = 150, 20_000


class UpdateRefused(DomainError):
    """The update may not be sent (too soon, too many this week); the message says why."""


class AddressRefused(DomainError):
    """An address that may not subscribe: at the letter's employers, or too late."""


class BadLink(DomainError):
    """A confirm or unsubscribe link that is not ours, or too old."""


def _confirm_links() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="updates-confirm")


def _unsubscribe_links() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="updates-unsubscribe")


def confirm_token(address_hash: str) -> str:
    """The secret in a double opt-in link; it works for CONFIRM_DAYS."""
    return _confirm_links().dumps(address_hash)


def unsubscribe_token(address_hash: str) -> str:
    """The secret in an unsubscribe link; it works as long as the subscription does."""
    return _unsubscribe_links().dumps(address_hash)


def absolute_url(endpoint: str, **values: Any) -> str:
    """The page's address under PUBLIC_URL, built from the URL map (in a request or not)."""
    public = urlsplit(current_app.config["PUBLIC_URL"])
    adapter = current_app.url_map.bind(
        public.netloc, script_name=public.path or "/", url_scheme=public.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


def confirm_url(address_hash: str) -> str:
    """The double opt-in link for a subscription (a Jinja global of the mail templates)."""
    return absolute_url("updates.confirm_page", token=confirm_token(address_hash))


def unsubscribe_url(address_hash: str) -> str:
    """The unsubscribe link, and the RFC 8058 one-click address, of a subscription."""
    return absolute_url("updates.unsubscribe_page", token=unsubscribe_token(address_hash))


def refuse_work_address(petition: Petition, address: str) -> None:
    """Raise AddressRefused for an address at one of the letter's employer domains."""
    if petition.company_for(address.rpartition("@")[2].lower()) is not None:
        raise AddressRefused(
            "That is a work address of a company this letter names. Updates go only to a"
            " personal address your employer cannot read."
        )


def subscribe(session: Session, petition: Petition, address: str, now: datetime) -> None:
    """Seal `address` as an unconfirmed subscriber and email it the double opt-in link, at
    most once a day and never once confirmed; the page says the same either way."""
    refuse_work_address(petition, address)
    outcome = timeline.current_outcome(session, petition.id)
    ends = retention_ends(petition, outcome.created_at if outcome else None)
    if ends is not None and ends <= now:
        raise AddressRefused("This letter no longer sends updates: follow its Atom feed instead.")
    address_hash = subscribers.subscriber_hash(petition.id, address)
    known = session.scalar(select(Subscriber).where(Subscriber.address_hash == address_hash))
    if known is None:
        subscribers.add(session, petition.id, address, now.date())
    elif known.is_confirmed or known.created_on >= now.date():
        return  # nobody can make us mail an address more than once a day
    else:
        known.created_on = now.date()  # its new link works as long as the first did
    queue_email(session, address, "update_confirm", petition=petition, updates_hash=address_hash)


def confirm(session: Session, token: str, now: datetime) -> Petition:
    """Record the address's own yes to the updates of the letter the link names."""
    try:
        address_hash = _confirm_links().loads(token, max_age=CONFIRM_DAYS * 86400)
    except BadData:
        raise BadLink("This link is not valid, or it is too old. Subscribe again.") from None
    row = session.scalar(select(Subscriber).where(Subscriber.address_hash == address_hash))
    if row is None:
        raise BadLink("This subscription no longer exists. Subscribe again.")
    subscribers.confirm(session, address_hash, now.date())
    petition = session.get(Petition, row.petition_id)
    assert petition is not None
    return petition


def subscription(session: Session, token: str) -> Subscriber | None:
    """The subscription an unsubscribe link names, if it still exists."""
    try:
        address_hash = _unsubscribe_links().loads(token)
    except BadData:
        raise BadLink("This unsubscribe link is not valid.") from None
    return session.scalar(select(Subscriber).where(Subscriber.address_hash == address_hash))


def unsubscribe(session: Session, token: str) -> bool:
    """Delete the subscription the link names; whether there still was one."""
    row = subscription(session, token)
    return row is not None and subscribers.unsubscribe(session, row.address_hash)


def confirmed_count(session: Session, petition_id: int) -> int:
    """How many confirmed addresses get the letter's updates (all organizers may know)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.petition_id == petition_id, Subscriber.confirmed_on.is_not(None))
        )
        or 0
    )


def sent(session: Session, petition_id: int) -> list[Update]:
    """The letter's updates, newest first."""
    return list(
        session.scalars(
            select(Update).where(Update.petition_id == petition_id).order_by(Update.id.desc())
        )
    )


def check_limits(session: Session, petition_id: int, now: datetime) -> None:
    """Raise UpdateRefused when one went out in the last day, or three in the last week."""
    recent = list(
        session.scalars(
            select(Update.created_at)
            .where(Update.petition_id == petition_id, Update.created_at > now - WEEK)
            .order_by(Update.created_at)
        )
    )
    if recent and recent[-1] > now - DAY:
        when = (recent[-1] + DAY).strftime("%d %B %Y at %H:%M UTC")
        raise UpdateRefused(f"One update a day: the next can be sent from {when}.")
    if len(recent) >= PER_WEEK:
        when = (recent[0] + WEEK).strftime("%d %B %Y at %H:%M UTC")
        raise UpdateRefused(
            f"At most {PER_WEEK} updates a week: this letter sent {len(recent)} in the last"
            f" 7 days. The next can be sent from {when}."
        )


def propose(
    session: Session, petition: Petition, user: User, subject: str, body: str, now: datetime
) -> PendingAction | None:
    """Send the update now, or with the two-person rule on, propose it for approval."""
    if petition.published_at is None:
        raise UpdateRefused("Publish the letter before sending updates.")
    check_limits(session, petition.id, now)
    payload = {"subject": subject, "body": body}
    return actions.perform(session, petition, user, ActionKind.SEND_UPDATE, now, payload)


def _send(session: Session, petition: Petition, payload: dict[str, Any], now: datetime) -> None:
    """Queue the update for the worker and post it on the letter's public timeline."""
    check_limits(session, petition.id, now)
    update = Update(
        petition_id=petition.id,
        subject=str(payload["subject"])[:SUBJECT_MAX],
        body_markdown=str(payload["body"])[:BODY_MAX],
        sent_on=now.date(),
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(update)
            session.flush()
    except IntegrityError:
        raise UpdateRefused("This letter already sent an update today.") from None
    timeline.append(
        session,
        petition.id,
        TimelineKind.UPDATE,
        now.date(),
        f"Update: {update.subject}",
        timeline.ORGANIZERS,
        body=update.body_markdown,
        once_key=f"update:{update.id}",
    )


actions.RUNNERS[ActionKind.SEND_UPDATE] = _send


def retention_ends(petition: Petition, outcome_at: datetime | None) -> datetime | None:
    """When the letter's subscribers are deleted: RETENTION after it closed or its outcome was
    recorded, whichever is later; None while it is open."""
    if petition.closed_at is None:
        return None
    return max(petition.closed_at, outcome_at or petition.closed_at) + RETENTION
