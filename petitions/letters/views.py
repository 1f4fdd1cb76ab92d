"""The organizer's side: draft, edit, preview, publish and close letters."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.fields import format_employers, parse_employers
from petitions.letters import service as letters
from petitions.letters.forms import LetterForm
from petitions.models import Petition
from petitions.models.errors import InvalidTransition
from petitions.moderation import service as moderation
from petitions.tallies import counts

bp = Blueprint("organizer", __name__, url_prefix="/letters")


@bp.before_request
@login_required
def require_login() -> None:
    """Every page here is the organizer's own."""


@bp.after_request
def no_store(response):  # type: ignore[no-untyped-def]
    """Organizer pages are private: browsers and proxies must not keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _own(petition_id: int) -> Petition:
    try:
        return letters.get_own(get_session(), current_user, petition_id)
    except letters.NotFound:
        abort(404)


def _letter_fields(form: LetterForm) -> dict[str, Any]:
    """The validated form as keyword arguments for a draft."""
    return {
        "title": form.title.data,
        "addressed_to": form.addressed_to.data,
        "body_markdown": form.body_markdown.data,
        "goal": form.goal.data,
        "employers": parse_employers(form.employers.data or ""),
        "allow_supporters": bool(form.allow_supporters.data),
        "reveal_threshold": form.reveal_threshold.data,
    }


@bp.get("/")
def dashboard():  # type: ignore[no-untyped-def]
    """The organizer's letters with their verified counts."""
    session = get_session()
    own = letters.list_own(session, current_user)
    totals = counts.read_totals(session, [p.id for p in own])
    return render_template("letters/dashboard.html", letters=own, totals=totals)


@bp.get("/new")
def new_form():  # type: ignore[no-untyped-def]
    """An empty letter form."""
    return render_template("letters/edit.html", form=LetterForm(), petition=None)


@bp.post("/new")
def create():  # type: ignore[no-untyped-def]
    """Save a new draft (or show its preview first)."""
    form = LetterForm()
    if not form.validate():
        return render_template("letters/edit.html", form=form, petition=None), 400
    if form.preview.data:
        return render_template("letters/edit.html", form=form, petition=None, preview=True)
    session = get_session()
    petition = letters.create_draft(session, current_user, now=utcnow(), **_letter_fields(form))
    session.commit()
    flash("Draft saved. Only you can see it until you publish it.", "success")
    return redirect(url_for("organizer.show", petition_id=petition.id))


@bp.get("/<int:petition_id>")
def show(petition_id: int):  # type: ignore[no-untyped-def]
    """The organizer's view of a letter: preview, state, and actions."""
    petition = _own(petition_id)
    session = get_session()
    return render_template(
        "letters/show.html",
        petition=petition,
        counts=counts.read(session, petition.id),
        reports=moderation.reports_for(session, petition.id),
        form=EmptyForm(),
    )


@bp.get("/<int:petition_id>/edit")
def edit_form(petition_id: int):  # type: ignore[no-untyped-def]
    """The edit form, filled in."""
    petition = _own(petition_id)
    form = LetterForm(obj=petition)
    form.employers.data = format_employers({d.domain: d.company_name for d in petition.domains})
    return render_template("letters/edit.html", form=form, petition=petition)


@bp.post("/<int:petition_id>/edit")
def edit(petition_id: int):  # type: ignore[no-untyped-def]
    """Save changes (or preview them)."""
    petition = _own(petition_id)
    form = LetterForm()
    if not form.validate():
        return render_template("letters/edit.html", form=form, petition=petition), 400
    if form.preview.data:
        return render_template("letters/edit.html", form=form, petition=petition, preview=True)
    try:
        petition.edit(**_letter_fields(form))
    except InvalidTransition as exc:
        form.form_errors.append(str(exc))
        return render_template("letters/edit.html", form=form, petition=petition), 409
    get_session().commit()
    flash("Saved.", "success")
    return redirect(url_for("organizer.show", petition_id=petition.id))


@bp.post("/<int:petition_id>/publish")
def publish(petition_id: int):  # type: ignore[no-untyped-def]
    """Publish the draft at its public address."""
    petition = _own(petition_id)
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        letters.publish(session, petition, utcnow())
    except InvalidTransition as exc:
        flash(str(exc), "error")
        return redirect(url_for("organizer.show", petition_id=petition.id))
    session.commit()
    flash("Published. Share the link below to collect signatures.", "success")
    return redirect(url_for("organizer.show", petition_id=petition.id))


@bp.post("/<int:petition_id>/close")
def close(petition_id: int):  # type: ignore[no-untyped-def]
    """Stop signing; the public page stays up with the final count."""
    petition = _own(petition_id)
    if not EmptyForm().validate():
        abort(400)
    try:
        petition.close(utcnow())
    except InvalidTransition as exc:
        flash(str(exc), "error")
        return redirect(url_for("organizer.show", petition_id=petition.id))
    get_session().commit()
    flash("Closed. Signing has stopped; the page stays up with the final count.", "success")
    return redirect(url_for("organizer.show", petition_id=petition.id))
