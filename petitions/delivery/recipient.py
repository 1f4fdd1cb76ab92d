"""The recipient's private link: a GET shows the letter, its pack and a button; only pressing
the button (a POST) records receipt, because mail scanners open links. The recipient may
post a response there too. The link dies after 90 days or when the organizers revoke it.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)

from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.delivery import links, service
from petitions.delivery.forms import RecipientResponseForm
from petitions.delivery.views import pack_response
from petitions.errors import render_error
from petitions.models import Delivery, Petition
from petitions.models.delivery import LinkProblem
from petitions.models.errors import DomainError

bp = Blueprint("recipient", __name__, url_prefix="/r")


@bp.after_request
def private(response: Response) -> Response:
    """The page's address is a secret: never kept, never sent on as a referrer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _delivery(token: str) -> Delivery:
    """The delivery the link names, or an error page saying why the link does not work."""
    try:
        return links.delivery_for_link(get_session(), token, utcnow())
    except LinkProblem as exc:
        abort(make_response(render_error(404, "This link does not work", str(exc))))


def _page(token: str, form: RecipientResponseForm | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    found = _delivery(token)
    session = get_session()
    petition = session.get(Petition, found.petition_id)
    html = render_template(
        "delivery/recipient.html",
        token=token,
        delivery=found,
        petition=petition,
        response=links.recipient_response(session, found),
        form=form or RecipientResponseForm(),
        button=EmptyForm(),
    )
    return html, status


@bp.get("/<token>")
def show(token: str):  # type: ignore[no-untyped-def]
    """The letter and its pack, a receipt button and a response form; records nothing."""
    return _page(token)


@bp.post("/<token>/receipt")
def receipt(token: str) -> Response:
    """Record receipt, the first time only."""
    found = _delivery(token)
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    if links.confirm_receipt(session, found, utcnow()):
        session.commit()
        flash("Thank you: receipt is recorded, and the organizers can see it.", "success")
    else:
        flash("Receipt was already recorded.", "info")
    return redirect(url_for("recipient.show", token=token))


@bp.post("/<token>/response")
def response(token: str):  # type: ignore[no-untyped-def]
    """Publish the recipient's response beside the letter."""
    found = _delivery(token)
    form = RecipientResponseForm()
    if not form.validate():
        return _page(token, form, 400)
    session = get_session()
    try:
        links.post_response(
            session,
            found,
            text=form.text.data,
            responder=form.responder.data or "",
            link=form.link.data or "",
            now=utcnow(),
        )
    except DomainError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _page(token, form, 409)
    session.commit()
    flash("Your response is published beside the letter.", "success")
    return redirect(url_for("recipient.show", token=token))


@bp.get("/<token>/<any('pack.pdf', 'signers.csv', 'manifest.json'):name>")
def pack_file(token: str, name: str) -> Response:
    """One file of the pack; downloading records nothing."""
    found = _delivery(token)
    petition = get_session().get(Petition, found.petition_id)
    files = service.pack_of(get_session(), found)
    return pack_response(files, petition.slug if petition else "letter", name)
