"""A site admin hiding a letter for a stated reason, and the committee's one appeal against it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition


class HideReason(enum.StrEnum):
    """The only reasons an admin may hide a letter for."""

    CONFIDENTIAL = "confidential"
    PRIVATE_INDIVIDUAL = "private_individual"
    HARASSMENT = "harassment"
    SPAM = "spam"
    NOT_EMPLOYEE_LETTER = "not_employee_letter"
    DUPLICATE = "duplicate"

    @property
    def label(self) -> str:
        """The reason in words, as organizers and admins read it."""
        return HIDE_REASON_LABELS[self]


HIDE_REASON_LABELS = {
    HideReason.CONFIDENTIAL: "It discloses confidential information",
    HideReason.PRIVATE_INDIVIDUAL: "It names a private individual",
    HideReason.HARASSMENT: "It harasses someone",
    HideReason.SPAM: "It is spam",
    HideReason.NOT_EMPLOYEE_LETTER: "It is not a letter from employees",
    HideReason.DUPLICATE: "It duplicates another letter",
}


class Takedown(Base):
    """One time a letter was hidden: why, the committee's appeal, and the admin's answer."""

    __tablename__ = "takedowns"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[HideReason] = mapped_column(String(24))
    hidden_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    hidden_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: the committee's one appeal
    appeal_message: Mapped[str | None] = mapped_column(Text)
    appealed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    appealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the admin's answer to the appeal
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: whether the answer put the letter back
    reinstated: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when the letter was shown again (by an answer or by an admin)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def reason_label(self) -> str:
        """Why, in words."""
        return HideReason(self.reason).label

    @property
    def awaits_answer(self) -> bool:
        """Whether an appeal waits in the admins' queue."""
        return self.appealed_at is not None and self.answered_at is None

    @property
    def may_appeal(self) -> bool:
        """Whether the committee may still appeal (once, while the letter is hidden)."""
        return self.appealed_at is None and self.lifted_at is None

    def appeal(self, user_id: int, message: str, now: datetime) -> None:
        """The committee's one appeal."""
        if self.lifted_at is not None:
            raise InvalidTransition("This letter is no longer hidden.")
        if self.appealed_at is not None:
            raise InvalidTransition("This decision was already appealed; an appeal is heard once.")
        self.appeal_message, self.appealed_by_id, self.appealed_at = message, user_id, now

    def answer_appeal(self, admin_id: int, answer: str, reinstate: bool, now: datetime) -> None:
        """Record the admin's answer; reinstating lifts the takedown."""
        if self.appealed_at is None:
            raise InvalidTransition("There is no appeal to answer.")
        if self.answered_at is not None:
            raise InvalidTransition("This appeal was already answered.")
        self.answer, self.answered_by_id, self.answered_at = answer, admin_id, now
        self.reinstated = reinstate
        if reinstate:
            self.lift(now)

    def lift(self, now: datetime) -> None:
        """The letter is shown again."""
        if self.lifted_at is None:
            self.lifted_at = now
