"""Reports from the public, review before listing, takedowns and appeals. Every admin action
is written to the audit log; reports alone never hide a letter, they queue it for an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petitions.committee import service as committee
from petitions.mail import queue_email
from petitions.models import (
    AuditEntry,
    HideReason,
    Petition,
    Report,
    ReportKind,
    Takedown,
    User,
)
from petitions.models.errors import DomainError, InvalidTransition


class NotAllowed(DomainError):
    """The acting account is not a site admin."""


def _admins(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.is_admin.is_(True))))


def file_report(
    session: Session, petition: Petition, kind: ReportKind, message: str, now: datetime
) -> Report:
    """Record a report; the letter's committee and the admins are told when it enters the queue.

    Later reports join the queue quietly, so a flood of reports is not a flood of email.
    """
    already_queued = session.scalar(
        select(func.count())
        .select_from(Report)
        .where(Report.petition_id == petition.id, Report.resolved_at.is_(None))
    )
    report = Report(petition_id=petition.id, kind=kind, message=message, created_at=now)
    session.add(report)
    session.flush()
    if not already_queued:
        people = [*committee.recipients(session, petition.id), *_admins(session)]
        for email, user in {u.email: u for u in people}.items():
            queue_email(session, email, "report_filed", user=user, petition=petition, report=report)
    return report


def reports_for(session: Session, petition_id: int) -> list[Report]:
    """A letter's reports, newest first (its committee sees them)."""
    return list(
        session.scalars(
            select(Report).where(Report.petition_id == petition_id).order_by(Report.id.desc())
        )
    )


def current_takedown(session: Session, petition_id: int) -> Takedown | None:
    """The latest takedown of a letter, lifted or not."""
    return session.scalars(
        select(Takedown).where(Takedown.petition_id == petition_id).order_by(Takedown.id.desc())
    ).first()


def _audit(session: Session, admin: User, action: str, target: str, detail: str = "") -> None:
    if not admin.is_admin:
        raise NotAllowed("Only site admins may do that.")
    session.add(
        AuditEntry(
            admin_id=admin.id,
            admin_email=admin.email,
            action=action,
            target=target,
            detail=detail[:500],
        )
    )


def _tell_committee(session: Session, petition: Petition, template: str, **context: object) -> None:
    for user in committee.recipients(session, petition.id):
        queue_email(session, user.email, template, petition_id=petition.id, **context)


def hide_letter(
    session: Session, admin: User, petition: Petition, reason: HideReason, now: datetime
) -> Takedown:
    """Take a letter off every public page for a reason from the fixed list; its committee is
    emailed the reason."""
    _audit(session, admin, "hide_letter", f"letter {petition.id}", f"{reason}: {petition.title}")
    petition.hide(now)
    takedown = Takedown(
        petition_id=petition.id, reason=reason, hidden_by_id=admin.id, hidden_at=now
    )
    session.add(takedown)
    committee.record(
        session, petition.id, None, "hidden", f"Hidden by the site's admins: {reason.label}."
    )
    _tell_committee(session, petition, "letter_hidden", reason=reason.label)
    return takedown


def unhide_letter(session: Session, admin: User, petition: Petition, now: datetime) -> None:
    """Put a hidden letter back, and log it."""
    _audit(session, admin, "unhide_letter", f"letter {petition.id}", petition.title)
    petition.unhide()
    takedown = current_takedown(session, petition.id)
    if takedown is not None:
        takedown.lift(now)
    committee.record(session, petition.id, None, "shown_again", "Shown again by the site's admins.")


def approve_listing(session: Session, admin: User, petition: Petition, now: datetime) -> None:
    """List a published letter before it reaches the threshold, and log it."""
    _audit(session, admin, "approve_listing", f"letter {petition.id}", petition.title)
    petition.approve_listing(now)
    committee.record(
        session, petition.id, None, "listed", "Approved for listing by the site's admins."
    )


def resolve_report(session: Session, admin: User, report: Report, now: datetime) -> None:
    """Close a report, and log it."""
    _audit(session, admin, "resolve_report", f"report {report.id}", report.kind)
    report.resolve(admin.id, now)


def appeal(
    session: Session, petition: Petition, user: User, message: str, now: datetime
) -> Takedown:
    """The committee's one appeal against the latest takedown; it joins the admins' queue."""
    takedown = current_takedown(session, petition.id)
    if takedown is None or petition.hidden_at is None:
        raise InvalidTransition("This letter is not hidden, so there is nothing to appeal.")
    takedown.appeal(user.id, message, now)
    committee.record(session, petition.id, user, "appealed", "Appealed the takedown.")
    return takedown


def answer_appeal(
    session: Session, admin: User, takedown: Takedown, answer: str, reinstate: bool, now: datetime
) -> None:
    """Record the admin's answer to an appeal; reinstating shows the letter again."""
    petition = session.get(Petition, takedown.petition_id)
    assert petition is not None  # the foreign key cascades
    outcome = "reinstated" if reinstate else "upheld"
    _audit(session, admin, "answer_appeal", f"letter {petition.id}", f"{outcome}: {answer}")
    takedown.answer_appeal(admin.id, answer, reinstate, now)
    if reinstate and petition.hidden_at is not None:
        petition.unhide()
    committee.record(session, petition.id, None, "appeal_answered", f"The admins {outcome} it.")
    _tell_committee(session, petition, "appeal_answered", reinstated=reinstate, answer=answer)


def open_appeals(session: Session) -> list[tuple[Takedown, Petition]]:
    """Appeals waiting for an admin's answer, oldest first."""
    rows = session.execute(
        select(Takedown, Petition)
        .join(Petition, Petition.id == Takedown.petition_id)
        .where(Takedown.appealed_at.is_not(None), Takedown.answered_at.is_(None))
        .order_by(Takedown.appealed_at)
    )
    return [(takedown, petition) for takedown, petition in rows]


def reported_letters(session: Session, limit: int = 200) -> list[tuple[Petition, int]]:
    """Letters with open reports and how many, most reported first."""
    open_reports = func.count(Report.id)
    rows = session.execute(
        select(Petition, open_reports)
        .join(Report, Report.petition_id == Petition.id)
        .where(Report.resolved_at.is_(None))
        .group_by(Petition.id)
        .order_by(open_reports.desc(), Petition.id)
        .limit(limit)
    )
    return [(petition, int(number)) for petition, number in rows]


def make_admin(session: Session, email: str) -> User | None:
    """Give an existing, confirmed account site-admin rights (the create-admin command)."""
    user = session.scalars(select(User).where(User.email == email.casefold())).first()
    if user is None or not user.is_confirmed:
        return None
    user.is_admin = True
    return user
