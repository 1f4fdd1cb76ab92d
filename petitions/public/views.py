"""Public pages: the index of letters, a letter with its numbers, its growth chart and count
history, and signer safety.

Every page here is the same for every anonymous reader (no cookie, no form token), so nginx
and browsers may keep it a few seconds (`petitions.caching`); the sign form is a page of its
own (`petitions.signing`). None of them counts signature rows.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, make_response, render_template, request

from petitions.caching import conditional
from petitions.committee import service as committee
from petitions.db import get_session, utcnow
from petitions.delivery import status as delivery_status
from petitions.letters import service as letters
from petitions.models import Petition
from petitions.tallies import chart, counts, history, listing, signers
from petitions.tallies import summary as tallies

bp = Blueprint("public", __name__)

LETTERS_PER_PAGE = 20
HISTORY_PER_PAGE = 100
#: slugs are lower-case ASCII words and dashes; anything else names no letter
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")


def published(slug: str) -> Petition:
    """The letter the public may see under `slug`, or 404."""
    if not SLUG.fullmatch(slug):
        abort(404)
    try:
        return letters.get_published(get_session(), slug)
    except letters.NotFound:
        abort(404)


def _page_number() -> int:
    """The `page` query parameter: 1 when absent, 404 unless a whole number from 1."""
    raw = request.args.get("page", "1")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        abort(404)
    return int(raw)


def _page(html: str) -> Response:
    """A public page; pages listing signers stay out of search engines."""
    return conditional(make_response(html), page=True)


@bp.get("/")
def index() -> Response:
    """Published letters: newest, most signed or fastest growing; a page at a time."""
    try:
        sort = listing.Sort(request.args.get("sort", listing.Sort.NEWEST))
    except ValueError:
        abort(400)
    page = _page_number()
    letter_page = listing.list_letters(get_session(), sort, page, LETTERS_PER_PAGE, utcnow())
    if page > letter_page.pages:
        abort(404)
    return _page(
        render_template(
            "public/index.html", listing=letter_page, sort=sort, sorts=list(listing.Sort)
        )
    )


@bp.get("/safety")
def safety() -> Response:
    """What is stored about signers, what is not, and how to sign safely."""
    return _page(render_template("public/safety.html"))


@bp.get("/p/<slug>")
def letter(slug: str) -> Response:
    """A published letter, its numbers, its signers a page at a time, and a link to sign."""
    petition = published(slug)
    page = _page_number()
    session = get_session()
    now = utcnow()
    letter_counts = counts.read(session, petition.id)
    shown, has_next = signers.list_shown(session, petition, letter_counts, page)
    recorded = history.sampled_rows(session, petition, chart.end_of(petition, now), points=8)
    html = render_template(
        "public/letter.html",
        petition=petition,
        counts=letter_counts,
        companies=tallies.by_company(petition, letter_counts),
        company_names=list(tallies.companies(petition)),
        last_24h=history.growth(session, petition, letter_counts.total, now),
        as_of=now,
        chart_summary=chart.build(petition, [], letter_counts, now).summary,
        history=tallies.history_lines(petition, recorded[::-1]),
        signers=shown,
        page=page,
        has_next=has_next,
        record=delivery_status.for_letter(session, petition, now),
        listing=listing.status(petition, letter_counts),
        organizers=committee.public_organizers(session, petition.id),
    )
    response = _page(html)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/p/<slug>/chart.svg")
def growth_chart(slug: str) -> Response:
    """The letter's growth chart as an SVG image (redrawn at most once a minute)."""
    petition = published(slug)
    session = get_session()
    now = utcnow().replace(second=0, microsecond=0)
    letter_counts = counts.read(session, petition.id)
    rows = history.sampled_rows(session, petition, chart.end_of(petition, now))
    svg = chart.build(petition, rows, letter_counts, now).svg()
    return conditional(Response(svg, mimetype="image/svg+xml"))


@bp.get("/p/<slug>/history")
def count_history(slug: str) -> Response:
    """Every recorded count of the letter, newest first, a page at a time."""
    petition = published(slug)
    page = _page_number()
    rows = history.rows_page(get_session(), petition.id, page, HISTORY_PER_PAGE, newest_first=True)
    if page > 1 and not rows.rows:
        abort(404)
    html = render_template(
        "public/history.html",
        petition=petition,
        history=tallies.history_lines(petition, rows.rows),
        company_names=list(tallies.companies(petition)),
        page=page,
        has_next=rows.has_next,
    )
    return _page(html)


@bp.get("/p/<slug>/history.csv")
def count_history_csv(slug: str) -> Response:
    """The whole recorded history as CSV, oldest first, for anyone to audit."""
    petition = published(slug)
    rows = history.all_rows(get_session(), petition.id)
    response = Response(tallies.history_csv(petition, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{petition.slug}-count-history.csv"'
    )
    return conditional(response)
