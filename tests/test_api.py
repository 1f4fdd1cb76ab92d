"""The JSON API v1: what it says, that it matches its OpenAPI document, and how it fails."""

from __future__ import annotations

from datetime import timedelta

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import select, update

from petitions.db import new_session, utcnow
from petitions.models import Petition
from petitions.tallies import history
from tests.test_tallies import EMPLOYERS, _record, _sign_and_confirm

EXAMPLE_SLUG = "drop-the-ice-contract"  # the example in the OpenAPI document


def _letters(site, app) -> tuple[str, str]:
    """An open letter with employees, a supporter and some history; a closed one; a draft."""
    slug = site.letter(employers=EMPLOYERS)
    assert slug == EXAMPLE_SLUG
    _sign_and_confirm(site, slug, "a@example.com", affiliation="current")
    _sign_and_confirm(site, slug, "b@eng.example.com", affiliation="former")
    _sign_and_confirm(site, slug, "c@other.org", affiliation="contractor")
    _sign_and_confirm(site, slug, "d@elsewhere.net")
    closed = site.publish(site.draft("Closed letter"))
    site.draft("Draft letter")
    with new_session(app) as session:
        session.execute(
            update(Petition)
            .where(Petition.slug == slug)
            .values(published_at=utcnow() - timedelta(days=2))
        )
        session.scalars(select(Petition).where(Petition.slug == closed)).one().close(utcnow())
        session.commit()
    _record(app, utcnow() - timedelta(days=1, hours=1))
    _record(app, utcnow())
    return slug, closed


def _validator(client, name: str):  # type: ignore[no-untyped-def]
    """A JSON Schema validator for one of the document's component schemas."""
    document = client.get("/api/v1/openapi.json").get_json()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


@pytest.fixture
def api_schema(site, app):  # type: ignore[no-untyped-def]
    """The API's own OpenAPI document, loaded from the app in-process, over real data."""
    _letters(site, app)
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_response_matches_the_openapi_document(case):
    """Schemathesis generates valid and invalid requests for every operation and checks
    each answer against the document: status, content type, schema, no server errors."""
    case.call_and_validate()


def test_letter_detail_has_every_count_the_press_needs(site, app):
    slug, _ = _letters(site, app)
    response = site.client.get(f"/api/v1/petitions/{slug}")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.get_json()
    _validator(site.client, "Petition").validate(body)
    assert body["slug"] == slug
    assert body["title"] == "Drop the ICE contract"
    assert body["addressed_to"] == "Satya Nadella, CEO, Microsoft"
    assert body["state"] == "open"
    assert body["url"] == f"http://undersigned.test/p/{slug}"
    assert body["goal"] == 100
    assert body["closed_at"] is None
    assert body["signature_count"] == 4
    assert body["supporters"] == 1
    assert body["employees"] == [
        {
            "company": "Example Corp",
            "domain": "example.com",
            "count": 2,
            "current": 1,
            "former": 1,
            "contractor": 0,
        },
        {
            "company": "Other Org",
            "domain": "other.org",
            "count": 1,
            "current": 0,
            "former": 0,
            "contractor": 1,
        },
    ]
    assert body["last_24h"] == 0  # everything was recorded more than a day ago
    assert body["updated_at"].endswith("Z")


def test_list_is_newest_first_paginated_and_never_shows_drafts(site, app):
    slug, closed = _letters(site, app)
    validator = _validator(site.client, "PetitionList")
    first = site.client.get("/api/v1/petitions?per_page=1").get_json()
    validator.validate(first)
    assert [p["slug"] for p in first["petitions"]] == [closed]
    assert first["petitions"][0]["state"] == "closed"
    assert first["petitions"][0]["closed_at"].endswith("Z")
    assert first["total"] == 2
    assert first["previous"] is None
    assert first["next"] == "http://undersigned.test/api/v1/petitions?page=2&per_page=1"
    second = site.client.get("/api/v1/petitions?page=2&per_page=1").get_json()
    assert [p["slug"] for p in second["petitions"]] == [slug]
    assert second["petitions"][0]["signature_count"] == 4
    assert second["next"] is None
    everything = site.client.get("/api/v1/petitions").get_json()
    assert [p["title"] for p in everything["petitions"]] == [
        "Closed letter",
        "Drop the ICE contract",
    ]


def test_history_is_a_time_series(site, app):
    slug, _ = _letters(site, app)
    body = site.client.get(f"/api/v1/petitions/{slug}/history").get_json()
    _validator(site.client, "History").validate(body)
    points = body["points"]
    assert [p["kind"] for p in points] == ["hourly", "hourly"]
    assert [p["signature_count"] for p in points] == [4, 4]
    assert points[0]["recorded_at"] < points[1]["recorded_at"]
    assert points[0]["employees"][0] == {
        "company": "Example Corp",
        "domain": "example.com",
        "count": 2,
        "current": 1,
        "former": 1,
        "contractor": 0,
    }
    one = site.client.get(f"/api/v1/petitions/{slug}/history?per_page=1").get_json()
    assert len(one["points"]) == 1 and one["next"].endswith("page=2&per_page=1")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/petitions/no-such-letter", 404),
        ("/api/v1/petitions/no-such-letter/history", 404),
        ("/api/v1/petitions/%00%00", 404),
        ("/api/v1/petitions/" + "a" * 300, 404),
        ("/api/v1/nothing-here", 404),
        ("/api/v1/petitions?page=0", 400),
        ("/api/v1/petitions?page=-1", 400),
        ("/api/v1/petitions?page=abc", 400),
        ("/api/v1/petitions?page=1.5", 400),
        ("/api/v1/petitions?per_page=101", 400),
        ("/api/v1/petitions?per_page=%00", 400),
        (f"/api/v1/petitions/{EXAMPLE_SLUG}/history?per_page=1001", 400),
    ],
)
def test_errors_are_json_with_the_right_status(site, app, path, status):
    _letters(site, app) if "history" in path and EXAMPLE_SLUG in path else None
    response = site.client.get(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    _validator(site.client, "Error").validate(response.get_json())
    assert response.get_json()["error"]["status"] == status


def test_drafts_and_hidden_letters_are_404(site, app):
    site.organizer()
    draft_id = site.draft("Secret draft")
    assert site.client.get("/api/v1/petitions/secret-draft").status_code == 404
    slug = site.publish(draft_id)
    assert site.client.get(f"/api/v1/petitions/{slug}").status_code == 200
    with new_session(app) as session:
        session.execute(update(Petition).where(Petition.slug == slug).values(hidden_at=utcnow()))
        session.commit()
    assert site.client.get(f"/api/v1/petitions/{slug}").status_code == 404
    assert site.client.get(f"/api/v1/petitions/{slug}/history").status_code == 404


def test_the_api_is_read_only_and_open_to_other_sites(site, app):
    slug, _ = _letters(site, app)
    refused = site.client.post(f"/api/v1/petitions/{slug}")
    assert refused.status_code == 405
    assert refused.mimetype == "application/json"
    assert "GET" in refused.headers["Allow"]
    preflight = site.client.options(
        f"/api/v1/petitions/{slug}",
        headers={"Origin": "https://news.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    plain = app.test_client().get(f"/api/v1/petitions/{slug}")
    assert "Set-Cookie" not in plain.headers
    assert "Access-Control-Allow-Credentials" not in plain.headers


def test_openapi_document_is_3_1_and_names_every_route(site, app):
    document = site.client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    api_rules = {
        rule.rule.replace("<slug>", "{slug}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert api_rules == set(document["paths"])
    with new_session(app, write=False) as session:
        assert history.all_rows(session, 1) == []
