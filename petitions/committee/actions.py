"""The two-person rule: with it on, a committee action waits as a pending action until another
member approves it (or anyone rejects it); one nobody approves expires after 7 days.

Each kind of action has one function that carries it out, registered in RUNNERS; a feature
that adds an action (recording the outcome, sending an update) registers its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.committee import service as committee
from petitions.letters import service as letters
from petitions.models import ActionKind, CommitteeMember, PendingAction, Petition, Role, User
from petitions.models.errors import InvalidTransition

#: how long a pending action waits for a second member
ACTION_LIFETIME = timedelta(days=7)

Runner = Callable[[Session, Petition, dict[str, Any], datetime], None]

LABELS: dict[ActionKind, str] = {
    ActionKind.PUBLISH: "Publish the letter",
    ActionKind.CLOSE: "Close signing",
    ActionKind.AMEND: "Amend the letter",
    ActionKind.RECORD_OUTCOME: "Record the outcome",
    ActionKind.SEND_UPDATE: "Send an update to signers",
    ActionKind.RULE_OFF: "Turn the two-person rule off",
}


def _publish(session: Session, petition: Petition, _payload: dict[str, Any], now: datetime) -> None:
    letters.publish(session, petition, now)


def _close(_session: Session, petition: Petition, _payload: dict[str, Any], now: datetime) -> None:
    petition.close(now)


def _amend(_session: Session, petition: Petition, payload: dict[str, Any], _now: datetime) -> None:
    petition.edit(**payload)


def _rule_off(
    _session: Session, petition: Petition, _payload: dict[str, Any], _now: datetime
) -> None:
    petition.two_person_rule = False


RUNNERS: dict[ActionKind, Runner] = {
    ActionKind.PUBLISH: _publish,
    ActionKind.CLOSE: _close,
    ActionKind.AMEND: _amend,
    ActionKind.RULE_OFF: _rule_off,
}


def perform(
    session: Session,
    petition: Petition,
    user: User,
    kind: ActionKind,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> PendingAction | None:
    """Do the action now, or with the two-person rule on, propose it; the proposal is returned."""
    payload = payload or {}
    if not petition.two_person_rule:
        RUNNERS[kind](session, petition, payload, now)
        committee.record(session, petition.id, user, str(kind), LABELS[kind] + ".")
        return None
    waiting = session.scalars(
        select(PendingAction).where(
            PendingAction.petition_id == petition.id,
            PendingAction.kind == kind,
            PendingAction.state == "pending",
            PendingAction.expires_at > now,
        )
    ).first()
    if waiting is not None:
        raise InvalidTransition("The same action already waits for approval.")
    _rehearse(session, petition, kind, payload, now)
    action = PendingAction(
        petition_id=petition.id,
        kind=kind,
        payload=payload,
        proposed_by_id=user.id,
        created_at=now,
        expires_at=now + ACTION_LIFETIME,
    )
    session.add(action)
    session.flush()
    committee.record(
        session,
        petition.id,
        user,
        "proposed",
        f"Proposed: {LABELS[kind]} (action {action.id}), waiting for approval.",
    )
    return action


def _rehearse(
    session: Session, petition: Petition, kind: ActionKind, payload: dict[str, Any], now: datetime
) -> None:
    """Run the action in a savepoint and undo it, so one that cannot happen now is refused
    when proposed, not when a second member approves it."""
    trial = session.begin_nested()
    try:
        RUNNERS[kind](session, petition, payload, now)
        session.flush()
    finally:
        trial.rollback()


def pending(session: Session, petition_id: int, limit: int = 50) -> list[PendingAction]:
    """The letter's actions, newest first (decided and expired ones too)."""
    return list(
        session.scalars(
            select(PendingAction)
            .where(PendingAction.petition_id == petition_id)
            .order_by(PendingAction.id.desc())
            .limit(limit)
        )
    )


def _action(session: Session, petition: Petition, action_id: int) -> PendingAction:
    action = session.get(PendingAction, action_id)
    if action is None or action.petition_id != petition.id:
        raise committee.NotMember("No such action.")
    return action


def approve(
    session: Session,
    petition: Petition,
    member: CommitteeMember,
    user: User,
    action_id: int,
    now: datetime,
) -> None:
    """A second member approves, and the action is carried out at once."""
    committee.lock(session, petition)
    action = _action(session, petition, action_id)
    if action.kind == ActionKind.RULE_OFF and not member.may(Role.OWNER):
        raise committee.NotAllowed("Only an owner may approve turning the rule off.")
    action.approve(user.id, now)
    label = LABELS[ActionKind(action.kind)]
    committee.record(
        session, petition.id, user, "approved", f"Approved: {label} (action {action.id})."
    )
    RUNNERS[ActionKind(action.kind)](session, petition, dict(action.payload), now)


def reject(session: Session, petition: Petition, user: User, action_id: int, now: datetime) -> None:
    """A member refuses a pending action (its proposer withdraws it)."""
    action = _action(session, petition, action_id)
    action.reject(user.id, now)
    label = LABELS[ActionKind(action.kind)]
    committee.record(
        session, petition.id, user, "rejected", f"Rejected: {label} (action {action.id})."
    )


def set_rule(session: Session, petition: Petition, user: User, on: bool, now: datetime) -> bool:
    """An owner turns the rule on (at once) or off (itself held); True when it took effect."""
    if on:
        if petition.two_person_rule:
            raise InvalidTransition("The two-person rule is already on.")
        actors = [m for m, _ in committee.members(session, petition.id) if m.may(Role.ORGANIZER)]
        if len(actors) < 2:
            raise InvalidTransition(
                "The two-person rule needs at least two owners or organizers: invite one first."
            )
        petition.two_person_rule = True
        committee.record(session, petition.id, user, "rule_on", "Turned the two-person rule on.")
        return True
    if not petition.two_person_rule:
        raise InvalidTransition("The two-person rule is already off.")
    return perform(session, petition, user, ActionKind.RULE_OFF, now) is None
