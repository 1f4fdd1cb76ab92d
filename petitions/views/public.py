"""Public pages: the index of letters, a letter with its sign form, signer safety."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from petitions.db import get_session, utcnow
from petitions.forms import CodeForm, SignForm
from petitions.models import Affiliation, Display, Petition
from petitions.models.errors import DomainError
from petitions.services import counts, letters, signers, signing

bp = Blueprint("public", __name__)


def _published(slug: str) -> Petition:
    try:
        return letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)


def _page_number() -> int:
    page = request.args.get("page", 1, type=int) or 1
    if page < 1 or page > 100_000:
        abort(404)
    return page


def _letter_page(petition: Petition, form: SignForm, status: int = 200):  # type: ignore[no-untyped-def]
    session = get_session()
    letter_counts = counts.read(session, petition.id)
    page = _page_number()
    shown, has_next = signers.list_shown(session, petition, letter_counts, page)
    html = render_template(
        "public/letter.html",
        petition=petition,
        counts=letter_counts,
        form=form,
        signers=shown,
        page=page,
        has_next=has_next,
    )
    # The page lists signers: keep it out of search engines.
    return html, status, {"X-Robots-Tag": "noindex"}


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Published letters, newest first."""
    session = get_session()
    published = letters.list_published(session)
    totals = counts.read_totals(session, [p.id for p in published])
    return render_template("public/index.html", letters=published, totals=totals)


@bp.get("/safety")
def safety():  # type: ignore[no-untyped-def]
    """What is stored about signers, what is not, and how to sign safely."""
    return render_template("public/safety.html")


@bp.get("/p/<slug>")
def letter(slug: str):  # type: ignore[no-untyped-def]
    """A published letter, its count, and (while open) the sign form."""
    return _letter_page(_published(slug), SignForm())


@bp.post("/p/<slug>/sign")
def sign(slug: str):  # type: ignore[no-untyped-def]
    """Take a signature and answer "check your email", whatever the address's history."""
    petition = _published(slug)
    form = SignForm()
    if not form.validate():
        return _letter_page(petition, form, 400)
    session = get_session()
    sign_request = signing.SignRequest(
        email=form.email.data,
        name=form.name.data or "",
        job_title=form.job_title.data,
        team=form.team.data,
        affiliation=Affiliation(form.affiliation.data),
        display=Display(form.display.data),
        updates_email=form.updates_email.data if form.wants_updates.data else None,
    )
    try:
        handle = signing.sign(session, petition, sign_request, utcnow())
    except DomainError as exc:
        form.email.errors.append(str(exc))
        return _letter_page(petition, form, 400)
    session.commit()
    return render_template(
        "sign/check_email.html", petition=petition, code_form=CodeForm(handle=handle)
    )
