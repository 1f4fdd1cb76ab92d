"""Public pages: the index of letters, a letter with its numbers and sign form, its growth
chart and count history, and signer safety.

Every GET here carries an ETag and answers 304 when nothing changed (see `caching`); the
pages read the session, so browsers check back each time, while the chart and the CSV may
be cached for a few seconds. None of them counts signature rows.

A letter's page is the same for every anonymous visitor but for the sign form's CSRF token
and start stamp, so for `READ_CACHE_SECONDS` it is rendered once per process and page of
signers, and each visitor gets that rendering with their own token and stamp spliced in.
Logged-in visitors, and anyone with a message waiting, get their own rendering. Visitors
with no cookie at all are then answered before Flask (see `petitions.firstvisit`).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, current_app, make_response, render_template, request
from flask import session as browser_session
from flask_wtf.csrf import generate_csrf

from petitions import microcache
from petitions.signing import pages as signer_pages
from petitions.caching import PageWithHoles, conditional, shared_page_cache
from petitions.db import end_reads, get_session, utcnow
from petitions.fields import form_started
from petitions.firstvisit import FIRST_VISIT, FirstVisit, is_first_visit
from petitions.letters import service as letters
from petitions.models import Affiliation, Display, Petition
from petitions.models.errors import DomainError
from petitions.security import SIGN_LIMIT, limiter, limits_apply
from petitions.signing import service as signing
from petitions.signing.forms import SignForm
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


def _render_letter(petition: Petition, form: SignForm, page: int) -> str:
    """The letter's page as HTML, counted now."""
    session = get_session()
    now = utcnow()
    letter_counts = counts.read(session, petition.id)
    shown, has_next = signers.list_shown(session, petition, letter_counts, page)
    recorded = history.sampled_rows(session, petition, chart.end_of(petition, now), points=8)
    return render_template(
        "public/letter.html",
        petition=petition,
        counts=letter_counts,
        companies=tallies.by_company(petition, letter_counts),
        company_names=list(tallies.companies(petition)),
        last_24h=history.growth(session, petition, letter_counts.total, now),
        as_of=now,
        chart_summary=chart.build(petition, [], letter_counts, now).summary,
        history=tallies.history_lines(petition, recorded[::-1]),
        form=form,
        signers=shown,
        page=page,
        has_next=has_next,
    )


def _letter_page(petition: Petition, form: SignForm, status: int = 200) -> Response:
    html = _render_letter(petition, form, _page_number())
    # The page lists signers: keep it out of search engines.
    response = make_response(html, status, {"X-Robots-Tag": "noindex"})
    return conditional(response, private=True) if request.method == "GET" else response


def _anonymous_letter_page(slug: str, pages: microcache.TimedStore) -> Response:
    """The letter's page from this process's rendering of it, with this visitor's token."""
    page = _page_number()
    key = (slug, page)
    rendered: PageWithHoles | None = pages.get(key)
    if rendered is None:
        petition = published(slug)
        form = SignForm()
        html = _render_letter(petition, form, page)
        rendered = PageWithHoles.cut(
            html, {"csrf_token": generate_csrf(), "started": form.started.data}
        )
        pages.put(key, rendered, rendered.size)
    token, stamp = generate_csrf(), form_started()
    html = rendered.fill({"csrf_token": token, "started": stamp})
    # The page lists signers: keep it out of search engines.
    response = make_response(html, 200, {"X-Robots-Tag": "noindex"})
    if request.method != "GET":
        return response
    expires = pages.expiry(key)
    if expires is not None and is_first_visit(request.environ) and not limits_apply():
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        request.environ[FIRST_VISIT] = FirstVisit(
            rendered, expires, browser_session[field], token, stamp, form_started
        )
    return conditional(response, private=True, digest=rendered.digest)


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
    html = render_template(
        "public/index.html", listing=letter_page, sort=sort, sorts=list(listing.Sort)
    )
    return conditional(make_response(html), private=True)


@bp.get("/safety")
def safety() -> Response:
    """What is stored about signers, what is not, and how to sign safely."""
    return conditional(make_response(render_template("public/safety.html")), private=True)


@bp.get("/p/<slug>")
def letter(slug: str) -> Response:
    """A published letter, its numbers, and (while open) the sign form."""
    if not SLUG.fullmatch(slug):
        abort(404)
    pages = shared_page_cache()
    if pages is not None:
        return _anonymous_letter_page(slug, pages)
    return _letter_page(published(slug), SignForm())


@bp.get("/p/<slug>/chart.svg")
@microcache.shared
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
    return conditional(make_response(html), private=True)


@bp.get("/p/<slug>/history.csv")
@microcache.shared
def count_history_csv(slug: str) -> Response:
    """The whole recorded history as CSV, oldest first, for anyone to audit."""
    petition = published(slug)
    rows = history.all_rows(get_session(), petition.id)
    response = Response(tallies.history_csv(petition, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{petition.slug}-count-history.csv"'
    )
    return conditional(response)


@bp.post("/p/<slug>/sign")
@limiter.limit(SIGN_LIMIT)
def sign(slug: str):  # type: ignore[no-untyped-def]
    """Take a signature and answer "check your email", whatever the address's history."""
    rules = _signing_rules(slug) if SLUG.fullmatch(slug) else None
    if rules is None:
        abort(404)
    form = SignForm()
    if not form.validate():
        return _letter_page(published(slug), form, 400)
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
        handle = signing.sign(session, rules, sign_request, utcnow())
    except DomainError as exc:
        form.email.errors.append(str(exc))
        return _letter_page(published(slug), form, 400)
    session.commit()
    return signer_pages.check_email(rules.letter, handle)


def _signing_rules(slug: str) -> signing.LetterRules | None:
    """The letter's signing rules, kept with this process's shared pages
    (`signing.kept_rules`)."""
    cache = microcache.for_app(current_app)
    store = cache.pages if cache is not None and cache.seconds else None

    def load() -> signing.LetterRules | None:
        rules = signing.rules_for(get_session(write=False), slug)
        end_reads()
        return rules

    return signing.kept_rules(store, slug, load)
