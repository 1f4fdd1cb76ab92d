"""The public list of letters: newest, most signed or fastest growing; one page at a time.

A published letter is listed once an admin approves it or it has LISTING_THRESHOLD verified
signatures from its employer domains; until then it is signable by its link only.

Totals come from the counters and growth from the count history, so the cost grows with
the number of letters, never with the number of signatures.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from petitions.models import Petition, PetitionCounter, PetitionState
from petitions.tallies import counts, history


class Sort(enum.StrEnum):
    """The orders the index offers."""

    NEWEST = "newest"
    MOST_SIGNED = "signed"
    GROWING = "growing"


@dataclass
class ListedLetter:
    """One letter on the list, with its verified total and its last 24 hours."""

    petition: Petition
    total: int
    #: signatures gained over the last 24 hours; None when the history cannot tell yet
    last_24h: int | None


@dataclass
class LetterPage:
    """One page of the list."""

    letters: list[ListedLetter]
    page: int
    per_page: int
    #: all letters the public may see, on every page
    count: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one, even when empty)."""
        return max(1, math.ceil(self.count / self.per_page))

    @property
    def has_next(self) -> bool:
        """Whether a later page exists."""
        return self.page < self.pages


@dataclass
class ListingStatus:
    """Whether a published letter is listed, and if not, how far it is from it."""

    listed: bool
    #: verified signatures from the letter's employer domains
    employees: int
    threshold: int
    approved: bool


def threshold() -> int:
    """Verified employee signatures a letter needs before it is listed (LISTING_THRESHOLD)."""
    return int(current_app.config["LISTING_THRESHOLD"])


def employee_total() -> ColumnElement[int]:
    """SQL for a letter's verified signatures from its employer domains, from its counters
    (every confirmed signature is in the total, and outsiders also in supporters)."""
    signed = case((PetitionCounter.bucket == counts.TOTAL, PetitionCounter.value), else_=0)
    supported = case((PetitionCounter.bucket == counts.SUPPORTERS, PetitionCounter.value), else_=0)
    return func.coalesce(
        select(func.sum(signed - supported))
        .where(
            PetitionCounter.petition_id == Petition.id,
            PetitionCounter.bucket.in_([counts.TOTAL, counts.SUPPORTERS]),
        )
        .scalar_subquery(),
        0,
    )


def is_listed() -> ColumnElement[bool]:
    """Published, not hidden, and past review: approved by an admin or past the threshold."""
    return (
        (Petition.state != PetitionState.DRAFT)
        & Petition.hidden_at.is_(None)
        & (Petition.listing_approved_at.is_not(None) | (employee_total() >= threshold()))
    )


def status(petition: Petition, letter_counts: counts.Counts) -> ListingStatus:
    """A letter's listing, from the counts its page already read."""
    employees = letter_counts.total - letter_counts.supporters
    approved = petition.listing_approved_at is not None
    return ListingStatus(
        listed=petition.is_public and (approved or employees >= threshold()),
        employees=employees,
        threshold=threshold(),
        approved=approved,
    )


def listed_ids(session: Session, petition_ids: list[int]) -> set[int]:
    """Which of these letters are listed."""
    if not petition_ids:
        return set()
    return set(
        session.scalars(select(Petition.id).where(Petition.id.in_(petition_ids), is_listed()))
    )


def list_letters(
    session: Session, sort: Sort, page: int, per_page: int, now: datetime
) -> LetterPage:
    """One page of the letters the public may see, in the chosen order."""
    total = func.coalesce(
        select(func.sum(PetitionCounter.value))
        .where(PetitionCounter.petition_id == Petition.id, PetitionCounter.bucket == counts.TOTAL)
        .scalar_subquery(),
        0,
    )
    last_24h = total - history.baseline_total(now - history.GROWTH_WINDOW)
    order = {
        Sort.NEWEST: [Petition.published_at.desc()],
        Sort.MOST_SIGNED: [total.desc(), Petition.published_at.desc()],
        Sort.GROWING: [
            func.coalesce(last_24h, 0).desc(),
            total.desc(),
            Petition.published_at.desc(),
        ],
    }[sort]
    rows = session.execute(
        select(Petition, total, last_24h)
        .where(is_listed())
        .order_by(*order, Petition.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    count = session.scalar(select(func.count()).select_from(Petition).where(is_listed())) or 0
    return LetterPage(
        letters=[
            ListedLetter(petition, int(letter_total), None if growth is None else int(growth))
            for petition, letter_total, growth in rows
        ],
        page=page,
        per_page=per_page,
        count=count,
    )


def recently_published(session: Session, limit: int = 50) -> list[Petition]:
    """The letters most recently published, newest first (for the feed)."""
    return list(
        session.scalars(
            select(Petition)
            .where(is_listed())
            .order_by(Petition.published_at.desc(), Petition.id.desc())
            .limit(limit)
        )
    )
