"""The Atom feed's entries: letters as they are published, and milestones as they are passed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from petitions.models import Petition
from petitions.tallies import history, listing


@dataclass
class FeedEntry:
    """One entry: a letter published, or a letter past a round number of signatures."""

    petition: Petition
    updated: datetime
    #: the round number passed; None for a publication
    milestone: int | None = None
    #: the verified total recorded with the milestone
    total: int | None = None

    @property
    def key(self) -> str:
        """What makes the entry unique and permanent, for its Atom id."""
        return f"milestone-{self.milestone}" if self.milestone else "published"


def entries(session: Session, limit: int = 50) -> list[FeedEntry]:
    """The latest publications and milestones of listed letters, newest first."""
    found = [
        FeedEntry(petition, petition.published_at)
        for petition in listing.recently_published(session, limit)
        if petition.published_at is not None
    ]
    milestones = history.recent_milestones(session, limit)
    listed = listing.listed_ids(session, list({petition.id for _, petition in milestones}))
    found += [
        FeedEntry(petition, snapshot.recorded_at, snapshot.milestone, snapshot.total)
        for snapshot, petition in milestones
        if petition.id in listed
    ]
    found.sort(key=lambda entry: (entry.updated, entry.milestone or 0), reverse=True)
    return found[:limit]
