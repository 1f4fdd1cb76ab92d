"""Site admins: the review queue (reports, appeals, letters waiting to be listed), hide with a
reason, show again, approve listing, answer appeals, and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from petitions import login_manager
from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.models import AuditEntry, HideReason, Petition, PetitionState, Report, Takedown
from petitions.models.errors import DomainError
from petitions.moderation import service as moderation
from petitions.moderation.forms import AnswerForm, HideForm
from petitions.tallies import counts, listing

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def admins_only():  # type: ignore[no-untyped-def]
    """Anonymous visitors are sent to log in; other organizers find nothing here."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(404)
    return None


@bp.after_request
def no_store(response):  # type: ignore[no-untyped-def]
    """Admin pages are private."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def dashboard():  # type: ignore[no-untyped-def]
    """The review queue, then every published letter (hidden ones included)."""
    session = get_session()
    waiting = session.scalars(
        select(Petition)
        .where(
            Petition.state != PetitionState.DRAFT,
            Petition.hidden_at.is_(None),
            ~listing.is_listed(),
        )
        .order_by(Petition.published_at)
        .limit(200)
    ).all()
    letters = session.scalars(
        select(Petition)
        .where(Petition.state != PetitionState.DRAFT)
        .order_by(Petition.published_at.desc())
        .limit(200)
    ).all()
    return render_template(
        "admin/dashboard.html",
        reported=moderation.reported_letters(session),
        appeals=moderation.open_appeals(session),
        waiting=waiting,
        letters=letters,
        listed=listing.listed_ids(session, [p.id for p in letters]),
    )


@bp.get("/letters/<int:petition_id>")
def letter(petition_id: int):  # type: ignore[no-untyped-def]
    """One letter for review: its reports, its takedown and appeal, and what an admin may do."""
    session = get_session()
    petition = session.get(Petition, petition_id)
    if petition is None or petition.is_draft:
        abort(404)
    letter_counts = counts.read(session, petition.id)
    return render_template(
        "admin/letter.html",
        petition=petition,
        status=listing.status(petition, letter_counts),
        reports=moderation.reports_for(session, petition.id),
        takedown=moderation.current_takedown(session, petition.id),
        form=EmptyForm(),
        hide_form=HideForm(),
        answer_form=AnswerForm(),
    )


@bp.get("/audit")
def audit():  # type: ignore[no-untyped-def]
    """The append-only log of admin actions, newest first."""
    entries = get_session().scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(500))
    return render_template("admin/audit.html", entries=entries)


def _act(action: Callable[[Any, Any], None], target_id: int, model: type, form: Any = None):  # type: ignore[no-untyped-def]
    form = form or EmptyForm()
    if not form.validate():
        abort(400)
    session = get_session()
    target = session.get(model, target_id)
    if target is None:
        abort(404)
    petition_id = target.id if isinstance(target, Petition) else target.petition_id
    try:
        action(session, target)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.letter", petition_id=petition_id))
    session.commit()
    flash("Done, and written to the audit log.", "success")
    return redirect(url_for("admin.letter", petition_id=petition_id))


@bp.post("/letters/<int:petition_id>/hide")
def hide(petition_id: int):  # type: ignore[no-untyped-def]
    """Hide a letter from every public page, for a reason its committee is emailed."""
    form = HideForm()
    return _act(
        lambda s, p: moderation.hide_letter(
            s, current_user, p, HideReason(form.reason.data), utcnow()
        ),
        petition_id,
        Petition,
        form,
    )


@bp.post("/letters/<int:petition_id>/unhide")
def unhide(petition_id: int):  # type: ignore[no-untyped-def]
    """Show a hidden letter again."""
    return _act(
        lambda s, p: moderation.unhide_letter(s, current_user, p, utcnow()), petition_id, Petition
    )


@bp.post("/letters/<int:petition_id>/approve-listing")
def approve_listing(petition_id: int):  # type: ignore[no-untyped-def]
    """List a letter in the index, feed and API before it reaches the threshold."""
    return _act(
        lambda s, p: moderation.approve_listing(s, current_user, p, utcnow()), petition_id, Petition
    )


@bp.post("/takedowns/<int:takedown_id>/answer")
def answer(takedown_id: int):  # type: ignore[no-untyped-def]
    """Record the answer to a committee's appeal."""
    form = AnswerForm()
    return _act(
        lambda s, t: moderation.answer_appeal(
            s, current_user, t, form.answer.data, form.outcome.data == "reinstate", utcnow()
        ),
        takedown_id,
        Takedown,
        form,
    )


@bp.post("/reports/<int:report_id>/resolve")
def resolve(report_id: int):  # type: ignore[no-untyped-def]
    """Mark a report as dealt with."""
    return _act(
        lambda s, r: moderation.resolve_report(s, current_user, r, utcnow()), report_id, Report
    )
