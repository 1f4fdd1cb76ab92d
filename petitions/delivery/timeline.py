"""A letter's public timeline: published, milestones and closed (read from the letter and its
history), and the entries written once since (deliveries, receipts, responses, deadlines
passed, outcomes, updates, corrections). A correction is a new entry naming the one it
corrects; both stay. The page, the API and the Atom feeds all read `events()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions.models import (
    CountSnapshot,
    Delivery,
    DeliveryResponse,
    Outcome,
    Petition,
    SnapshotKind,
    TimelineEntry,
    TimelineKind,
)
from petitions.tallies import listing

#: who put an entry on the record, as the timeline says it
ORGANIZERS, RECIPIENT, UNDERSIGNED = "organizers", "recipient", "undersigned"


@dataclass
class Event:
    """One line of the public timeline."""

    key: str
    kind: str
    on: date
    #: when it was put on the record (Atom's `updated`)
    at: datetime
    title: str
    body: str = ""
    recorded_by: str = UNDERSIGNED
    pack_sha256: str | None = None
    outcome: str | None = None
    corrects: str | None = None
    corrected_by: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The event as the API gives it."""
        return {
            "id": self.key,
            "kind": self.kind,
            "date": self.on.isoformat(),
            "recorded_at": self.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "title": self.title,
            "text": self.body,
            "recorded_by": self.recorded_by,
            "pack_sha256": self.pack_sha256,
            "outcome": self.outcome,
            "corrects": self.corrects,
            "corrected_by": self.corrected_by,
        }


def append(
    session: Session,
    petition_id: int,
    kind: TimelineKind,
    happened_on: date,
    title: str,
    recorded_by: str,
    **details: Any,
) -> TimelineEntry:
    """Write one entry (flushed, so a once_key taken already raises IntegrityError)."""
    entry = TimelineEntry(
        petition_id=petition_id,
        kind=kind,
        happened_on=happened_on,
        title=title[:500],
        recorded_by=recorded_by,
        **details,
    )
    session.add(entry)
    session.flush()
    return entry


def stored(session: Session, petition_id: int) -> list[TimelineEntry]:
    """The letter's written entries, oldest first."""
    return list(
        session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.petition_id == petition_id)
            .order_by(TimelineEntry.id)
        )
    )


def _entry_event(entry: TimelineEntry) -> Event:
    return Event(
        key=f"entry-{entry.id}",
        kind=str(entry.kind),
        on=entry.happened_on,
        at=entry.created_at,
        title=entry.title,
        body=entry.body,
        recorded_by=entry.recorded_by,
        pack_sha256=entry.pack_sha256,
        outcome=entry.outcome,
        corrects=f"entry-{entry.corrects_id}" if entry.corrects_id else None,
    )


def events(
    session: Session, petition: Petition, written: list[TimelineEntry] | None = None
) -> list[Event]:
    """The whole public timeline of a published letter, oldest first (`written`: its stored
    entries, when the caller has read them already)."""
    if petition.published_at is None:
        return []
    found = [
        Event(
            "published",
            "published",
            petition.published_at.date(),
            petition.published_at,
            f"Published, addressed to {petition.addressed_to}",
        )
    ]
    milestones = session.scalars(
        select(CountSnapshot)
        .where(
            CountSnapshot.petition_id == petition.id,
            CountSnapshot.kind == SnapshotKind.MILESTONE,
        )
        .order_by(CountSnapshot.milestone)
    )
    found += [
        Event(
            f"milestone-{row.milestone}",
            "milestone",
            row.recorded_at.date(),
            row.recorded_at,
            f"Passed {row.milestone:,} verified signatures",
        )
        for row in milestones
    ]
    entries = [
        _entry_event(entry)
        for entry in (stored(session, petition.id) if written is None else written)
    ]
    by_key = {event.key: event for event in entries}
    for event in entries:
        if event.corrects in by_key:
            by_key[event.corrects].corrected_by.append(event.key)
    found += entries
    if petition.closed_at is not None:
        found.append(
            Event(
                "closed", "closed", petition.closed_at.date(), petition.closed_at, "Signing closed"
            )
        )
    # Entries about a day come after that day's automatic ones only if recorded later.
    found.sort(key=lambda event: (event.on, event.at))
    return found


def current_outcome(session: Session, petition_id: int) -> TimelineEntry | None:
    """The latest outcome entry, if the committee recorded one."""
    return session.scalars(
        select(TimelineEntry)
        .where(TimelineEntry.petition_id == petition_id, TimelineEntry.kind == TimelineKind.OUTCOME)
        .order_by(TimelineEntry.id.desc())
        .limit(1)
    ).first()


def record_outcome(
    session: Session, petition: Petition, payload: dict[str, Any], now: datetime
) -> TimelineEntry:
    """Write the committee's outcome (the two-person rule's runner calls this too)."""
    outcome = Outcome(payload["outcome"])
    return append(
        session,
        petition.id,
        TimelineKind.OUTCOME,
        now.date(),
        f"Outcome: {outcome.label}",
        ORGANIZERS,
        outcome=outcome,
        body=str(payload.get("note", "")),
    )


def record_passed_deadlines(session: Session, now: datetime) -> int:
    """Write "No response N days after delivery" for each delivery past its requested date
    without a response; each once (a worker chore). Returns how many were written."""
    responded = select(DeliveryResponse.id).where(DeliveryResponse.delivery_id == Delivery.id)
    noted = select(TimelineEntry.id).where(
        TimelineEntry.delivery_id == Delivery.id,
        TimelineEntry.kind == TimelineKind.DEADLINE_PASSED,
    )
    due = session.scalars(
        select(Delivery).where(
            Delivery.response_requested_by.is_not(None),
            Delivery.response_requested_by < now.date(),
            ~responded.exists(),
            ~noted.exists(),
        )
    ).all()
    written = 0
    for delivery in due:
        key = f"deadline:{delivery.id}"
        days = (delivery.response_requested_by - delivery.delivered_on).days
        try:
            with session.begin_nested():
                append(
                    session,
                    delivery.petition_id,
                    TimelineKind.DEADLINE_PASSED,
                    delivery.response_requested_by,
                    f"No response {days} {'day' if days == 1 else 'days'} after delivery"
                    f" to {delivery.target_label}",
                    UNDERSIGNED,
                    delivery_id=delivery.id,
                    once_key=key,
                )
        except IntegrityError:
            continue  # another worker wrote it first
        written += 1
    return written


@dataclass
class FeedItem:
    """A written timeline entry as an entry of the site's Atom feed."""

    petition: Petition
    updated: datetime
    key: str
    title: str
    summary: str


def recent(session: Session, limit: int = 50) -> list[FeedItem]:
    """The latest written entries of listed letters, newest first, for the site's feed."""
    rows = session.execute(
        select(TimelineEntry, Petition)
        .join(Petition, Petition.id == TimelineEntry.petition_id)
        .where(listing.is_listed())
        .order_by(TimelineEntry.created_at.desc(), TimelineEntry.id.desc())
        .limit(limit)
    )
    return [
        FeedItem(
            petition,
            entry.created_at,
            f"timeline/entry-{entry.id}",
            f"{petition.title}: {entry.title}",
            " ".join(part for part in (entry.body, _hash_line(entry)) if part),
        )
        for entry, petition in rows
    ]


def _hash_line(entry: TimelineEntry) -> str:
    return f"Pack manifest SHA-256: {entry.pack_sha256}." if entry.pack_sha256 else ""
