"""Signing with a message the signer sends themself: a phrase, then the saved message.

The upload is read from memory: the app's MAX_CONTENT_LENGTH (256 KB) is below the size at
which Werkzeug spools a file part to disk (500 KB), and the bytes are dropped after the check.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, session, url_for
from flask_wtf.file import FileField
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import SubmitField, TextAreaField
from wtforms.validators import Length, Optional

from petitions.accounts.forms import EmptyForm
from petitions.db import get_session, utcnow
from petitions.errors import render_error
from petitions.letters import service as letters
from petitions.models import Affiliation, Display, Petition
from petitions.models.proof import PhraseExpired, PhraseUsed
from petitions.security import CODE_LIMIT, SIGN_LIMIT, limiter
from petitions.signing import dkim, sent_proof
from petitions.signing import service as signing
from petitions.signing.forms import SignForm

bp = Blueprint("proof", __name__)

#: the session key holding this browser's phrase: its letter, handle and text
SESSION_KEY = "proof_phrase"


class ProofForm(SignForm):
    """The sign form without an address (the message proves it), plus the saved message."""

    email = None
    message_file = FileField("Upload the saved message (.eml)")
    message_text = TextAreaField(
        "Or paste the whole original message",
        validators=[Optional(), Length(max=dkim.MAX_MESSAGE_BYTES)],
        render_kw={"rows": 6, "spellcheck": "false", "autocomplete": "off"},
    )
    submit = SubmitField("Check my message and sign")


@bp.after_request
def private(response):  # type: ignore[no-untyped-def]
    """Phrase pages are never cached and never leave the site through Referer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge):  # type: ignore[no-untyped-def]
    """An upload over the limit: said plainly, and nothing of it kept."""
    return render_error(
        413,
        "This message is too large",
        "Saved messages of more than 200 KB are not accepted. Send a short message with only"
        " the phrase and no attachments, then upload that one. Nothing was saved.",
    )


def _phrase_for(petition: Petition) -> dict[str, str] | None:
    """This browser's phrase for the letter, if it has one."""
    held = session.get(SESSION_KEY)
    return held if isinstance(held, dict) and held.get("letter") == petition.id else None


def _page(
    petition: Petition, form: ProofForm | None = None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    """The proof page: how it works, this browser's phrase, and the upload form."""
    return render_template(
        "sign/proof.html",
        petition=petition,
        phrase=_phrase_for(petition),
        form=form or ProofForm(),
        phrase_form=EmptyForm(),
        error=error,
    ), status


def _proof_letter(slug: str) -> Petition | None:
    """The open letter at `slug` that names companies, or None when it takes no proofs."""
    try:
        petition = letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)
    return petition if petition.is_open and petition.domains else None


def _closed() -> tuple[str, int]:
    """The answer for a letter that is closed or names no company."""
    return render_template(
        "sign/problem.html",
        message="This letter does not take signatures proven by a sent message.",
        petition=None,
    ), 410


@bp.get("/p/<slug>/sign/proof")
def start(slug: str):  # type: ignore[no-untyped-def]
    """Explain the sent-message proof, and show this browser's phrase if it has one."""
    petition = _proof_letter(slug)
    return _closed() if petition is None else _page(petition)


@bp.post("/p/<slug>/sign/proof/phrase")
@limiter.limit(SIGN_LIMIT)
def new_phrase(slug: str):  # type: ignore[no-untyped-def]
    """Give this browser a fresh one-time phrase (valid for an hour)."""
    petition = _proof_letter(slug)
    if petition is None:
        return _closed()
    if not EmptyForm().validate():
        return _page(petition, error="The form expired. Please press the button again.", status=400)
    db = get_session()
    handle, phrase = sent_proof.issue_phrase(db, petition, utcnow())
    db.commit()
    session[SESSION_KEY] = {"letter": petition.id, "handle": handle, "phrase": phrase}
    return redirect(url_for("proof.start", slug=petition.slug) + "#phrase", code=303)


@bp.post("/p/<slug>/sign/proof")
@limiter.limit(CODE_LIMIT)
def prove(slug: str):  # type: ignore[no-untyped-def]
    """Check the uploaded message and, if it proves a work address, count the signature."""
    petition = _proof_letter(slug)
    if petition is None:
        return _closed()
    form = ProofForm(letter=petition)
    if not form.validate():
        return _page(petition, form, status=400)
    upload = form.message_file.data
    raw = upload.read(dkim.MAX_MESSAGE_BYTES + 1) if upload else b""
    if not raw.strip() and form.message_text.data:
        raw = form.message_text.data.encode("utf-8", "replace")
    if not raw.strip():
        return _page(petition, form, "Upload the saved message, or paste it.", status=400)
    held = _phrase_for(petition) or {}
    details = signing.SignRequest(
        email="",
        name=form.name.data or "",
        job_title=form.job_title.data,
        team=form.team.data,
        affiliation=Affiliation(form.affiliation.data),
        display=Display(form.display.data),
        updates_email=form.updates_email.data if form.wants_updates.data else None,
    )
    db = get_session()
    try:
        result = sent_proof.prove(db, petition, held.get("handle"), raw, details, utcnow())
    except signing.AlreadyConfirmed as exc:
        db.commit()  # the phrase is spent; the signature was already counted
        session.pop(SESSION_KEY, None)
        return render_template("sign/problem.html", already=True, petition=exc.petition)
    except (PhraseUsed, PhraseExpired) as exc:
        db.rollback()
        session.pop(SESSION_KEY, None)
        return _page(petition, form, str(exc), status=400)
    except dkim.DnsUnavailable as exc:
        db.rollback()
        return _page(petition, form, str(exc), status=503)
    except (dkim.ProofRefused, signing.SigningClosed, signing.DomainNotAllowed) as exc:
        db.rollback()
        return _page(petition, form, str(exc), status=400)
    db.commit()
    session.pop(SESSION_KEY, None)
    return render_template("sign/confirmed.html", result=result)
