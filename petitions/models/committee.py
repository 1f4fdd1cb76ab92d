"""A letter's organizing committee: members and their roles, invitations, actions waiting for a
second member's approval, and the committee's append-only log."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import DomainError, InvalidTransition


class Role(enum.StrEnum):
    """What a member may do: owners everything, organizers the letter, viewers nothing."""

    OWNER = "owner"
    ORGANIZER = "organizer"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        """Higher ranks may do everything lower ones may."""
        return {Role.VIEWER: 0, Role.ORGANIZER: 1, Role.OWNER: 2}[self]

    def at_least(self, other: Role | str) -> bool:
        """Whether this role includes everything `other` may do."""
        return self.rank >= Role(other).rank


class CommitteeMember(Base):
    """One account on one letter's committee."""

    __tablename__ = "committee_members"
    __table_args__ = (UniqueConstraint("petition_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(String(10))
    #: whether the member's display name appears on the public letter as an organizer
    shown_on_letter: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def may(self, role: Role | str) -> bool:
        """Whether this member's role includes `role`'s rights."""
        return Role(self.role).at_least(role)


class InvitationProblem(DomainError):
    """An invitation link that cannot be accepted; the message says why."""


class Invitation(Base):
    """An emailed, single-use invitation bound to one address; only a hash of its secret is kept."""

    __tablename__ = "committee_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    #: the invited address, case-folded; only an account with this login address may accept
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(String(10))
    #: SHA-256 of the nonce in the emailed link; a resend replaces it
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def is_pending(self, now: datetime) -> bool:
        """Whether the link still works."""
        return self.accepted_at is None and self.revoked_at is None and now < self.expires_at

    def check(self, now: datetime) -> None:
        """Raise unless the invitation may still be accepted."""
        if self.accepted_at is not None:
            raise InvitationProblem("This invitation was already used.")
        if self.revoked_at is not None:
            raise InvitationProblem("This invitation was withdrawn by the committee.")
        if now >= self.expires_at:
            raise InvitationProblem("This invitation has expired. Ask the committee for a new one.")

    def accept(self, email: str, now: datetime) -> None:
        """Use the invitation for the account with login address `email`."""
        self.check(now)
        if email.casefold() != self.email:
            raise InvitationProblem(
                "This invitation was sent to another address. Log out, then log in (or register)"
                " with the address the invitation was sent to."
            )
        self.accepted_at = now

    def revoke(self, now: datetime) -> None:
        """Withdraw a pending invitation; its link stops working."""
        if self.accepted_at is not None or self.revoked_at is not None:
            raise InvalidTransition("Only a pending invitation can be withdrawn.")
        self.revoked_at = now

    def renew(self, nonce_hash: str, expires_at: datetime) -> None:
        """Give a resent invitation a new secret and lifetime; the old link stops working."""
        if self.accepted_at is not None or self.revoked_at is not None:
            raise InvalidTransition("Only a pending or expired invitation can be sent again.")
        self.nonce_hash, self.expires_at = nonce_hash, expires_at


class ActionKind(enum.StrEnum):
    """Committee actions that the two-person rule holds for a second member's approval."""

    PUBLISH = "publish"
    CLOSE = "close"
    AMEND = "amend"
    RECORD_OUTCOME = "record_outcome"
    SEND_UPDATE = "send_update"
    #: turning the rule off is itself held, so one member cannot switch it off and act alone
    RULE_OFF = "rule_off"


class ActionState(enum.StrEnum):
    """Where a pending action is."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class PendingAction(Base):
    """An action one member proposed and another must approve (or reject) within its lifetime."""

    __tablename__ = "committee_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ActionKind] = mapped_column(String(20))
    #: what the action needs when it runs, e.g. an amendment's fields
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    proposed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    state: Mapped[ActionState] = mapped_column(String(10), default=ActionState.PENDING)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def is_open(self, now: datetime) -> bool:
        """Whether it still waits for a decision."""
        return self.state == ActionState.PENDING and now < self.expires_at

    def status(self, now: datetime) -> str:
        """The state as shown: pending, approved, rejected or expired."""
        if self.state == ActionState.PENDING and now >= self.expires_at:
            return "expired"
        return str(self.state)

    def _decide(self, user_id: int, state: ActionState, now: datetime) -> None:
        if self.state != ActionState.PENDING:
            raise InvalidTransition("This action was already decided.")
        if now >= self.expires_at:
            raise InvalidTransition("This action expired: nobody approved it in time.")
        self.state, self.decided_by_id, self.decided_at = state, user_id, now

    def approve(self, user_id: int, now: datetime) -> None:
        """A second member agrees; the proposer never may."""
        if user_id == self.proposed_by_id:
            raise InvalidTransition("Another member must approve what you proposed.")
        self._decide(user_id, ActionState.APPROVED, now)

    def reject(self, user_id: int, now: datetime) -> None:
        """Any member who may act refuses it (the proposer withdraws it)."""
        self._decide(user_id, ActionState.REJECTED, now)


class CommitteeLogEntry(Base):
    """Who on the committee did what, when. Rows are only inserted; triggers refuse the rest."""

    __tablename__ = "committee_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys: a cascade or SET NULL would be an update or delete, which the log refuses.
    petition_id: Mapped[int] = mapped_column(Integer, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    #: the actor's display name at the time, kept if the account goes
    actor_name: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
