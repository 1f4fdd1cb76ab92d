"""Reports from the public and what site admins do about them; every admin action is logged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.mail import queue_email
from petitions.models import AuditEntry, Petition, Report, ReportKind, User
from petitions.models.errors import DomainError


class NotAllowed(DomainError):
    """The acting account is not a site admin."""


def file_report(
    session: Session, petition: Petition, kind: ReportKind, message: str, now: datetime
) -> Report:
    """Record a report and tell the letter's organizer and every site admin."""
    report = Report(petition_id=petition.id, kind=kind, message=message, created_at=now)
    session.add(report)
    session.flush()
    organizer = session.get(User, petition.organizer_id)
    admins = session.scalars(select(User).where(User.is_admin.is_(True))).all()
    recipients = {u.email: u for u in [organizer, *admins] if u is not None}
    for email, user in recipients.items():
        queue_email(session, email, "report_filed", user=user, petition=petition, report=report)
    return report


def reports_for(session: Session, petition_id: int) -> list[Report]:
    """A letter's reports, newest first (its organizer sees them)."""
    return list(
        session.scalars(
            select(Report).where(Report.petition_id == petition_id).order_by(Report.id.desc())
        )
    )


def _audit(session: Session, admin: User, action: str, target: str, detail: str = "") -> None:
    if not admin.is_admin:
        raise NotAllowed("Only site admins may do that.")
    session.add(
        AuditEntry(
            admin_id=admin.id, admin_email=admin.email, action=action, target=target, detail=detail
        )
    )


def hide_letter(session: Session, admin: User, petition: Petition, now: datetime) -> None:
    """Take a letter off every public page, and log it."""
    _audit(session, admin, "hide_letter", f"letter {petition.id}", petition.title[:200])
    petition.hide(now)


def unhide_letter(session: Session, admin: User, petition: Petition) -> None:
    """Put a hidden letter back, and log it."""
    _audit(session, admin, "unhide_letter", f"letter {petition.id}", petition.title[:200])
    petition.unhide()


def resolve_report(session: Session, admin: User, report: Report, now: datetime) -> None:
    """Close a report, and log it."""
    _audit(session, admin, "resolve_report", f"report {report.id}", report.kind)
    report.resolve(admin.id, now)


def make_admin(session: Session, email: str) -> User | None:
    """Give an existing, confirmed account site-admin rights (the create-admin command)."""
    user = session.scalars(select(User).where(User.email == email.casefold())).first()
    if user is None or not user.is_confirmed:
        return None
    user.is_admin = True
    return user
