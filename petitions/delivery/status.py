"""What the public letter page shows of a delivery: the status line, the responses beside the
letter, the outcome and the timeline. The same for every reader (the page is cached)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.delivery import timeline
from petitions.models import (
    Delivery,
    DeliveryResponse,
    Outcome,
    Petition,
    ResponseSource,
    TimelineKind,
)


@dataclass
class LetterRecord:
    """A letter's delivery as the public sees it."""

    #: "Delivered to Satya Nadella on 3 May · no response yet, 12 days"; None before delivery
    status: str | None = None
    responses: list[DeliveryResponse] = field(default_factory=list)
    outcome: str | None = None
    outcome_note: str = ""
    events: list[timeline.Event] = field(default_factory=list)


def day(value: date) -> str:
    """ "3 May 2026"."""
    return f"{value.day} {value.strftime('%B %Y')}"


def _days(number: int) -> str:
    return f"{number} {'day' if number == 1 else 'days'}"


def status_line(
    latest: Delivery, responses: list[DeliveryResponse], outcome: Outcome | None, today: date
) -> str:
    """One sentence on where the letter stands with its latest target."""
    parts = [f"Delivered to {latest.target_label} on {day(latest.delivered_on)}"]
    if latest.received_at is not None:
        parts.append(f"receipt confirmed {day(latest.received_at.date())}")
    if responses:
        first = min(responses, key=lambda r: (r.responded_on, r.id))
        source = (
            "posted by the recipient"
            if first.source == ResponseSource.RECIPIENT
            else ("recorded by the organizers")
        )
        parts.append(f"answered on {day(first.responded_on)} ({source})")
    else:
        parts.append(f"no response yet, {_days((today - latest.delivered_on).days)}")
        if latest.response_requested_by is not None:
            verb = "was requested" if latest.response_requested_by < today else "requested"
            parts.append(f"response {verb} by {day(latest.response_requested_by)}")
    if outcome is not None:
        parts.append(f"outcome: {outcome.label.lower()}")
    return " · ".join(parts)


def for_letter(session: Session, petition: Petition, now: datetime) -> LetterRecord:
    """Everything the letter page shows of its delivery and timeline."""
    written = timeline.stored(session, petition.id)
    outcomes = [entry for entry in written if entry.kind == TimelineKind.OUTCOME]
    outcome_entry = outcomes[-1] if outcomes else None
    outcome = Outcome(outcome_entry.outcome) if outcome_entry and outcome_entry.outcome else None
    record = LetterRecord(
        outcome=outcome.label if outcome else None,
        outcome_note=outcome_entry.body if outcome_entry else "",
        events=timeline.events(session, petition, written),
    )
    # Read deliveries and responses only once the timeline says there are some.
    if not any(entry.kind == TimelineKind.DELIVERED for entry in written):
        return record
    latest = session.scalars(
        select(Delivery)
        .where(Delivery.petition_id == petition.id)
        .order_by(Delivery.delivered_on.desc(), Delivery.id.desc())
        .limit(1)
    ).one()
    if any(entry.kind == TimelineKind.RESPONSE for entry in written):
        record.responses = list(
            session.scalars(
                select(DeliveryResponse)
                .where(DeliveryResponse.petition_id == petition.id)
                .order_by(DeliveryResponse.responded_on.desc(), DeliveryResponse.id.desc())
            )
        )
    to_latest = [r for r in record.responses if r.delivery_id == latest.id]
    record.status = status_line(latest, to_latest, outcome, now.date())
    return record
