"""A letter's committee: who is on it with which role, invitations, leaving and removal, and
the append-only committee log. Every change here is logged."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from petitions import hashing
from petitions.mail import queue_email
from petitions.models import CommitteeLogEntry, CommitteeMember, Invitation, Petition, Role, User
from petitions.models.committee import InvitationProblem
from petitions.models.errors import DomainError, InvalidTransition

#: how long an emailed invitation works
INVITATION_LIFETIME = timedelta(days=7)
#: salt of the signed nonce in an invitation link
INVITATION_PURPOSE = "committee_invitation"


class NotMember(DomainError):
    """No such letter, or the account is not on its committee (shown as 404)."""


class NotAllowed(DomainError):
    """The member's role does not allow this (shown as 403)."""


def membership(
    session: Session, user: User, petition_id: int, needs: Role = Role.VIEWER
) -> tuple[Petition, CommitteeMember]:
    """The letter and the account's membership, read afresh on every request.

    Anyone not on the committee gets NotMember, never a hint that the letter exists; a member
    whose role is below `needs` gets NotAllowed.
    """
    row = session.execute(
        select(Petition, CommitteeMember)
        .join(CommitteeMember, CommitteeMember.petition_id == Petition.id)
        .where(Petition.id == petition_id, CommitteeMember.user_id == user.id)
    ).first()
    if row is None:
        raise NotMember("No such letter.")
    petition, member = row
    if not member.may(needs):
        raise NotAllowed(f"Only {needs}s of this letter's committee may do that.")
    return petition, member


def lock(session: Session, petition: Petition) -> None:
    """Serialize committee changes of one letter (SQLite's write lock already does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Petition.id).where(Petition.id == petition.id).with_for_update())


def letters_of(session: Session, user: User) -> list[tuple[Petition, CommitteeMember]]:
    """The letters whose committee the account is on, newest first."""
    rows = session.execute(
        select(Petition, CommitteeMember)
        .join(CommitteeMember, CommitteeMember.petition_id == Petition.id)
        .where(CommitteeMember.user_id == user.id)
        .order_by(Petition.created_at.desc(), Petition.id.desc())
    )
    return [(petition, member) for petition, member in rows]


def members(session: Session, petition_id: int) -> list[tuple[CommitteeMember, User]]:
    """The committee, owners first."""
    rows = session.execute(
        select(CommitteeMember, User)
        .join(User, User.id == CommitteeMember.user_id)
        .where(CommitteeMember.petition_id == petition_id)
        .order_by(CommitteeMember.joined_at, CommitteeMember.id)
    ).all()
    return sorted(((m, u) for m, u in rows), key=lambda pair: -Role(pair[0].role).rank)


def recipients(session: Session, petition_id: int) -> list[User]:
    """Members who act for the letter (owners and organizers): who is told about it."""
    return [user for member, user in members(session, petition_id) if member.may(Role.ORGANIZER)]


def public_organizers(session: Session, petition_id: int) -> list[str]:
    """Display names of the members who chose to appear on the public letter."""
    return list(
        session.scalars(
            select(User.display_name)
            .join(CommitteeMember, CommitteeMember.user_id == User.id)
            .where(
                CommitteeMember.petition_id == petition_id,
                CommitteeMember.shown_on_letter.is_(True),
            )
            .order_by(CommitteeMember.joined_at, CommitteeMember.id)
        )
    )


def record(
    session: Session, petition_id: int, actor: User | None, action: str, detail: str = ""
) -> None:
    """Append one line to the committee log."""
    session.add(
        CommitteeLogEntry(
            petition_id=petition_id,
            actor_id=actor.id if actor else None,
            actor_name=actor.display_name if actor else "Undersigned",
            action=action,
            detail=detail[:500],
        )
    )


def log_entries(session: Session, petition_id: int, limit: int = 500) -> list[CommitteeLogEntry]:
    """The committee log, newest first."""
    return list(
        session.scalars(
            select(CommitteeLogEntry)
            .where(CommitteeLogEntry.petition_id == petition_id)
            .order_by(CommitteeLogEntry.id.desc())
            .limit(limit)
        )
    )


def found(session: Session, petition: Petition, user: User, now: datetime) -> CommitteeMember:
    """Make the author of a new letter the first owner of its committee."""
    member = CommitteeMember(
        petition_id=petition.id, user_id=user.id, role=Role.OWNER, joined_at=now
    )
    session.add(member)
    record(session, petition.id, user, "created", "Started the letter and its committee.")
    return member


def invitations(session: Session, petition_id: int) -> list[Invitation]:
    """Invitations not yet accepted or withdrawn, newest first (expired ones too, to resend)."""
    return list(
        session.scalars(
            select(Invitation)
            .where(
                Invitation.petition_id == petition_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .order_by(Invitation.id.desc())
        )
    )


def _send(session: Session, invitation: Invitation, now: datetime) -> None:
    nonce = hashing.new_nonce()
    invitation.renew(hashing.hash_nonce(nonce), now + INVITATION_LIFETIME)
    token = hashing.sign_nonce(INVITATION_PURPOSE, nonce)
    url = current_app.config["PUBLIC_URL"] + url_for("committee.invitation", token=token)
    # The message names neither the letter nor the inviter: a work mailbox may be read.
    queue_email(
        session,
        invitation.email,
        "committee_invitation",
        url=url,
        max_age_days=INVITATION_LIFETIME.days,
    )


def invite(
    session: Session, petition: Petition, inviter: User, email: str, role: Role, now: datetime
) -> Invitation:
    """Email a single-use invitation to `email`; whether an account has it is never looked up."""
    email = email.casefold()
    taken = session.scalar(
        select(func.count())
        .select_from(CommitteeMember)
        .join(User, User.id == CommitteeMember.user_id)
        .where(CommitteeMember.petition_id == petition.id, User.email == email)
    )
    if taken:
        raise InvalidTransition("That address is already on the committee.")
    for waiting in invitations(session, petition.id):
        if waiting.email == email:
            raise InvalidTransition("That address already has an invitation: send it again below.")
    invitation = Invitation(
        petition_id=petition.id, email=email, role=role, invited_by_id=inviter.id, created_at=now
    )
    session.add(invitation)
    _send(session, invitation, now)
    session.flush()
    record(session, petition.id, inviter, "invited", f"Invited {email} as {role}.")
    return invitation


def _invitation(session: Session, petition: Petition, invitation_id: int) -> Invitation:
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.petition_id != petition.id:
        raise NotMember("No such invitation.")
    return invitation


def resend(
    session: Session, petition: Petition, actor: User, invitation_id: int, now: datetime
) -> Invitation:
    """Send an invitation again with a new link and a new lifetime; the old link dies."""
    invitation = _invitation(session, petition, invitation_id)
    _send(session, invitation, now)
    record(session, petition.id, actor, "invitation_resent", f"Sent again to {invitation.email}.")
    return invitation


def revoke(
    session: Session, petition: Petition, actor: User, invitation_id: int, now: datetime
) -> Invitation:
    """Withdraw an invitation; its link stops working."""
    invitation = _invitation(session, petition, invitation_id)
    invitation.revoke(now)
    record(session, petition.id, actor, "invitation_revoked", f"Withdrew {invitation.email}.")
    return invitation


def invitation_for_link(session: Session, token: str) -> Invitation:
    """The invitation an emailed link names; a bad or unknown link is an InvitationProblem."""
    nonce = hashing.unsign_nonce(INVITATION_PURPOSE, token)
    invitation = None
    if nonce is not None:
        invitation = session.scalars(
            select(Invitation).where(Invitation.nonce_hash == hashing.hash_nonce(nonce))
        ).first()
    if invitation is None:
        raise InvitationProblem(
            "This invitation link is not valid. It may have been replaced by a newer one."
        )
    return invitation


def accept(session: Session, invitation: Invitation, user: User, now: datetime) -> CommitteeMember:
    """Join the committee with the invited role, as the account the invitation was sent to."""
    invitation.accept(user.email, now)
    member = CommitteeMember(
        petition_id=invitation.petition_id, user_id=user.id, role=invitation.role, joined_at=now
    )
    try:
        with session.begin_nested():
            session.add(member)
            session.flush()
    except IntegrityError:
        raise InvitationProblem("You are already on this letter's committee.") from None
    record(session, invitation.petition_id, user, "joined", f"Joined as {invitation.role}.")
    return member


def _owners(session: Session, petition_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(CommitteeMember)
            .where(CommitteeMember.petition_id == petition_id, CommitteeMember.role == Role.OWNER)
        )
        or 0
    )


def _keeps_an_owner(session: Session, member: CommitteeMember) -> None:
    if member.role == Role.OWNER and _owners(session, member.petition_id) <= 1:
        raise InvalidTransition(
            "A letter needs an owner: make someone else an owner before the last one goes."
        )


def leave(session: Session, petition: Petition, member: CommitteeMember, user: User) -> None:
    """Leave the committee; the last owner may not."""
    lock(session, petition)
    _keeps_an_owner(session, member)
    session.delete(member)
    record(session, petition.id, user, "left", "Left the committee.")


def _member(session: Session, petition: Petition, member_id: int) -> tuple[CommitteeMember, User]:
    row = session.execute(
        select(CommitteeMember, User)
        .join(User, User.id == CommitteeMember.user_id)
        .where(CommitteeMember.id == member_id, CommitteeMember.petition_id == petition.id)
    ).first()
    if row is None:
        raise NotMember("No such member.")
    return row[0], row[1]


def remove(session: Session, petition: Petition, owner: User, member_id: int) -> None:
    """An owner removes a member; from the next request on they see nothing of the letter."""
    lock(session, petition)
    member, user = _member(session, petition, member_id)
    _keeps_an_owner(session, member)
    session.delete(member)
    record(session, petition.id, owner, "removed", f"Removed {user.display_name} ({user.email}).")


def change_role(
    session: Session, petition: Petition, owner: User, member_id: int, role: Role
) -> None:
    """An owner gives a member another role; the last owner keeps theirs."""
    lock(session, petition)
    member, user = _member(session, petition, member_id)
    if member.role == role:
        raise InvalidTransition(f"{user.display_name} is already {role}.")
    _keeps_an_owner(session, member)
    member.role = role
    record(session, petition.id, owner, "role_changed", f"{user.display_name} is now {role}.")


def set_shown(
    session: Session, petition: Petition, member: CommitteeMember, user: User, shown: bool
) -> None:
    """The member chooses whether their name appears on the public letter."""
    if member.shown_on_letter == shown:
        return
    member.shown_on_letter = shown
    words = "Shown on" if shown else "Taken off"
    record(session, petition.id, user, "shown" if shown else "not_shown", f"{words} the letter.")
