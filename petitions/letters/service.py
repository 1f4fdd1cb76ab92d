"""Letters: draft, edit, publish under a unique slug, close."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from petitions.committee import service as committee
from petitions.models import EmployerDomain, Petition, PetitionState, User
from petitions.models.errors import DomainError

SLUG_MAX = 60
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class NotFound(DomainError):
    """No such letter, or not one this person may see."""


def slugify(title: str) -> str:
    """A readable ASCII slug from a title: "Drop the ICE contract!" → "drop-the-ice-contract"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    slug = slug[:SLUG_MAX].rstrip("-")
    return slug or "letter"


def create_draft(
    session: Session,
    organizer: User,
    *,
    title: str,
    addressed_to: str,
    body_markdown: str,
    goal: int | None,
    now: datetime,
    employers: dict[str, str] | None = None,
    allow_supporters: bool = True,
    reveal_threshold: int = 10,
) -> Petition:
    """Start a new draft that only its committee can see, its author the first owner."""
    petition = Petition(
        title=title,
        addressed_to=addressed_to,
        body_markdown=body_markdown,
        goal=goal,
        allow_supporters=allow_supporters,
        reveal_threshold=reveal_threshold,
        created_at=now,
        updated_at=now,
    )
    petition.domains = [
        EmployerDomain(domain=domain, company_name=name)
        for domain, name in (employers or {}).items()
    ]
    session.add(petition)
    session.flush()
    committee.found(session, petition, organizer, now)
    return petition


def get_published(session: Session, slug: str) -> Petition:
    """A published (open or closed) letter by slug; drafts and unknown slugs are NotFound.

    Its employer domains come in the same query: every public view of a letter reads them,
    and the relationship's default (a second SELECT ... IN) cost more than the letter.
    """
    if not slug or len(slug) > SLUG_MAX + 12 or not _SLUG.fullmatch(slug):
        raise NotFound("No such letter.")
    petition = (
        session.scalars(
            select(Petition).options(joinedload(Petition.domains)).where(Petition.slug == slug)
        )
        .unique()
        .first()
    )
    if petition is None or not petition.is_public:
        raise NotFound("No such letter.")
    return petition


def publish(session: Session, petition: Petition, now: datetime) -> None:
    """Publish a draft under a slug from its title, numbered when the title is taken.

    The unique constraint decides; a savepoint retries with the next number, so two
    letters published at once with one title both succeed.
    """
    base = slugify(petition.title)
    taken = set(
        session.scalars(
            select(Petition.slug).where(
                (Petition.slug == base) | Petition.slug.like(f"{base}-%", escape="\\")
            )
        )
    )
    number = 1
    while True:
        candidate = base if number == 1 else f"{base}-{number}"
        number += 1
        if candidate in taken:
            continue
        try:
            with session.begin_nested():
                petition.publish(candidate, now)
                session.flush()
            return
        except IntegrityError:
            petition.state, petition.slug, petition.published_at = PetitionState.DRAFT, None, None
            taken.add(candidate)
