"""The public JSON API, v1: published letters and their verified counts, read only.

No key and no cookies; any site may read it (CORS `*`). Answers are the same for everyone,
so shared caches may keep them a few seconds (`petitions.caching`). Every answer is described by the
OpenAPI document at /api/v1/openapi.json; errors are JSON (see `petitions.errors`), 400
for a bad parameter and 404 for a slug that names no published letter.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for

from petitions.caching import conditional
from petitions.db import get_session, utcnow
from petitions.delivery import timeline
from petitions.models import CountSnapshot, Petition
from petitions.public.views import published
from petitions.tallies import counts, history, listing
from petitions.tallies import summary as tallies

bp = Blueprint("api", __name__, url_prefix="/api/v1")

WHOLE_NUMBER = re.compile(r"[0-9]{1,7}")


@bp.after_app_request
def open_to_every_origin(response: Response) -> Response:
    """Let any site read the API from the browser; no credentials are ever involved."""
    if request.path.startswith("/api/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "ETag"
    return response


def _number(name: str, default: int, highest: int) -> int:
    """A whole-number query parameter from 1 to `highest`; 400 otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not WHOLE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= highest:
        abort(400)
    return int(raw)


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _absolute(endpoint: str, **values: Any) -> str:
    return current_app.config["PUBLIC_URL"] + url_for(endpoint, **values)


def _summary(petition: Petition, total: int) -> dict[str, Any]:
    return {
        "slug": petition.slug,
        "title": petition.title,
        "addressed_to": petition.addressed_to,
        "state": str(petition.state),
        "url": _absolute("public.letter", slug=petition.slug),
        "api_url": _absolute("api.petition", slug=petition.slug),
        "published_at": _time(petition.published_at),
        "closed_at": _time(petition.closed_at),
        "goal": petition.goal,
        "signature_count": total,
    }


def _employees(tallies_by_domain: list[tallies.CompanyTally]) -> list[dict[str, Any]]:
    return [
        {
            "company": tally.company,
            "domain": tally.domains[0],
            "count": tally.total,
            "current": tally.current,
            "former": tally.former,
            "contractor": tally.contractor,
        }
        for tally in tallies_by_domain
    ]


def _point(petition: Petition, row: CountSnapshot) -> dict[str, Any]:
    return {
        "recorded_at": _time(row.recorded_at),
        "kind": str(row.kind),
        "milestone": row.milestone,
        "signature_count": row.total,
        "supporters": row.supporters,
        "employees": _employees(tallies.recorded_by_domain(petition, row)),
    }


def _answer(payload: dict[str, Any], volatile: tuple[str, ...] = ()) -> Response:
    """JSON with an ETag over everything but the `volatile` keys (times of reading)."""
    stable = {key: value for key, value in payload.items() if key not in volatile}
    return conditional(jsonify(payload), json.dumps(stable, sort_keys=True))


def _page_links(
    endpoint: str, page: int, per_page: int, has_next: bool, **values: Any
) -> tuple[str | None, str | None]:
    after = _absolute(endpoint, page=page + 1, per_page=per_page, **values) if has_next else None
    before = _absolute(endpoint, page=page - 1, per_page=per_page, **values) if page > 1 else None
    return after, before


@bp.get("/petitions")
def petitions() -> Response:
    """Published letters, newest first, a page at a time."""
    page = _number("page", 1, 100_000)
    per_page = _number("per_page", 20, 100)
    found = listing.list_letters(get_session(), listing.Sort.NEWEST, page, per_page, utcnow())
    after, before = _page_links("api.petitions", page, per_page, page < found.pages)
    return _answer(
        {
            "petitions": [_summary(item.petition, item.total) for item in found.letters],
            "page": page,
            "per_page": per_page,
            "total": found.count,
            "next": after,
            "previous": before,
        }
    )


@bp.get("/petitions/<slug>")
def petition(slug: str) -> Response:
    """One letter with its verified counts: total, per employer domain, supporters."""
    found = published(slug)
    session = get_session()
    now = utcnow()
    letter_counts = counts.read(session, found.id)
    return _answer(
        {
            **_summary(found, letter_counts.total),
            "employees": _employees(tallies.by_domain(found, letter_counts)),
            "supporters": letter_counts.supporters,
            "last_24h": history.growth(session, found, letter_counts.total, now),
            "history_url": _absolute("api.history", slug=found.slug),
            "timeline": [event.as_json() for event in timeline.events(session, found)],
            "updated_at": _time(now),
        },
        volatile=("updated_at",),
    )


@bp.get("/petitions/<slug>/history", endpoint="history")
def history_series(slug: str) -> Response:
    """The letter's recorded counts as a time series, oldest first."""
    found = published(slug)
    page = _number("page", 1, 100_000)
    per_page = _number("per_page", 500, 1000)
    rows = history.rows_page(get_session(), found.id, page, per_page)
    after, before = _page_links("api.history", page, per_page, rows.has_next, slug=found.slug)
    return _answer(
        {
            "slug": found.slug,
            "url": _absolute("public.letter", slug=found.slug),
            "points": [_point(found, row) for row in rows.rows],
            "page": page,
            "per_page": per_page,
            "next": after,
            "previous": before,
        }
    )


@cache
def _openapi_document(template_folder: str) -> dict[str, Any]:
    return json.loads((Path(template_folder) / "api" / "openapi.json").read_text())


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document describing this API."""
    document = _openapi_document(str(current_app.template_folder))
    return conditional(jsonify(document), json.dumps(document, sort_keys=True))
