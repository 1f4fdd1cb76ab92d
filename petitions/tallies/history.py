"""Count history: each letter's counts recorded hourly and at milestones, and read back.

The worker calls `record()` every minute or so (and `flask snapshot` does once). Each call
adds, for every published letter:

* an hourly row, at the first look of each hour: always for an open letter, and for a
  closed one only when a withdrawal changed its total since its last row;
* a milestone row the first time an open letter's total is seen at or past 100, 1,000,
  10,000 ...

Two workers may record at once: unique constraints decide, and the loser's row is dropped.
Rows hold aggregate counts only and are at most hourly (milestones aside), so the history
never tells when any one signer signed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from petitions.models import CountSnapshot, Petition, PetitionState, SnapshotKind
from petitions.tallies import counts

#: the round totals that get a milestone row and a feed entry
MILESTONES = tuple(10**power for power in range(2, 13))
GROWTH_WINDOW = timedelta(hours=24)


def hour_of(moment: datetime) -> datetime:
    """The start of the hour a moment falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def milestones_between(lower: int, upper: int) -> list[int]:
    """The milestones above `lower` and at most `upper`."""
    return [m for m in MILESTONES if lower < m <= upper]


def employees_of(petition: Petition, letter_counts: counts.Counts) -> dict[str, dict[str, int]]:
    """Verified employees per employer domain, split by affiliation."""
    split: dict[str, dict[str, int]] = {}
    for employer in petition.domains:
        count = letter_counts.employer(employer.id)
        split[employer.domain] = {
            "current": count.current,
            "former": count.former,
            "contractor": count.contractor,
        }
    return split


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert snapshot rows, dropping any another worker recorded first."""
    if not rows:
        return 0
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    written = 0
    for row in rows:
        statement = insert(CountSnapshot).values(**row).on_conflict_do_nothing()
        written += len(session.execute(statement.returning(CountSnapshot.id)).all())
    return written


def record(session: Session, now: datetime) -> int:
    """Add the hourly and milestone rows that are due at `now`; return how many were added."""
    letters = list(
        session.scalars(
            select(Petition).where(Petition.state != PetitionState.DRAFT).order_by(Petition.id)
        )
    )
    if not letters:
        return 0
    ids = [petition.id for petition in letters]
    totals = counts.read_totals(session, ids)
    hour = hour_of(now)
    recorded_this_hour = set(
        session.scalars(
            select(CountSnapshot.petition_id).where(
                CountSnapshot.petition_id.in_(ids), CountSnapshot.hour == hour
            )
        )
    )
    highest_milestone = dict(
        session.execute(
            select(CountSnapshot.petition_id, func.max(CountSnapshot.milestone))
            .where(CountSnapshot.petition_id.in_(ids), CountSnapshot.milestone.is_not(None))
            .group_by(CountSnapshot.petition_id)
        ).all()
    )
    closed = [p.id for p in letters if p.is_closed and p.id not in recorded_this_hour]
    last_closed_total = _last_totals(session, closed)

    rows: list[dict[str, Any]] = []
    for petition in letters:
        total = totals.get(petition.id, 0)
        due_hourly = petition.id not in recorded_this_hour and (
            petition.is_open or last_closed_total.get(petition.id) != total
        )
        crossed = (
            milestones_between(highest_milestone.get(petition.id) or 0, total)
            if petition.is_open
            else []
        )
        if not due_hourly and not crossed:
            continue
        letter_counts = counts.read(session, petition.id)
        reading = {
            "petition_id": petition.id,
            "recorded_at": now,
            "total": letter_counts.total,
            "supporters": letter_counts.supporters,
            "employees": employees_of(petition, letter_counts),
        }
        if due_hourly:
            rows.append({**reading, "kind": SnapshotKind.HOURLY, "hour": hour})
        if crossed:
            # Decided again on this reading, which a withdrawal may have lowered meanwhile.
            crossed = milestones_between(
                highest_milestone.get(petition.id) or 0, letter_counts.total
            )
        rows.extend(
            {**reading, "kind": SnapshotKind.MILESTONE, "milestone": milestone}
            for milestone in crossed
        )
    written = _insert_rows(session, rows)
    session.flush()
    return written


def _last_totals(session: Session, petition_ids: list[int]) -> dict[int, int]:
    """The total of each letter's latest row, for letters that have one."""
    if not petition_ids:
        return {}
    latest = (
        select(CountSnapshot.total)
        .where(CountSnapshot.petition_id == Petition.id)
        .order_by(CountSnapshot.recorded_at.desc(), CountSnapshot.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(select(Petition.id, latest).where(Petition.id.in_(petition_ids)))
    return {petition_id: total for petition_id, total in rows if total is not None}


@dataclass
class HistoryPage:
    """Some rows of a letter's history, oldest first, and whether more follow."""

    rows: list[CountSnapshot]
    page: int
    per_page: int
    has_next: bool


def rows_page(
    session: Session, petition_id: int, page: int, per_page: int, *, newest_first: bool = False
) -> HistoryPage:
    """One page of a letter's history, oldest first unless asked otherwise."""
    order = [CountSnapshot.recorded_at, CountSnapshot.id]
    rows = list(
        session.scalars(
            select(CountSnapshot)
            .where(CountSnapshot.petition_id == petition_id)
            .order_by(*(column.desc() for column in order) if newest_first else order)
            .offset((page - 1) * per_page)
            .limit(per_page + 1)
        )
    )
    return HistoryPage(rows[:per_page], page, per_page, len(rows) > per_page)


def all_rows(session: Session, petition_id: int) -> list[CountSnapshot]:
    """A letter's whole history, oldest first (for the chart and the CSV)."""
    return list(
        session.scalars(
            select(CountSnapshot)
            .where(CountSnapshot.petition_id == petition_id)
            .order_by(CountSnapshot.recorded_at, CountSnapshot.id)
        )
    )


def recent_rows(session: Session, petition_id: int, limit: int = 6) -> list[CountSnapshot]:
    """The latest rows of a letter's history, newest first."""
    return list(
        session.scalars(
            select(CountSnapshot)
            .where(CountSnapshot.petition_id == petition_id)
            .order_by(CountSnapshot.recorded_at.desc(), CountSnapshot.id.desc())
            .limit(limit)
        )
    )


def sampled_rows(
    session: Session, petition: Petition, end: datetime, points: int = 120
) -> list[CountSnapshot]:
    """About `points` hourly rows spread evenly from publication to `end`, every milestone
    row, and the latest row; oldest first.

    Picked by their hour through the unique index, so the cost stays flat however long
    the letter has been open.
    """
    assert petition.published_at is not None
    first = hour_of(petition.published_at)
    hours = max(0, int((end - first) / timedelta(hours=1)))
    step = max(1, math.ceil((hours + 1) / points))
    wanted = [first + timedelta(hours=h) for h in range(0, hours + 1, step)]
    rows = {
        row.id: row
        for row in session.scalars(
            select(CountSnapshot).where(
                CountSnapshot.petition_id == petition.id,
                or_(CountSnapshot.hour.in_(wanted), CountSnapshot.kind == SnapshotKind.MILESTONE),
            )
        )
    }
    for row in recent_rows(session, petition.id, limit=1):
        rows.setdefault(row.id, row)
    return sorted(rows.values(), key=lambda row: (row.recorded_at, row.id))


def recent_milestones(session: Session, limit: int = 50) -> list[tuple[CountSnapshot, Petition]]:
    """The latest milestone rows of letters the public may see, newest first."""
    rows = session.execute(
        select(CountSnapshot, Petition)
        .join(Petition, Petition.id == CountSnapshot.petition_id)
        .where(CountSnapshot.kind == SnapshotKind.MILESTONE, Petition.hidden_at.is_(None))
        .order_by(CountSnapshot.recorded_at.desc(), CountSnapshot.id.desc())
        .limit(limit)
    )
    return [(snapshot, petition) for snapshot, petition in rows]


def baseline_total(cutoff: datetime) -> ColumnElement[Any]:
    """SQL for a letter's total at `cutoff`, from its history; correlates with `Petition`.

    A letter published after the cutoff had 0. Otherwise the latest row at or before the
    cutoff tells; failing that (the worker was not running) the earliest row after it,
    which can only understate growth. NULL when the letter has no history at all.
    """
    at_or_before = (
        select(CountSnapshot.total)
        .where(CountSnapshot.petition_id == Petition.id, CountSnapshot.recorded_at <= cutoff)
        .order_by(CountSnapshot.recorded_at.desc(), CountSnapshot.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    earliest_after = (
        select(CountSnapshot.total)
        .where(CountSnapshot.petition_id == Petition.id, CountSnapshot.recorded_at > cutoff)
        .order_by(CountSnapshot.recorded_at, CountSnapshot.id)
        .limit(1)
        .scalar_subquery()
    )
    return case(
        (Petition.published_at >= cutoff, literal(0)),
        else_=func.coalesce(at_or_before, earliest_after),
    )


def growth(session: Session, petition: Petition, total_now: int, now: datetime) -> int | None:
    """Signatures gained (or, after withdrawals, lost) over the last 24 hours.

    None when the history cannot tell (an older letter with no rows yet).
    """
    baseline = session.execute(
        select(baseline_total(now - GROWTH_WINDOW)).where(Petition.id == petition.id)
    ).scalar()
    return None if baseline is None else total_now - int(baseline)
