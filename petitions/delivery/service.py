"""Delivering a letter: targets, recording a delivery with its pack (and a recipient link,
`links`), responses recorded by the organizers, deadlines, outcomes and corrections. Every
change by a member is also written to the committee log.

Undersigned never contacts a target by itself: mail goes out only when the committee asks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.committee import actions
from petitions.committee import service as committee
from petitions.delivery import links, pack, timeline
from petitions.mail import queue_email
from petitions.models import (
    ActionKind,
    Channel,
    Delivery,
    DeliveryPack,
    DeliveryResponse,
    Outcome,
    PendingAction,
    Petition,
    ResponseSource,
    Target,
    TimelineEntry,
    TimelineKind,
    User,
)
from petitions.models.errors import DomainError, InvalidTransition


def _run_outcome(
    session: Session, petition: Petition, payload: dict[str, Any], now: datetime
) -> None:
    timeline.record_outcome(session, petition, payload, now)


# Recording an outcome is a committee action: with the two-person rule on it waits for a
# second member, and `actions` carries it out through this runner.
actions.RUNNERS[ActionKind.RECORD_OUTCOME] = _run_outcome


class NotFound(DomainError):
    """No such target, delivery or entry on this letter (shown as 404)."""


def targets(session: Session, petition_id: int) -> list[Target]:
    """The letter's targets, in the order they were added."""
    return list(
        session.scalars(select(Target).where(Target.petition_id == petition_id).order_by(Target.id))
    )


def add_target(
    session: Session,
    petition: Petition,
    user: User,
    *,
    name: str,
    role: str,
    organisation: str,
    email: str | None,
) -> Target:
    """Name someone the letter is for; an address is kept only for sending the delivery."""
    target = Target(
        petition_id=petition.id, name=name, role=role, organisation=organisation, email=email
    )
    session.add(target)
    session.flush()
    committee.record(session, petition.id, user, "target_added", f"Added target {target.label}.")
    return target


def _target(session: Session, petition: Petition, target_id: int) -> Target:
    target = session.get(Target, target_id)
    if target is None or target.petition_id != petition.id:
        raise NotFound("No such target.")
    return target


def remove_target(session: Session, petition: Petition, user: User, target_id: int) -> None:
    """Forget a target; deliveries to it keep its name as it was."""
    target = _target(session, petition, target_id)
    session.delete(target)
    committee.record(session, petition.id, user, "target_removed", f"Removed {target.label}.")


def deliveries(session: Session, petition_id: int) -> list[Delivery]:
    """The letter's deliveries, oldest first."""
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.petition_id == petition_id)
            .order_by(Delivery.delivered_on, Delivery.id)
        )
    )


def delivery(session: Session, petition: Petition, delivery_id: int) -> Delivery:
    """One delivery of this letter, or NotFound."""
    found = session.get(Delivery, delivery_id)
    if found is None or found.petition_id != petition.id:
        raise NotFound("No such delivery.")
    return found


def pack_of(session: Session, found: Delivery) -> DeliveryPack:
    """The frozen files of a delivery."""
    return session.scalars(select(DeliveryPack).where(DeliveryPack.delivery_id == found.id)).one()


def responses(session: Session, petition_id: int) -> list[DeliveryResponse]:
    """Every response to the letter, newest first."""
    return list(
        session.scalars(
            select(DeliveryResponse)
            .where(DeliveryResponse.petition_id == petition_id)
            .order_by(DeliveryResponse.responded_on.desc(), DeliveryResponse.id.desc())
        )
    )


def record_delivery(
    session: Session,
    petition: Petition,
    user: User,
    *,
    target_id: int,
    delivered_on: date,
    channel: Channel,
    note: str,
    response_requested_by: date | None,
    with_link: bool,
    send_email: bool,
    now: datetime,
) -> tuple[Delivery, str | None]:
    """Record a delivery: freeze its pack, put it on the timeline with the pack's hash, and
    make a recipient link (emailed to the target through the outbox if asked)."""
    if petition.is_draft:
        raise InvalidTransition("Publish the letter before delivering it.")
    target = _target(session, petition, target_id)
    if send_email and not target.email:
        raise InvalidTransition("This target has no address to send the delivery to.")
    if delivered_on > now.date():
        raise InvalidTransition("A delivery cannot be dated in the future.")
    if petition.published_at is not None and delivered_on < petition.published_at.date():
        raise InvalidTransition("A delivery cannot be dated before the letter was published.")
    if response_requested_by is not None and response_requested_by < delivered_on:
        raise InvalidTransition("The response can only be requested by a day after delivery.")
    files = pack.build(session, petition, target.label, delivered_on)
    found = Delivery(
        petition_id=petition.id,
        target_id=target.id,
        target_label=target.label,
        delivered_on=delivered_on,
        channel=channel,
        note=note,
        pack_sha256=files.sha256,
        response_requested_by=response_requested_by,
        recorded_by_id=user.id,
        created_at=now,
    )
    found.pack = DeliveryPack(
        manifest_json=files.manifest_json, signers_csv=files.signers_csv, pdf=files.pdf
    )
    session.add(found)
    session.flush()
    timeline.append(
        session,
        petition.id,
        TimelineKind.DELIVERED,
        delivered_on,
        f"Delivered to {target.label} {Channel(channel).label}",
        timeline.ORGANIZERS,
        body=note,
        delivery_id=found.id,
        pack_sha256=files.sha256,
    )
    link = links.issue(found, now) if with_link or send_email else None
    if send_email and target.email and link:
        queue_email(
            session,
            target.email,
            "delivery_pack",
            url=link,
            title=petition.title,
            total=files.total,
            max_age_days=links.LINK_LIFETIME.days,
        )
    committee.record(
        session,
        petition.id,
        user,
        "delivered",
        f"Recorded delivery {found.id} to {target.label}"
        + (" and emailed it." if send_email else "."),
    )
    return found, link


def new_link(
    session: Session, petition: Petition, user: User, found: Delivery, now: datetime
) -> str:
    """A new recipient link for a delivery; the old one stops working."""
    link = links.issue(found, now)
    committee.record(
        session, petition.id, user, "link_issued", f"New link for delivery {found.id}."
    )
    return link


def revoke_link(
    session: Session, petition: Petition, user: User, found: Delivery, now: datetime
) -> None:
    """Withdraw a delivery's recipient link."""
    found.revoke_link(now)
    committee.record(session, petition.id, user, "link_revoked", f"Link of delivery {found.id}.")


def set_deadline(
    session: Session, petition: Petition, user: User, found: Delivery, day: date | None
) -> None:
    """Set or clear "response requested by" on a delivery."""
    if day is not None and day < found.delivered_on:
        raise InvalidTransition("The response can only be requested by a day after delivery.")
    found.response_requested_by = day
    words = f"Response requested by {day.isoformat()}" if day else "No response date"
    committee.record(session, petition.id, user, "deadline", f"{words} (delivery {found.id}).")


def record_response(
    session: Session,
    petition: Petition,
    user: User,
    found: Delivery,
    *,
    text: str,
    responder: str,
    link: str,
    responded_on: date,
    now: datetime,
) -> DeliveryResponse:
    """A response as the organizers record it (a reply by mail, a statement, a meeting)."""
    if responded_on > now.date():
        raise InvalidTransition("A response cannot be dated in the future.")
    response = DeliveryResponse(
        petition_id=petition.id,
        delivery_id=found.id,
        source=ResponseSource.ORGANIZERS,
        text=text,
        responder=responder,
        link=link,
        responded_on=responded_on,
        created_at=now,
    )
    session.add(response)
    session.flush()
    who = responder or found.target_label
    links.response_entry(session, response, f"Response from {who}, recorded by the organizers")
    committee.record(session, petition.id, user, "response", f"Recorded a response from {who}.")
    return response


def entry(session: Session, petition: Petition, entry_id: int) -> TimelineEntry:
    """One written timeline entry of this letter, or NotFound."""
    found = session.get(TimelineEntry, entry_id)
    if found is None or found.petition_id != petition.id:
        raise NotFound("No such timeline entry.")
    return found


def correct(
    session: Session, petition: Petition, user: User, entry_id: int, text: str, now: datetime
) -> TimelineEntry:
    """Add a correction pointing at an entry; the entry itself stays as it was."""
    original = entry(session, petition, entry_id)
    correction = timeline.append(
        session,
        petition.id,
        TimelineKind.CORRECTION,
        now.date(),
        f"Correction to “{original.title}”",
        timeline.ORGANIZERS,
        body=text,
        corrects_id=original.id,
    )
    committee.record(session, petition.id, user, "corrected", f"Corrected entry {original.id}.")
    return correction


def set_outcome(
    session: Session, petition: Petition, user: User, outcome: Outcome, note: str, now: datetime
) -> PendingAction | None:
    """Record the outcome now, or with the two-person rule on, propose it for approval."""
    if petition.is_draft:
        raise InvalidTransition("A draft has no outcome yet.")
    payload = {"outcome": str(outcome), "note": note}
    return actions.perform(session, petition, user, ActionKind.RECORD_OUTCOME, now, payload)
