"""Signing: the sign form, confirming by link or code, and withdrawing.

A GET on an emailed link only shows a page with a button; link scanners that fetch
it change nothing and learn nothing about the letter. Only the POST acts.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, render_template

from petitions import tokens
from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.letters import service as letters
from petitions.models import Affiliation, Display, Petition
from petitions.models.errors import DomainError
from petitions.security import CODE_LIMIT, RESEND_LIMIT, SIGN_LIMIT, limiter
from petitions.signing import service as signing
from petitions.signing.forms import CodeForm, ResendForm, SignForm, WithdrawCodeForm
from petitions.tokens import TokenExpired, TokenInvalid, TokenUsed

#: slugs are lower-case ASCII words and dashes; anything else names no letter
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")

bp = Blueprint("signing", __name__)


@bp.after_request
def private(response):  # type: ignore[no-untyped-def]
    """Token pages are never cached, and their URLs never leave the site through Referer
    (within it, Flask-WTF's HTTPS check needs the Referer of the Confirm button's POST)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


#: everything that stops a confirmation, each shown on the problem page
CANNOT_CONFIRM = (
    TokenInvalid,
    TokenExpired,
    TokenUsed,
    signing.AlreadyConfirmed,
    signing.SigningClosed,
)


def _problem(exc: Exception, status: int = 400, resend_handle: str | None = None):  # type: ignore[no-untyped-def]
    """The page for a link or code that cannot be used, offering a fresh email when possible."""
    handle = resend_handle
    if isinstance(exc, TokenExpired) and exc.token.purpose == "confirm_signature":
        handle = exc.token.handle
    already = isinstance(exc, signing.AlreadyConfirmed)
    return render_template(
        "sign/problem.html",
        message=str(exc),
        expired=isinstance(exc, TokenExpired | signing.CodeLocked),
        already=already,
        petition=exc.petition if already else None,  # type: ignore[attr-defined]
        resend_form=ResendForm(handle=handle) if handle else None,
    ), (200 if already else status)


def _open_letter(slug: str) -> Petition:
    """The published letter at `slug`, or 404."""
    if not SLUG.fullmatch(slug):
        abort(404)
    try:
        return letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)


def _form_page(petition: Petition, form: SignForm, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template("sign/form.html", petition=petition, form=form), status


def _check_email(handle: str, petition: Petition | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    """ "Check your email", with the code form for `handle`."""
    page = render_template(
        "sign/check_email.html", petition=petition, code_form=CodeForm(handle=handle)
    )
    return page, status


@bp.get("/p/<slug>/sign")
def sign_form(slug: str):  # type: ignore[no-untyped-def]
    """The sign form, with what signing stores and how to sign safely."""
    petition = _open_letter(slug)
    if not petition.is_open:
        return render_template(
            "sign/problem.html", message="This letter is closed.", petition=None
        ), 410
    return _form_page(petition, SignForm())


@bp.post("/p/<slug>/sign")
@limiter.limit(SIGN_LIMIT)
def sign(slug: str):  # type: ignore[no-untyped-def]
    """Take a signature and answer "check your email", whatever the address's history."""
    petition = _open_letter(slug)
    form = SignForm(letter=petition)
    if not form.validate():
        return _form_page(petition, form, 400)
    session = get_session()
    request = signing.SignRequest(
        email=form.email.data,
        name=form.name.data or "",
        job_title=form.job_title.data,
        team=form.team.data,
        affiliation=Affiliation(form.affiliation.data),
        display=Display(form.display.data),
        updates_email=form.updates_email.data if form.wants_updates.data else None,
    )
    try:
        handle = signing.sign(session, petition, request, utcnow())
    except DomainError as exc:
        session.rollback()
        form.email.errors.append(str(exc))
        return _form_page(petition, form, 400)
    session.commit()
    return _check_email(handle, petition)


@bp.get("/c/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    """Landing page of the confirmation link: a neutral page and a Confirm button."""
    try:
        signing.check_link(get_session(), token, utcnow())
    except CANNOT_CONFIRM as exc:
        return _problem(exc)
    return render_template("sign/confirm.html", form=EmptyForm(), token=token)


@bp.post("/c/<token>")
def confirm(token: str):  # type: ignore[no-untyped-def]
    """Confirm the signature behind the link."""
    if not EmptyForm().validate():
        return _problem(TokenInvalid("The form expired. Please open the link again."))
    session = get_session()
    try:
        result = signing.confirm_by_link(session, token, utcnow())
    except CANNOT_CONFIRM as exc:
        return _problem(exc)
    session.commit()
    return render_template("sign/confirmed.html", result=result)


@bp.post("/confirm/code")
@limiter.limit(CODE_LIMIT)
def confirm_code():  # type: ignore[no-untyped-def]
    """Confirm with the code typed into the "check your email" page."""
    form = CodeForm()
    if not form.validate():
        return render_template("sign/check_email.html", petition=None, code_form=form), 400
    session = get_session()
    try:
        result = signing.confirm_by_code(session, form.handle.data, form.code.data, utcnow())
    except signing.CodeInvalid as exc:
        session.commit()  # the wrong attempt counts
        form.code.errors.append(str(exc))
        return render_template("sign/check_email.html", petition=None, code_form=form), 400
    except signing.CodeLocked as exc:
        session.commit()
        return _problem(exc, resend_handle=form.handle.data)
    except CANNOT_CONFIRM as exc:
        return _problem(exc)
    session.commit()
    return render_template("sign/confirmed.html", result=result)


@bp.post("/confirm/resend")
@limiter.limit(RESEND_LIMIT)
def resend():  # type: ignore[no-untyped-def]
    """Mail a fresh link and code for a pending signature whose old ones expired or died."""
    form = ResendForm()
    session = get_session()
    # Same answer whatever the handle names, with a code form that behaves like a real one.
    handle = signing.resend(session, form.handle.data if form.validate() else None, utcnow())
    session.commit()
    return _check_email(handle)


@bp.get("/w/<token>")
def withdraw_page(token: str):  # type: ignore[no-untyped-def]
    """Landing page of a withdrawal link: explains, and asks for a button press."""
    try:
        tokens.find_by_link(get_session(), signing.WITHDRAW, token).check_usable(utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return _problem(exc)
    return render_template("sign/withdraw.html", form=EmptyForm(), token=token)


@bp.post("/w/<token>")
def withdraw(token: str):  # type: ignore[no-untyped-def]
    """Delete the signature behind the withdrawal link."""
    if not EmptyForm().validate():
        return _problem(TokenInvalid("The form expired. Please open the link again."))
    session = get_session()
    try:
        row = tokens.find_by_link(session, signing.WITHDRAW, token)
        petition = signing.withdraw(session, row, utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return _problem(exc)
    session.commit()
    return render_template("sign/withdrawn.html", petition=petition)


@bp.get("/withdraw")
def withdraw_code_form():  # type: ignore[no-untyped-def]
    """Withdraw with the 16-character code shown after confirming."""
    return render_template("sign/withdraw_code.html", form=WithdrawCodeForm())


@bp.post("/withdraw")
@limiter.limit(CODE_LIMIT)
def withdraw_by_code():  # type: ignore[no-untyped-def]
    """Delete the signature the withdrawal code belongs to."""
    form = WithdrawCodeForm()
    if not form.validate():
        return render_template("sign/withdraw_code.html", form=form), 400
    session = get_session()
    row = tokens.find_by_long_code(session, signing.WITHDRAW, form.code.data)
    if row is None:
        form.code.errors.append("That code does not match any signature. Check it and try again.")
        return render_template("sign/withdraw_code.html", form=form), 400
    try:
        petition = signing.withdraw(session, row, utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return _problem(exc)
    session.commit()
    return render_template("sign/withdrawn.html", petition=petition)
