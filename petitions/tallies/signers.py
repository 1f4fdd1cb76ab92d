"""Who is shown on a letter's page, and how: each signer's own choice, applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select, union_all
from sqlalchemy.orm import Session

from petitions.models import Display, Petition, Signature, SignatureState
from petitions.tallies.counts import Counts

PAGE_SIZE = 50


@dataclass
class ShownSigner:
    """One line of the public list of signers."""

    name: str | None
    company: str | None
    job_title: str | None
    team: str | None
    affiliation: str
    confirmed_at: datetime

    @property
    def label(self) -> str:
        """ "Ada Lovelace" or "Verified employee at Microsoft" (or "Verified supporter")."""
        if self.name:
            return self.name
        if self.company:
            prefix = {"former": "Verified former employee", "contractor": "Verified contractor"}
            return f"{prefix.get(self.affiliation, 'Verified employee')} at {self.company}"
        return "Verified supporter"


def revealed_employers(petition: Petition, counts: Counts) -> set[int]:
    """Companies where enough colleagues chose "named once enough colleagues are"."""
    return {
        employer.id
        for employer in petition.domains
        if counts.employer(employer.id).threshold >= petition.reveal_threshold
    }


def _shown_statement() -> Select[Any]:
    """One page of shown signers, as a statement built once (with bound parameters).

    One ordered range of ix_signatures_listing per display choice, each cut at what the
    page can need, then merged: the cost follows the page number, never the number of
    signers (with one IN over the three choices PostgreSQL reads every signer of the
    letter). Only what the list shows is read: never an address hash or anything else.
    """
    newest = [
        select(Signature.id, Signature.confirmed_at)
        .where(
            Signature.petition_id == bindparam("letter"),
            Signature.state == SignatureState.CONFIRMED,
            Signature.display == display,
        )
        .order_by(Signature.confirmed_at.desc(), Signature.id.desc())
        .limit(bindparam("newest"))
        .subquery()
        for display in (Display.NAMED, Display.ANONYMOUS, Display.THRESHOLD)
    ]
    candidates = union_all(*(select(part.c.id, part.c.confirmed_at) for part in newest)).subquery()
    return (
        select(
            Signature.name,
            Signature.employer_id,
            Signature.job_title,
            Signature.team,
            Signature.affiliation,
            Signature.display,
            Signature.confirmed_at,
            Signature.created_at,
        )
        .join(candidates, candidates.c.id == Signature.id)
        .order_by(Signature.confirmed_at.desc(), Signature.id.desc())
        .offset(bindparam("skip"))
        .limit(bindparam("take"))
    )


#: built once: constructing it took longer than running it
_SHOWN = _shown_statement()


def list_shown(
    session: Session, petition: Petition, counts: Counts, page: int = 1
) -> tuple[list[ShownSigner], bool]:
    """Signers who chose to be seen, newest first, one page; and whether there is a next page."""
    rows = session.execute(
        _SHOWN,
        {
            "letter": petition.id,
            "newest": page * PAGE_SIZE + 1,
            "skip": (page - 1) * PAGE_SIZE,
            "take": PAGE_SIZE + 1,
        },
    ).all()
    companies = {employer.id: employer.company_name for employer in petition.domains}
    revealed = revealed_employers(petition, counts)
    shown = []
    for row in rows[:PAGE_SIZE]:
        named = row.display == Display.NAMED or (
            row.display == Display.THRESHOLD and row.employer_id in revealed
        )
        shown.append(
            ShownSigner(
                name=row.name if named else None,
                company=companies.get(row.employer_id) if row.employer_id else None,
                job_title=row.job_title,
                team=row.team,
                affiliation=row.affiliation,
                confirmed_at=row.confirmed_at or row.created_at,
            )
        )
    return shown, len(rows) > PAGE_SIZE
