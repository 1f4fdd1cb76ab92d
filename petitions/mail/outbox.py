"""The outbox: queueing a message with the change it reports, and leasing due ones to a worker."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from jinja2 import TemplateNotFound
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from petitions.models import OutboxMessage, Petition, Report, User
from petitions.models.outbox import OutboxStatus

#: what a mail template may show of each model, copied when the message is queued; nothing
#: else of the row (an address, a password hash) reaches the outbox
MAIL_FIELDS: dict[type, tuple[str, ...]] = {
    User: ("display_name", "is_admin"),
    Petition: ("id", "title", "addressed_to"),
    Report: ("kind", "message"),
}
#: how long a worker may take over a batch before another may claim its messages
LEASE_SECONDS = 120


def _plain(value: Any) -> Any:
    """`value` as JSON: a string, number, boolean or None; a dict or dataclass of those; or a
    model's MAIL_FIELDS."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    for model, names in MAIL_FIELDS.items():
        if isinstance(value, model):  # isinstance, so that `current_user` (a proxy) passes
            return {name: _plain(getattr(value, name)) for name in names}
    raise TypeError(f"an email's context cannot hold a {type(value).__name__}")


def queue_email(session: Session, recipient: str, template: str, **context: Any) -> OutboxMessage:
    """Add `mail/<template>` for `recipient` to the session's outbox; the caller commits.

    A model in `context` (a user, petition or report) is reduced to its MAIL_FIELDS, so the
    outbox holds no more than the message will show. No template is rendered here.
    """
    try:
        current_app.jinja_env.get_template(f"mail/{template}.txt")
    except TemplateNotFound:
        raise ValueError(f"there is no mail template {template!r}") from None
    message = OutboxMessage(
        recipient=recipient,
        recipient_domain=recipient.rpartition("@")[2],
        template=template,
        context={key: _plain(value) for key, value in context.items()},
    )
    session.add(message)
    return message


def claim(session: Session, owner: str, limit: int, now: datetime) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to `owner` and commit; they come back in queue order."""
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.lease_until.is_(None) | (OutboxMessage.lease_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claimed = session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
        .returning(OutboxMessage)
        # the rows as they are now, even where this session holds an older copy
        .execution_options(populate_existing=True)
    ).all()
    # Commit before anything is sent: on SQLite the claim holds the write lock, which every
    # signature would otherwise wait for until the whole batch had gone out.
    session.commit()
    return sorted(claimed, key=lambda message: message.id)


@dataclass
class OutboxSummary:
    """The outbox at a glance, for operators. Failures name the domain, never the address."""

    queued: int
    sent: int
    failed: int
    #: when the oldest message still queued was queued; None if none is
    oldest_queued_at: datetime | None
    failures: list[str]


def summary(session: Session, recent: int = 20) -> OutboxSummary:
    """Counts by status, the oldest queued message's time, and the most recent failures."""
    by_status = dict(
        session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    )
    oldest = session.scalar(
        select(func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status == OutboxStatus.QUEUED
        )
    )
    failed = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .order_by(OutboxMessage.id.desc())
        .limit(recent)
    )
    return OutboxSummary(
        queued=by_status.get(OutboxStatus.QUEUED, 0),
        sent=by_status.get(OutboxStatus.SENT, 0),
        failed=by_status.get(OutboxStatus.FAILED, 0),
        oldest_queued_at=oldest,
        failures=[
            f"#{m.id} to @{m.recipient_domain} after {m.attempts} attempts: {m.last_error}"
            for m in failed
        ],
    )


def requeue_failed(session: Session, now: datetime, since: datetime | None = None) -> int:
    """Put failed messages (those failed at or after `since`, if given) back in the queue;
    how many. The caller commits."""
    query = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED)
    if since is not None:
        query = query.where(OutboxMessage.failed_at >= since)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    messages = session.scalars(query).all()
    for message in messages:
        message.requeue(now)
    return len(messages)
