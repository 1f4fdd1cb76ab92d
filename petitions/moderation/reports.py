"""Anyone may report a letter: "I didn't sign this" or "this letter is abusive"."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from petitions.db import get_session, utcnow
from petitions.letters import service as letters
from petitions.models import ReportKind
from petitions.moderation import service as moderation
from petitions.security import REPORT_LIMIT, limiter
from petitions.signing.forms import ReportForm

bp = Blueprint("reports", __name__)


def _letter(slug: str):  # type: ignore[no-untyped-def]
    try:
        return letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)


@bp.get("/p/<slug>/report")
def report_form(slug: str):  # type: ignore[no-untyped-def]
    """The report form for one letter."""
    return render_template("reports/form.html", petition=_letter(slug), form=ReportForm())


@bp.post("/p/<slug>/report")
@limiter.limit(REPORT_LIMIT)
def report(slug: str):  # type: ignore[no-untyped-def]
    """File the report; the organizer and the site admins are told."""
    petition = _letter(slug)
    form = ReportForm()
    if not form.validate():
        return render_template("reports/form.html", petition=petition, form=form), 400
    session = get_session()
    moderation.file_report(
        session, petition, ReportKind(form.kind.data), form.message.data, utcnow()
    )
    session.commit()
    return render_template("reports/thanks.html", petition=petition)
