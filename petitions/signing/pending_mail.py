"""The confirmation email that a resend queues by one INSERT ... SELECT: a row is added only
when the signature is still pending, so the same statement runs whether or not there is
someone to mail (a decoy's resend must take the same work as a real one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, literal, select
from sqlalchemy.orm import Session

from petitions.db import UTCDateTime
from petitions.models import OutboxMessage, Signature
from petitions.models.outbox import OutboxStatus

#: the outbox columns the statement fills; the others keep their defaults (NULL)
COLUMNS = [
    "recipient",
    "recipient_domain",
    "template",
    "context",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
]


def queue_if_pending(
    session: Session,
    pending: Sequence[ColumnElement[bool]],
    template: str,
    context: dict[str, Any],
    now: datetime,
) -> None:
    """Queue `template` to the address of the signature `pending` selects, if it selects one."""
    stamp = literal(now, UTCDateTime())
    rows = select(
        Signature.email,
        Signature.email_domain,
        literal(template),
        literal(context, JSON()),
        literal(OutboxStatus.QUEUED.value),
        literal(0),
        stamp,
        stamp,
    ).where(*pending)
    session.execute(OutboxMessage.__table__.insert().from_select(COLUMNS, rows))
