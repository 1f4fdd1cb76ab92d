"""The committee's delivery page: targets, deliveries and their packs, recipient links,
deadlines, responses, the outcome and corrections. Members see it; organizers and owners act."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms.fields.choices import SelectChoice

from petitions.accounts.forms import EmptyForm
from petitions.committee import actions
from petitions.committee.access import member_or_abort
from petitions.db import get_session, utcnow
from petitions.delivery import service, timeline
from petitions.delivery.forms import (
    CorrectionForm,
    DeadlineForm,
    DeliveryForm,
    OutcomeForm,
    ResponseForm,
    TargetForm,
)
from petitions.models import ActionKind, Channel, Outcome, Petition, Role
from petitions.models.errors import DomainError

bp = Blueprint("delivery", __name__, url_prefix="/letters/<int:petition_id>/delivery")

#: the page's forms, each with a prefix so that their fields never mix
FORMS: dict[str, tuple[type[FlaskForm], str]] = {
    "target_form": (TargetForm, "target"),
    "delivery_form": (DeliveryForm, "delivery"),
    "response_form": (ResponseForm, "response"),
    "outcome_form": (OutcomeForm, "outcome"),
    "correction_form": (CorrectionForm, "correction"),
}
PACK_FILES = {
    "pack.pdf": ("application/pdf", "pdf"),
    "signers.csv": ("text/csv; charset=utf-8", "signers_csv"),
    "manifest.json": ("application/json", "manifest_json"),
}


@bp.before_request
@login_required
def require_login() -> None:
    """Every page here belongs to a committee."""


@bp.after_request
def no_store(response: Response) -> Response:
    """Delivery pages hold private links and addresses: never kept by a browser or proxy."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _forms(petition: Petition, **given: Any) -> dict[str, Any]:
    """Every form of the page, with choices filled in; `given` ones replace fresh ones."""
    session = get_session()
    forms = {name: given.get(name) or cls(prefix=prefix) for name, (cls, prefix) in FORMS.items()}
    targets = service.targets(session, petition.id)
    forms["delivery_form"].target.choices = [SelectChoice(t.id, t.label) for t in targets]
    deliveries = service.deliveries(session, petition.id)
    forms["response_form"].delivery.choices = [
        SelectChoice(d.id, f"Delivery to {d.target_label} on {d.delivered_on.isoformat()}")
        for d in deliveries
    ]
    forms["correction_form"].entry.choices = [
        SelectChoice(e.id, f"{e.happened_on.isoformat()}: {e.title}")
        for e in timeline.stored(session, petition.id)
    ]
    return forms


def _render(petition_id: int, status: int = 200, **given: Any):  # type: ignore[no-untyped-def]
    """The delivery page, with any form that failed shown with its errors."""
    petition, member = member_or_abort(petition_id)
    session = get_session()
    now = utcnow()
    forms = _forms(petition, **given)
    deliveries = service.deliveries(session, petition.id)
    html = render_template(
        "delivery/manage.html",
        petition=petition,
        member=member,
        may_act=member.may(Role.ORGANIZER),
        targets=service.targets(session, petition.id),
        deliveries=deliveries,
        deadline_forms={
            d.id: DeadlineForm(prefix=f"d{d.id}", response_requested_by=d.response_requested_by)
            for d in deliveries
        },
        responses=service.responses(session, petition.id),
        events=timeline.events(session, petition),
        outcome=timeline.current_outcome(session, petition.id),
        pending=[
            a
            for a in actions.pending(session, petition.id)
            if a.kind == ActionKind.RECORD_OUTCOME and a.is_open(now)
        ],
        now=now,
        **forms,
    )
    return html, status


def _back(petition_id: int) -> Response:
    return redirect(url_for("delivery.manage", petition_id=petition_id))


def _acting(petition_id: int) -> Petition:
    """The letter, for an owner or organizer; 404 for outsiders, 403 for viewers."""
    return member_or_abort(petition_id, Role.ORGANIZER)[0]


@bp.get("")
def manage(petition_id: int):  # type: ignore[no-untyped-def]
    """Targets, deliveries, responses, outcome and the timeline of one letter."""
    return _render(petition_id)


@bp.post("/targets")
def add_target(petition_id: int):  # type: ignore[no-untyped-def]
    """Name someone the letter is for."""
    petition = _acting(petition_id)
    form = _forms(petition)["target_form"]
    if not form.validate():
        return _render(petition_id, 400, target_form=form)
    service.add_target(
        get_session(),
        petition,
        current_user,
        name=form.name.data,
        role=form.role.data or "",
        organisation=form.organisation.data or "",
        email=form.email.data or None,
    )
    get_session().commit()
    flash("Target added.", "success")
    return _back(petition_id)


@bp.post("/targets/<int:target_id>/remove")
def remove_target(petition_id: int, target_id: int):  # type: ignore[no-untyped-def]
    """Forget a target (its deliveries keep its name)."""
    return _act(petition_id, "Target removed.", service.remove_target, target_id)


def _act(petition_id: int, done: str, change, *args: Any, form=None):  # type: ignore[no-untyped-def]
    """Check the role and the CSRF token, make one change, commit, and go back."""
    petition = _acting(petition_id)
    if not (form or EmptyForm()).validate():
        abort(400)
    session = get_session()
    try:
        change(session, petition, current_user, *args)
    except service.NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
        return _back(petition_id)
    session.commit()
    flash(done, "success")
    return _back(petition_id)


@bp.post("/record")
def record(petition_id: int):  # type: ignore[no-untyped-def]
    """Record a delivery; the page that follows shows the recipient link this once."""
    petition = _acting(petition_id)
    form = _forms(petition)["delivery_form"]
    if not form.validate():
        return _render(petition_id, 400, delivery_form=form)
    session = get_session()
    try:
        found, link = service.record_delivery(
            session,
            petition,
            current_user,
            target_id=form.target.data,
            delivered_on=form.delivered_on.data,
            channel=Channel(form.channel.data),
            note=form.note.data or "",
            response_requested_by=form.response_requested_by.data,
            with_link=bool(form.with_link.data),
            send_email=bool(form.send_email.data),
            now=utcnow(),
        )
    except service.NotFound:
        abort(404)
    except DomainError as exc:
        form.form_errors.append(str(exc))
        return _render(petition_id, 409, delivery_form=form)
    session.commit()
    return render_template("delivery/link.html", petition=petition, delivery=found, link=link)


def _delivery(petition: Petition, delivery_id: int):  # type: ignore[no-untyped-def]
    try:
        return service.delivery(get_session(), petition, delivery_id)
    except service.NotFound:
        abort(404)


@bp.get("/<int:delivery_id>/<any('pack.pdf', 'signers.csv', 'manifest.json'):name>")
def pack_file(petition_id: int, delivery_id: int, name: str) -> Response:
    """One file of a delivery's frozen pack, as it was made."""
    petition, _member = member_or_abort(petition_id)
    found = _delivery(petition, delivery_id)
    return pack_response(service.pack_of(get_session(), found), petition.slug or "letter", name)


def pack_response(files: Any, slug: str, name: str) -> Response:
    """A pack file as a download named after the letter."""
    mimetype, attribute = PACK_FILES[name]
    response = Response(getattr(files, attribute), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{slug}-{name}"'
    return response


@bp.post("/<int:delivery_id>/link")
def new_link(petition_id: int, delivery_id: int):  # type: ignore[no-untyped-def]
    """Make a new recipient link; the old one stops working."""
    petition = _acting(petition_id)
    if not EmptyForm().validate():
        abort(400)
    found = _delivery(petition, delivery_id)
    session = get_session()
    link = service.new_link(session, petition, current_user, found, utcnow())
    session.commit()
    return render_template("delivery/link.html", petition=petition, delivery=found, link=link)


@bp.post("/<int:delivery_id>/revoke")
def revoke(petition_id: int, delivery_id: int):  # type: ignore[no-untyped-def]
    """Withdraw the recipient link."""

    def change(session, petition, user):  # type: ignore[no-untyped-def]
        service.revoke_link(session, petition, user, _delivery(petition, delivery_id), utcnow())

    return _act(petition_id, "The link no longer works.", change)


@bp.post("/<int:delivery_id>/deadline")
def deadline(petition_id: int, delivery_id: int):  # type: ignore[no-untyped-def]
    """Set or clear "response requested by"."""
    form = DeadlineForm(prefix=f"d{delivery_id}")

    def change(session, petition, user):  # type: ignore[no-untyped-def]
        found = _delivery(petition, delivery_id)
        service.set_deadline(session, petition, user, found, form.response_requested_by.data)

    return _act(petition_id, "Date saved.", change, form=form)


@bp.post("/responses")
def record_response(petition_id: int):  # type: ignore[no-untyped-def]
    """Record a response on the recipient's behalf."""
    petition = _acting(petition_id)
    form = _forms(petition)["response_form"]
    if not form.validate():
        return _render(petition_id, 400, response_form=form)
    session = get_session()
    try:
        service.record_response(
            session,
            petition,
            current_user,
            _delivery(petition, form.delivery.data),
            text=form.text.data,
            responder=form.responder.data,
            link=form.link.data or "",
            responded_on=form.responded_on.data,
            now=utcnow(),
        )
    except DomainError as exc:
        form.form_errors.append(str(exc))
        return _render(petition_id, 409, response_form=form)
    session.commit()
    flash("Response recorded. It is shown beside the letter.", "success")
    return _back(petition_id)


@bp.post("/outcome")
def outcome(petition_id: int):  # type: ignore[no-untyped-def]
    """Record the outcome, or propose it when the two-person rule is on."""
    petition = _acting(petition_id)
    form = _forms(petition)["outcome_form"]
    if not form.validate():
        return _render(petition_id, 400, outcome_form=form)
    session = get_session()
    try:
        waiting = service.set_outcome(
            session,
            petition,
            current_user,
            Outcome(form.outcome.data),
            form.note.data or "",
            utcnow(),
        )
    except DomainError as exc:
        flash(str(exc), "error")
        return _back(petition_id)
    session.commit()
    if waiting is None:
        flash("Outcome recorded on the public timeline.", "success")
    else:
        flash("Outcome proposed: another member must approve it on the committee page.", "info")
    return _back(petition_id)


@bp.post("/corrections")
def correct(petition_id: int):  # type: ignore[no-untyped-def]
    """Publish a correction of a timeline entry."""
    petition = _acting(petition_id)
    form = _forms(petition)["correction_form"]
    if not form.validate():
        return _render(petition_id, 400, correction_form=form)
    session = get_session()
    try:
        service.correct(session, petition, current_user, form.entry.data, form.text.data, utcnow())
    except service.NotFound:
        abort(404)
    session.commit()
    flash("Correction published; the original entry stays visible.", "success")
    return _back(petition_id)
