"""Demo data for the development quick start."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.accounts import service as accounts
from petitions.letters import service as letters
from petitions.models import CommitteeMember, EmployerDomain, Petition, User

DEMO_EMAIL = "organizer@example.org"
DEMO_PASSWORD = "demo passphrase 2018"  # noqa: S105 - the public demo account

DEMO_BODY = """\
We are engineers, designers, researchers and support staff at Example Corp.

We are writing to ask that Example Corp **not renew** its contract to supply
face recognition to police departments, and that it publish the terms of any
such contract in future.

1. End the current contract when its term ends.
2. Publish an ethics review for any contract touching surveillance.
3. Let employees transfer off such projects without penalty.

We love building things that help people. We ask to keep it that way.
"""


def seed(session: Session, now: datetime) -> str:
    """Create the demo organizer and letter unless they exist; say what was done."""
    user = session.scalars(select(User).where(User.email == DEMO_EMAIL)).first()
    if user is None:
        user = User(
            email=DEMO_EMAIL,
            display_name="Demo Organizer",
            password_hash=accounts.hash_password(DEMO_PASSWORD),
            email_confirmed_at=now,
        )
        session.add(user)
        session.flush()
    existing = session.scalars(
        select(Petition)
        .join(CommitteeMember, CommitteeMember.petition_id == Petition.id)
        .where(CommitteeMember.user_id == user.id)
    ).first()
    if existing is not None:
        return f"Demo letter already there: /p/{existing.slug}"
    petition = letters.create_draft(
        session,
        user,
        title="Drop the face recognition contract",
        addressed_to="Jane Doe, CEO, Example Corp",
        body_markdown=DEMO_BODY,
        goal=500,
        now=now,
    )
    petition.domains.append(EmployerDomain(domain="example.com", company_name="Example Corp"))
    letters.publish(session, petition, now)
    # The demo letter is listed at once, as if a site admin had approved it.
    petition.approve_listing(now)
    return (
        f"Demo letter published at /p/{petition.slug}; "
        f"organizer login {DEMO_EMAIL} / {DEMO_PASSWORD!r}."
    )
