"""Count history: a letter's verified counts as recorded over time, append only."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base, UTCDateTime


class SnapshotKind(enum.StrEnum):
    """Why a row was recorded."""

    #: the counts at the first look of an hour (open letters every hour, closed ones on change)
    HOURLY = "hourly"
    #: the counts when the total was first seen past a round number (100, 1,000, ...)
    MILESTONE = "milestone"


class CountSnapshot(Base):
    """The counts of one letter at one moment, as anyone may audit them.

    Rows are only ever added: the database refuses to change or delete them (triggers in
    migration 0002), so a letter with a history cannot be deleted, only hidden. They hold
    aggregate counts only, never anything about a single signer, and are taken at most
    hourly (plus milestones), so no signer's confirmation time can be read from them.
    """

    __tablename__ = "count_snapshots"
    __table_args__ = (
        UniqueConstraint("petition_id", "hour"),
        UniqueConstraint("petition_id", "milestone"),
        Index("ix_count_snapshots_history", "petition_id", "recorded_at"),
        Index("ix_count_snapshots_feed", "kind", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id", ondelete="CASCADE"))
    kind: Mapped[SnapshotKind] = mapped_column(String(10))
    #: on hourly rows, the start of the hour they stand for; one row per letter per hour
    hour: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: on milestone rows, the round number the total passed; one row per letter per milestone
    milestone: Mapped[int | None] = mapped_column(BigInteger)
    #: when the counts were read
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: all verified signatures
    total: Mapped[int] = mapped_column(BigInteger)
    #: verified signatures from addresses outside the employer domains
    supporters: Mapped[int] = mapped_column(BigInteger)
    #: verified employees by employer domain:
    #: ``{"example.com": {"current": 3, "former": 1, "contractor": 0}}``
    employees: Mapped[dict[str, Any]] = mapped_column(JSON)

    def employee_total(self, domain: str) -> int:
        """All verified employees at one employer domain in this row."""
        split = self.employees.get(domain) or {}
        return sum(int(split.get(key, 0)) for key in ("current", "former", "contractor"))
