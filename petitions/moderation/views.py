"""Site admins: hide and unhide letters, act on reports, read the audit log."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from petitions import login_manager
from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.models import AuditEntry, Petition, PetitionState, Report
from petitions.models.errors import InvalidTransition
from petitions.moderation import service as moderation

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
    """Published letters (hidden ones included) and open reports."""
    session = get_session()
    letters = session.scalars(
        select(Petition)
        .where(Petition.state != PetitionState.DRAFT)
        .order_by(Petition.published_at.desc())
        .limit(200)
    ).all()
    reports = session.scalars(
        select(Report).where(Report.resolved_at.is_(None)).order_by(Report.id.desc()).limit(200)
    ).all()
    titles = {p.id: p.title for p in letters}
    return render_template(
        "admin/dashboard.html", letters=letters, reports=reports, titles=titles, form=EmptyForm()
    )


@bp.get("/audit")
def audit():  # type: ignore[no-untyped-def]
    """The append-only log of admin actions, newest first."""
    entries = get_session().scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(500))
    return render_template("admin/audit.html", entries=entries)


def _act(action, target_id: int, model):  # type: ignore[no-untyped-def]
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    target = session.get(model, target_id)
    if target is None:
        abort(404)
    try:
        action(session, target)
    except InvalidTransition as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.dashboard"))
    session.commit()
    flash("Done, and written to the audit log.", "success")
    return redirect(url_for("admin.dashboard"))


@bp.post("/letters/<int:petition_id>/hide")
def hide(petition_id: int):  # type: ignore[no-untyped-def]
    """Hide a letter from every public page."""
    return _act(
        lambda s, p: moderation.hide_letter(s, current_user, p, utcnow()), petition_id, Petition
    )


@bp.post("/letters/<int:petition_id>/unhide")
def unhide(petition_id: int):  # type: ignore[no-untyped-def]
    """Show a hidden letter again."""
    return _act(lambda s, p: moderation.unhide_letter(s, current_user, p), petition_id, Petition)


@bp.post("/reports/<int:report_id>/resolve")
def resolve(report_id: int):  # type: ignore[no-untyped-def]
    """Mark a report as dealt with."""
    return _act(
        lambda s, r: moderation.resolve_report(s, current_user, r, utcnow()), report_id, Report
    )
