"""Who is shown on a letter's page, and how: each signer's own choice, applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from petitions.models import Display, Petition, Signature, SignatureState
from petitions.services.counts import Counts

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


def list_shown(
    session: Session, petition: Petition, counts: Counts, page: int = 1
) -> tuple[list[ShownSigner], bool]:
    """Signers who chose to be seen, newest first, one page; and whether there is a next page."""
    # One ordered range of ix_signatures_listing per display choice, each cut at what this
    # page can need, then merged: the cost follows the page number, never the number of
    # signers (with one IN over the three choices PostgreSQL reads every signer of the letter).
    newest = [
        select(Signature.id, Signature.confirmed_at)
        .where(
            Signature.petition_id == petition.id,
            Signature.state == SignatureState.CONFIRMED,
            Signature.display == display,
        )
        .order_by(Signature.confirmed_at.desc(), Signature.id.desc())
        .limit(page * PAGE_SIZE + 1)
        .subquery()
        for display in (Display.NAMED, Display.ANONYMOUS, Display.THRESHOLD)
    ]
    candidates = union_all(*(select(part.c.id, part.c.confirmed_at) for part in newest)).subquery()
    rows = list(
        session.scalars(
            select(Signature)
            .join(candidates, candidates.c.id == Signature.id)
            .order_by(Signature.confirmed_at.desc(), Signature.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    companies = {employer.id: employer.company_name for employer in petition.domains}
    revealed = revealed_employers(petition, counts)
    shown = []
    for signature in rows[:PAGE_SIZE]:
        named = signature.display == Display.NAMED or (
            signature.display == Display.THRESHOLD and signature.employer_id in revealed
        )
        shown.append(
            ShownSigner(
                name=signature.name if named else None,
                company=companies.get(signature.employer_id) if signature.employer_id else None,
                job_title=signature.job_title,
                team=signature.team,
                affiliation=signature.affiliation,
                confirmed_at=signature.confirmed_at or signature.created_at,
            )
        )
    return shown, len(rows) > PAGE_SIZE
