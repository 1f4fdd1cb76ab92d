"""Updates: the public page to subscribe, the emailed confirm and unsubscribe links (no login),
and the committee's page to write, preview and send an update."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from petitions.accounts.forms import EmptyForm
from petitions.committee import actions
from petitions.committee.access import member_or_abort
from petitions.db import get_session, utcnow
from petitions.delivery.timeline import ORGANIZERS, Event
from petitions.letters import service as letters
from petitions.mail.render import render_words
from petitions.models import ActionKind, Petition, Role
from petitions.models.errors import DomainError
from petitions.security import limiter
from petitions.updates import service
from petitions.updates.forms import SubscribeForm, UpdateForm

bp = Blueprint("updates", __name__)

#: per client address: each subscription sends one email to the address given
SUBSCRIBE_LIMIT = "5 per minute; 20 per hour"
#: what RFC 8058 has a mail client POST to the List-Unsubscribe address
ONE_CLICK = "One-Click"


@bp.after_request
def no_store(response: Response) -> Response:
    """These pages carry secrets in links or forms: never kept by a browser or proxy."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _letter(slug: str) -> Petition:
    try:
        return letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)


def _subscribe_page(petition: Petition, form: SubscribeForm, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template("updates/subscribe.html", petition=petition, form=form), status


@bp.get("/p/<slug>/updates")
def subscribe_form(slug: str):  # type: ignore[no-untyped-def]
    """Ask for a letter's updates at a personal address, or follow its Atom feed."""
    return _subscribe_page(_letter(slug), SubscribeForm())


@bp.post("/p/<slug>/updates")
@limiter.limit(SUBSCRIBE_LIMIT)
def subscribe(slug: str):  # type: ignore[no-untyped-def]
    """Seal the address and email it the double opt-in link; the same answer every time."""
    petition = _letter(slug)
    form = SubscribeForm()
    if not form.validate():
        return _subscribe_page(petition, form, 400)
    if not petition.is_public:
        abort(404)
    session = get_session()
    try:
        service.subscribe(session, petition, form.email.data, utcnow())
    except service.AddressRefused as exc:
        session.rollback()
        form.email.errors.append(str(exc))
        return _subscribe_page(petition, form, 400)
    session.commit()
    return render_template("updates/check_email.html", petition=petition)


def _problem(message: str, status: int = 400):  # type: ignore[no-untyped-def]
    return render_template("updates/problem.html", message=message), status


@bp.get("/account/updates/confirm/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    """The double opt-in link's page: a Confirm button (scanners only GET)."""
    return render_template("updates/confirm.html", form=EmptyForm(), token=token)


@bp.post("/account/updates/confirm/<token>")
def confirm(token: str):  # type: ignore[no-untyped-def]
    """The address says yes to the letter's updates."""
    if not EmptyForm().validate():
        return _problem("The form expired. Please open the link again.")
    session = get_session()
    try:
        petition = service.confirm(session, token, utcnow())
    except service.BadLink as exc:
        return _problem(str(exc))
    session.commit()
    return render_template("updates/confirmed.html", petition=petition)


@bp.get("/account/updates/unsubscribe/<token>")
def unsubscribe_page(token: str):  # type: ignore[no-untyped-def]
    """The unsubscribe link's page: one button, no login."""
    try:
        row = service.subscription(get_session(), token)
    except service.BadLink as exc:
        return _problem(str(exc))
    return render_template("updates/unsubscribe.html", form=EmptyForm(), token=token, found=row)


@bp.post("/account/updates/unsubscribe/<token>")
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    """Delete the subscription: the page's button (with its CSRF token) or a mail client's
    RFC 8058 one-click POST, which cannot carry one; the link's signed secret authorises both.
    `register_blueprints` exempts this view from the automatic check for that reason."""
    if request.form.get("List-Unsubscribe") != ONE_CLICK:
        current_app.extensions["csrf"].protect()
    session = get_session()
    try:
        service.unsubscribe(session, token)
    except service.BadLink as exc:
        return _problem(str(exc))
    session.commit()
    return render_template("updates/unsubscribed.html")


def _preview(petition: Petition, form: UpdateForm) -> dict[str, Any]:
    """The update as the email (rendered by the worker's own templates) and as the post."""
    subject, text, html = render_words(
        current_app,
        "update",
        {
            "petition": {"title": petition.title, "addressed_to": petition.addressed_to},
            "subject": form.subject.data,
            "body": form.body.data,
            "letter_url": service.absolute_url("public.letter", slug=petition.slug),
            "unsubscribe_url": "(your own unsubscribe link)",
        },
    )
    now = utcnow()
    post = Event("preview", "update", now.date(), now, f"Update: {form.subject.data}")
    post.body, post.recorded_by = form.body.data or "", ORGANIZERS
    return {"subject": subject, "text": text, "html_body": html, "post": post}


def _manage_page(petition_id: int, form: UpdateForm | None = None, status: int = 200, **extra: Any):  # type: ignore[no-untyped-def]
    petition, member = member_or_abort(petition_id)
    session = get_session()
    now = utcnow()
    html = render_template(
        "updates/manage.html",
        petition=petition,
        member=member,
        form=form or UpdateForm(),
        subscribers=service.confirmed_count(session, petition.id),
        updates=service.sent(session, petition.id),
        pending=[
            action
            for action in actions.pending(session, petition.id)
            if action.kind == ActionKind.SEND_UPDATE and action.is_open(now)
        ],
        **extra,
    )
    return html, status


@bp.get("/letters/<int:petition_id>/updates")
@login_required
def manage(petition_id: int):  # type: ignore[no-untyped-def]
    """How many want updates, what was sent and delivered, and the form to write one."""
    return _manage_page(petition_id)


@bp.post("/letters/<int:petition_id>/updates")
@login_required
def write(petition_id: int):  # type: ignore[no-untyped-def]
    """Preview the update, or send it (with the two-person rule on, propose it)."""
    petition, _member = member_or_abort(petition_id, Role.ORGANIZER)
    form = UpdateForm()
    if not form.validate():
        return _manage_page(petition_id, form, 400)
    if not form.send.data:
        return _manage_page(petition_id, form, preview=_preview(petition, form))
    session = get_session()
    try:
        proposal = service.propose(
            session, petition, current_user, form.subject.data, form.body.data, utcnow()
        )
    except DomainError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _manage_page(petition_id, form, 400)
    session.commit()
    if proposal is None:
        flash("Sent: the update is on the letter's timeline and on its way to subscribers.")
    else:
        flash("Proposed: the update goes out once another organizer approves it.")
    return redirect(url_for("updates.manage", petition_id=petition_id))
