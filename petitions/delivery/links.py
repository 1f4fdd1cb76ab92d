"""The recipient's private link: issued with a delivery (only a hash of its secret is kept),
checked on every use, and the receipt and response it lets the recipient record."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions import hashing
from petitions.delivery import timeline
from petitions.models import Delivery, DeliveryResponse, Petition, ResponseSource, TimelineKind
from petitions.models.delivery import LinkProblem
from petitions.models.errors import InvalidTransition

#: how long a recipient link works
LINK_LIFETIME = timedelta(days=90)
#: salt of the signed nonce in a recipient link
LINK_PURPOSE = "delivery_recipient"


def issue(found: Delivery, now: datetime) -> str:
    """Give the delivery a fresh private link and return it; only its hash is kept."""
    nonce = hashing.new_nonce()
    found.issue_link(hashing.hash_nonce(nonce), now + LINK_LIFETIME)
    token = hashing.sign_nonce(LINK_PURPOSE, nonce)
    return current_app.config["PUBLIC_URL"] + url_for("recipient.show", token=token)


def delivery_for_link(session: Session, token: str, now: datetime) -> Delivery:
    """The delivery a recipient link names; LinkProblem when it is bad, expired or revoked."""
    nonce = hashing.unsign_nonce(LINK_PURPOSE, token)
    found = None
    if nonce is not None:
        found = session.scalars(
            select(Delivery).where(Delivery.link_nonce_hash == hashing.hash_nonce(nonce))
        ).first()
    if found is None:
        raise LinkProblem("This link is not valid. Check that it was copied whole.")
    found.check_link(now)
    petition = session.get(Petition, found.petition_id)
    if petition is None or not petition.is_public:
        raise LinkProblem("This letter was taken down.")
    return found


def confirm_receipt(session: Session, found: Delivery, now: datetime) -> bool:
    """The recipient confirms receipt; False when it was already recorded."""
    if found.received_at is not None:
        return False
    found.receive(now)
    try:
        with session.begin_nested():
            timeline.append(
                session,
                found.petition_id,
                TimelineKind.RECEIPT,
                now.date(),
                f"Receipt confirmed by the recipient, {found.target_label}",
                timeline.RECIPIENT,
                delivery_id=found.id,
                once_key=f"receipt:{found.id}",
            )
    except IntegrityError:
        return False  # a second press at the same moment
    return True


def recipient_response(session: Session, found: Delivery) -> DeliveryResponse | None:
    """The response the recipient posted through the link, if any."""
    return session.scalars(
        select(DeliveryResponse).where(
            DeliveryResponse.delivery_id == found.id,
            DeliveryResponse.source == ResponseSource.RECIPIENT,
        )
    ).first()


def response_entry(session: Session, response: DeliveryResponse, title: str, **kw: Any) -> None:
    timeline.append(
        session,
        response.petition_id,
        TimelineKind.RESPONSE,
        response.responded_on,
        title,
        str(response.source),
        body=response.text,
        delivery_id=response.delivery_id,
        **kw,
    )


def post_response(
    session: Session, found: Delivery, *, text: str, responder: str, link: str, now: datetime
) -> DeliveryResponse:
    """The recipient's own response through the link (once); it confirms receipt too."""
    if recipient_response(session, found) is not None:
        raise InvalidTransition("A response was already posted through this link.")
    confirm_receipt(session, found, now)
    response = DeliveryResponse(
        petition_id=found.petition_id,
        delivery_id=found.id,
        source=ResponseSource.RECIPIENT,
        text=text,
        responder=responder,
        link=link,
        responded_on=now.date(),
        created_at=now,
    )
    session.add(response)
    who = responder or found.target_label
    try:
        with session.begin_nested():
            response_entry(
                session,
                response,
                f"Response from {who}, posted by the recipient",
                once_key=f"recipient-response:{found.id}",
            )
    except IntegrityError:
        raise InvalidTransition("A response was already posted through this link.") from None
    return response
