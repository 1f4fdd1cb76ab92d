"""The committee's side of a letter: draft, edit, preview, publish and close, through the
two-person rule when it is on; approve or reject what waits; appeal a takedown.

Every page reads the account's membership afresh: viewers see, organizers act, owners also
run the committee (see `petitions.committee`). Nothing here shows more about signers than
the public page does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from petitions.accounts.forms import EmptyForm
from petitions.committee import actions
from petitions.committee import service as committee
from petitions.committee.access import member_or_abort
from petitions.db import get_session, utcnow
from petitions.fields import format_employers, parse_employers
from petitions.letters import service as letters
from petitions.letters.forms import AppealForm, LetterForm
from petitions.models import ActionKind, Role
from petitions.models.errors import DomainError
from petitions.moderation import service as moderation
from petitions.tallies import counts, listing

bp = Blueprint("organizer", __name__, url_prefix="/letters")


@bp.before_request
@login_required
def require_login() -> None:
    """Every page here belongs to a committee."""


@bp.after_request
def no_store(response):  # type: ignore[no-untyped-def]
    """Committee pages are private: browsers and proxies must not keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


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


def _back(petition_id: int):  # type: ignore[no-untyped-def]
    return redirect(url_for("organizer.show", petition_id=petition_id))


@bp.get("/")
def dashboard():  # type: ignore[no-untyped-def]
    """The letters whose committee this account is on, with their verified counts."""
    session = get_session()
    mine = committee.letters_of(session, current_user)
    totals = counts.read_totals(session, [petition.id for petition, _ in mine])
    return render_template("letters/dashboard.html", letters=mine, totals=totals)


@bp.get("/new")
def new_form():  # type: ignore[no-untyped-def]
    """An empty letter form."""
    return render_template("letters/edit.html", form=LetterForm(), petition=None)


@bp.post("/new")
def create():  # type: ignore[no-untyped-def]
    """Save a new draft (or show its preview first); its author becomes its first owner."""
    form = LetterForm()
    if not form.validate():
        return render_template("letters/edit.html", form=form, petition=None), 400
    if form.preview.data:
        return render_template("letters/edit.html", form=form, petition=None, preview=True)
    session = get_session()
    petition = letters.create_draft(session, current_user, now=utcnow(), **_letter_fields(form))
    session.commit()
    flash("Draft saved. Only its committee can see it until it is published.", "success")
    return _back(petition.id)


@bp.get("/<int:petition_id>")
def show(petition_id: int):  # type: ignore[no-untyped-def]
    """The committee's view of a letter: preview, state, what waits for approval, actions."""
    petition, member = member_or_abort(petition_id)
    session = get_session()
    letter_counts = counts.read(session, petition.id)
    return render_template(
        "letters/show.html",
        petition=petition,
        member=member,
        counts=letter_counts,
        listing=listing.status(petition, letter_counts),
        reports=moderation.reports_for(session, petition.id),
        takedown=moderation.current_takedown(session, petition.id),
        pending=actions.pending(session, petition.id),
        names={user.id: user.display_name for _, user in committee.members(session, petition.id)},
        labels=actions.LABELS,
        now=utcnow(),
        form=EmptyForm(),
        appeal_form=AppealForm(),
    )


@bp.get("/<int:petition_id>/edit")
def edit_form(petition_id: int):  # type: ignore[no-untyped-def]
    """The edit form, filled in."""
    petition, _ = member_or_abort(petition_id, Role.ORGANIZER)
    form = LetterForm(obj=petition)
    form.employers.data = format_employers({d.domain: d.company_name for d in petition.domains})
    return render_template("letters/edit.html", form=form, petition=petition)


@bp.post("/<int:petition_id>/edit")
def edit(petition_id: int):  # type: ignore[no-untyped-def]
    """Save changes (or preview them); with the two-person rule on they wait for approval."""
    petition, _ = member_or_abort(petition_id, Role.ORGANIZER)
    form = LetterForm()
    if not form.validate():
        return render_template("letters/edit.html", form=form, petition=petition), 400
    if form.preview.data:
        return render_template("letters/edit.html", form=form, petition=petition, preview=True)
    session = get_session()
    try:
        proposal = actions.perform(
            session, petition, current_user, ActionKind.AMEND, utcnow(), _letter_fields(form)
        )
    except DomainError as exc:
        form.form_errors.append(str(exc))
        return render_template("letters/edit.html", form=form, petition=petition), 409
    session.commit()
    flash("Saved." if proposal is None else "The change waits for another member.", "success")
    return _back(petition.id)


def _act(petition_id: int, kind: ActionKind, done: str):  # type: ignore[no-untyped-def]
    petition, _ = member_or_abort(petition_id, Role.ORGANIZER)
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        proposal = actions.perform(session, petition, current_user, kind, utcnow())
    except DomainError as exc:
        flash(str(exc), "error")
        return _back(petition.id)
    session.commit()
    waiting = "It waits for another member of the committee to approve it."
    flash(done if proposal is None else waiting, "success")
    return _back(petition.id)


@bp.post("/<int:petition_id>/publish")
def publish(petition_id: int):  # type: ignore[no-untyped-def]
    """Publish the draft at its public address (or propose it, under the two-person rule)."""
    return _act(
        petition_id, ActionKind.PUBLISH, "Published. Share the link below to collect signatures."
    )


@bp.post("/<int:petition_id>/close")
def close(petition_id: int):  # type: ignore[no-untyped-def]
    """Stop signing; the public page stays up with the final count."""
    return _act(
        petition_id,
        ActionKind.CLOSE,
        "Closed. Signing has stopped; the page stays up with the final count.",
    )


def _decide(petition_id: int, action_id: int, approve: bool):  # type: ignore[no-untyped-def]
    petition, member = member_or_abort(petition_id, Role.ORGANIZER)
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        if approve:
            actions.approve(session, petition, member, current_user, action_id, utcnow())
        else:
            actions.reject(session, petition, current_user, action_id, utcnow())
    except committee.NotMember:
        abort(404)
    except committee.NotAllowed:
        abort(403)
    except DomainError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _back(petition_id)
    session.commit()
    flash("Approved and done." if approve else "Rejected.", "success")
    return _back(petition_id)


@bp.post("/<int:petition_id>/actions/<int:action_id>/approve")
def approve(petition_id: int, action_id: int):  # type: ignore[no-untyped-def]
    """A second member approves a pending action, which is carried out at once."""
    return _decide(petition_id, action_id, approve=True)


@bp.post("/<int:petition_id>/actions/<int:action_id>/reject")
def reject(petition_id: int, action_id: int):  # type: ignore[no-untyped-def]
    """A member rejects a pending action (or its proposer withdraws it)."""
    return _decide(petition_id, action_id, approve=False)


@bp.post("/<int:petition_id>/appeal")
def appeal(petition_id: int):  # type: ignore[no-untyped-def]
    """The committee's one appeal against the admins hiding the letter."""
    petition, _ = member_or_abort(petition_id, Role.ORGANIZER)
    form = AppealForm()
    if not form.validate():
        flash("Write a message of up to 5,000 characters for the admins.", "error")
        return _back(petition.id)
    session = get_session()
    try:
        moderation.appeal(session, petition, current_user, form.message.data, utcnow())
    except DomainError as exc:
        flash(str(exc), "error")
        return _back(petition.id)
    session.commit()
    flash("Your appeal is with the site's admins. Their answer will appear here.", "success")
    return _back(petition.id)
