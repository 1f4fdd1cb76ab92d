"""Reports from the public, and the append-only log of what site admins did."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime, utcnow
from petitions.models.errors import InvalidTransition


class ReportKind(enum.StrEnum):
    """What a report says is wrong."""

    NOT_ME = "not_me"
    ABUSIVE = "abusive"


class Report(Base):
    """Someone says "I didn't sign this" or "this letter is abusive"."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ReportKind] = mapped_column(String(10))
    #: the reporter's words; may name a shown signer, never stores who reported
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def is_open(self) -> bool:
        """Whether an admin still has to act."""
        return self.resolved_at is None

    def resolve(self, admin_id: int, now: datetime) -> None:
        """Close the report."""
        if not self.is_open:
            raise InvalidTransition("This report is already resolved.")
        self.resolved_at, self.resolved_by_id = now, admin_id


class AuditEntry(Base):
    """One admin action. Rows are only ever inserted; triggers refuse updates and deletes."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: the admin's address at the time, kept even if the account goes
    admin_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))
    #: what it was done to, e.g. "letter 12" or "report 3"
    target: Mapped[str] = mapped_column(String(80))
    detail: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
