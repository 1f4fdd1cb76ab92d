"""The worker's side of updates: open each subscriber's address and queue its email, a batch
at a time in random order; count what the SMTP server took and drop addresses it refused for
good; delete subscribers once a letter's retention ends. Nothing here runs in a request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from petitions.delivery import timeline
from petitions.mail import queue_email
from petitions.models import OutboxMessage, Petition
from petitions.models.outbox import OutboxStatus
from petitions.models.subscriber import Subscriber
from petitions.models.update import Update, UpdateMessage, UpdateState
from petitions.signing import subscribers
from petitions.updates import service

#: how the mail worker words a refusal for good of the address itself (`_Batch.refused`): a
#: 5xx to RCPT, or a 550, 551 or 553 (mailbox unavailable, not local, name not allowed)
#: afterwards; a 552 or 554 about the message's content leaves the subscriber alone
PERMANENT_PREFIXES = ("recipient refused", "rejected: 550", "rejected: 551", "rejected: 553")


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def queue_batch(session: Session, update_row: Update, size: int) -> int:
    """Queue the update's email for up to `size` more confirmed subscribers, in random
    order; mark it sent once every one has been queued. Returns how many were queued."""
    petition = session.get(Petition, update_row.petition_id)
    assert petition is not None
    done = select(UpdateMessage.subscriber_id).where(UpdateMessage.update_id == update_row.id)
    rows = list(
        session.scalars(
            select(Subscriber)
            .where(
                Subscriber.petition_id == petition.id,
                Subscriber.confirmed_on.is_not(None),
                Subscriber.confirmed_on <= update_row.sent_on,
                Subscriber.id.not_in(done),
            )
            .order_by(func.random())
            .limit(size)
        )
    )
    letter_url = service.absolute_url("public.letter", slug=petition.slug)
    for row in rows:
        address = subscribers.open_sealed(
            row.address_sealed, f"subscriber:{row.id}:{row.petition_id}"
        )
        unsubscribe_url = service.unsubscribe_url(row.address_hash)
        message = queue_email(
            session,
            address,
            "update",
            petition=petition,
            subject=update_row.subject,
            body=update_row.body_markdown,
            letter_url=letter_url,
            unsubscribe_url=unsubscribe_url,
            list_unsubscribe=unsubscribe_url,
        )
        session.flush()
        session.add(
            UpdateMessage(update_id=update_row.id, subscriber_id=row.id, outbox_id=message.id)
        )
    update_row.queued_count += len(rows)
    if len(rows) < size:
        update_row.finish_queueing()
    session.flush()
    return len(rows)


def settle(session: Session) -> tuple[int, int]:
    """Read back the outcome of queued update emails: count the delivered ones, and delete
    each subscriber the server refused for good (and that message, address and all).
    Returns (delivered, subscribers deleted)."""
    query = (
        select(UpdateMessage, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == UpdateMessage.outbox_id)
        .where(OutboxMessage.status != OutboxStatus.QUEUED)
    )
    if _postgresql(session):
        query = query.with_for_update(skip_locked=True, of=UpdateMessage)
    finished = session.execute(query).all()
    delivered = refused = 0
    for link, message in finished:
        if message.status == OutboxStatus.SENT:
            session.execute(
                update(Update)
                .where(Update.id == link.update_id)
                .values(delivered_count=Update.delivered_count + 1)
            )
            delivered += 1
        elif (message.last_error or "").startswith(PERMANENT_PREFIXES):
            session.execute(delete(Subscriber).where(Subscriber.id == link.subscriber_id))
            session.delete(message)
            refused += 1
            continue  # the link row went with its subscriber
        link.outbox_id = None
    session.flush()
    return delivered, refused


def purge_subscribers(session: Session, now: datetime) -> int:
    """Delete the subscribers of every letter whose retention has ended, and confirmations
    nobody gave in time; how many went."""
    closed = session.scalars(
        select(Petition).where(
            Petition.closed_at.is_not(None),
            Petition.closed_at <= now - service.RETENTION,
            select(Subscriber.id).where(Subscriber.petition_id == Petition.id).exists(),
        )
    ).all()
    gone = 0
    for petition in closed:
        outcome = timeline.current_outcome(session, petition.id)
        ends = service.retention_ends(petition, outcome.created_at if outcome else None)
        if ends is not None and ends <= now:
            result = session.execute(
                delete(Subscriber)
                .where(Subscriber.petition_id == petition.id)
                .execution_options(synchronize_session=False)
            )
            gone += result.rowcount or 0
    stale = now.date() - timedelta(days=service.CONFIRM_DAYS + 1)
    result = session.execute(
        delete(Subscriber)
        .where(Subscriber.confirmed_on.is_(None), Subscriber.created_on < stale)
        .execution_options(synchronize_session=False)
    )
    return gone + (result.rowcount or 0)


def work(session: Session, now: datetime) -> None:
    """Worker chore: settle what was sent, then queue the next batch of each update whose
    last batch has left the outbox."""
    settle(session)
    query = select(Update).where(Update.state == UpdateState.QUEUED).order_by(Update.id)
    if _postgresql(session):
        # Two workers never queue the same update at once (SQLite's write lock sees to it there).
        query = query.with_for_update(skip_locked=True)
    waiting = session.scalars(query).all()
    in_flight = set(
        session.scalars(
            select(UpdateMessage.update_id)
            .join(OutboxMessage, OutboxMessage.id == UpdateMessage.outbox_id)
            .where(OutboxMessage.status == OutboxStatus.QUEUED)
        )
    )
    for update_row in waiting:
        if update_row.id not in in_flight:
            queue_batch(session, update_row, current_app.config["UPDATES_BATCH_SIZE"])
