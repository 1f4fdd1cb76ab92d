"""Every route, walked from app.url_map: who may reach it, CSRF on every POST, headers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from petitions.db import Base, new_session
from petitions.models import Report
from petitions.moderation import service as moderation
from tests.conftest import csrf_from

#: account pages of the logged-in organizer; everything under organizer/admin is private too
ACCOUNT_ENDPOINTS = {
    "auth.settings",
    "auth.change_email",
    "auth.change_password",
    "auth.logout_everywhere",
    "auth.logout",
}
OWNED_ARGS = {"petition_id", "report_id"}


#: an invitation's page opens for anyone holding the link; accepting it needs a login
TOKEN_PAGES = {"committee.invitation"}
#: the organizers' pages of a feature whose other pages are public
ORGANIZER_ENDPOINTS = {"updates.manage", "updates.write"}


def _private(endpoint: str) -> bool:
    if endpoint in TOKEN_PAGES:
        return False
    if endpoint in ORGANIZER_ENDPOINTS:
        return True
    return endpoint.split(".")[0] in {"organizer", "admin", "delivery", "committee"} or (
        endpoint in ACCOUNT_ENDPOINTS
    )


@pytest.fixture
def world(site, app):
    """Organizer A with a draft, a published letter and a report on it; organizer B; a visitor."""
    site.organizer("a@example.org")
    draft_id = site.draft("A private draft")
    slug = site.publish(site.draft("A public letter"))
    with app.test_request_context(), new_session(app) as session:
        from petitions.letters import service as letters

        petition = letters.get_published(session, slug)
        report = moderation.file_report(
            session, petition, "abusive", "Rude.", petition.published_at
        )
        session.commit()
        report_id = report.id
    other = app.test_client()
    site.organizer("b@example.org", client=other)
    visitor = app.test_client()
    values = {
        "petition_id": draft_id,
        "report_id": report_id,
        "slug": slug,
        "token": "not-a-token",
        "filename": "style.css",
        "target_id": 1,
        "delivery_id": 1,
        "name": "pack.pdf",
        "action_id": 1,
        "invitation_id": 1,
        "member_id": 1,
        "takedown_id": 1,
    }
    return {"a": site.client, "b": other, "visitor": visitor, "values": values}


def _routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _url(rule, values) -> str:
    return rule.build({arg: values[arg] for arg in rule.arguments}, append_unknown=False)[1]


def _call(client, method, url, csrf=None):
    if method == "GET":
        return client.get(url)
    return client.post(url, data={"csrf_token": csrf} if csrf else {})


def test_every_private_route_refuses_strangers(app, world):
    values = world["values"]
    visitor_csrf = csrf_from(world["visitor"].get("/login").get_data(as_text=True))
    b_csrf = csrf_from(world["b"].get("/letters/").get_data(as_text=True))
    checked = 0
    for rule, method in _routes(app):
        url = _url(rule, values)
        response = _call(world["visitor"], method, url, visitor_csrf)
        to_login = response.status_code == 302 and "/login" in response.headers["Location"]
        assert to_login == _private(rule.endpoint), (rule.endpoint, method, response.status_code)
        if _private(rule.endpoint) and (
            OWNED_ARGS & set(rule.arguments) or rule.endpoint.startswith("admin.")
        ):
            answer = _call(world["b"], method, url, b_csrf)
            assert answer.status_code == 404, (rule.endpoint, method, answer.status_code)
            checked += 1
    assert checked >= 10  # the walk did reach the owned and admin routes


def _row_counts(app) -> dict[str, int]:
    with new_session(app, write=False) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


def test_every_post_without_csrf_is_refused_and_changes_nothing(app, world):
    before = _row_counts(app)
    with new_session(app, write=False) as session:
        states = [(r.id, r.resolved_at) for r in session.scalars(select(Report))]
    posts = 0
    for rule, method in _routes(app):
        if method != "POST":
            continue
        response = world["a"].post(_url(rule, world["values"]), data={})
        assert response.status_code == 400, rule.endpoint
        assert "This form has expired" in response.get_data(as_text=True)
        posts += 1
    assert posts >= 20
    assert _row_counts(app) == before
    with new_session(app, write=False) as session:
        assert [(r.id, r.resolved_at) for r in session.scalars(select(Report))] == states
    # Still logged in: the refused logout did nothing either.
    assert world["a"].get("/letters/").status_code == 200


CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def test_security_headers_on_each_kind_of_page(app, world):
    slug = world["values"]["slug"]
    pages = {
        "public": (world["visitor"], f"/p/{slug}"),
        "index": (world["visitor"], "/"),
        "error": (world["visitor"], "/no/such/page"),
        "organizer": (world["a"], "/letters/"),
        "account": (world["a"], "/account"),
        "login": (world["visitor"], "/login"),
        "token": (world["visitor"], "/c/some-token"),
        "withdraw": (world["visitor"], "/w/some-token"),
        "reset": (world["visitor"], "/account/reset/some-token"),
        "account-confirm": (world["visitor"], "/account/confirm/some-token"),
    }
    for kind, (client, path) in pages.items():
        headers = client.get(path).headers
        assert headers["Content-Security-Policy"] == CSP, kind
        assert headers["X-Content-Type-Options"] == "nosniff", kind
        assert headers["X-Frame-Options"] == "DENY", kind
        assert "Strict-Transport-Security" not in headers, kind  # plain http here
        token_page = kind in {"token", "withdraw", "reset", "account-confirm"}
        expected = "same-origin" if token_page else "strict-origin-when-cross-origin"
        assert headers["Referrer-Policy"] == expected, kind
        if token_page or kind in {"organizer", "account", "login"}:
            assert headers["Cache-Control"] == "no-store", kind
    secure = world["visitor"].get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_pages_carry_no_inline_script(app, world):
    slug = world["values"]["slug"]
    for client, path in [
        (world["visitor"], "/"),
        (world["visitor"], f"/p/{slug}"),
        (world["a"], "/letters/"),
        (world["a"], "/account"),
        (world["a"], "/letters/new"),
    ]:
        html = client.get(path).get_data(as_text=True)
        assert "<script" not in html
        assert " style=" not in html
        assert " onclick=" not in html


def test_public_answers_carry_the_security_headers(app, world):
    """Public answers, which shared caches keep, carry the security headers, HSTS only over
    https."""
    slug = world["values"]["slug"]
    for path in (f"/p/{slug}", f"/api/v1/petitions/{slug}", f"/p/{slug}/badge.svg", "/feed.atom"):
        for _ in range(2):
            plain = app.test_client().get(path)
            assert plain.status_code == 200, path
            assert plain.headers["Content-Security-Policy"] == CSP, path
            assert plain.headers["X-Frame-Options"] == "DENY", path
            assert plain.headers["X-Content-Type-Options"] == "nosniff", path
            assert "Strict-Transport-Security" not in plain.headers, path
            secure = app.test_client().get(path, base_url="https://localhost")
            assert secure.headers["Strict-Transport-Security"].startswith("max-age="), path


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_limits_apply_where_declared_and_only_there(app, world):
    """Flask-Limiter's hooks are skipped on endpoints without a limit; the limits stay."""
    visitor, slug = world["visitor"], world["values"]["slug"]
    for path in ("/healthz", f"/p/{slug}", f"/p/{slug}/badge.svg"):
        assert "X-RateLimit-Limit" not in visitor.get(path).headers, path
    api = visitor.get(f"/api/v1/petitions/{slug}")
    assert api.headers["X-RateLimit-Limit"] == "300"
    assert api.headers["X-RateLimit-Remaining"] == "299"
    html = visitor.get(f"/p/{slug}/sign").get_data(as_text=True)
    statuses = [
        visitor.post(f"/p/{slug}/sign", data={"csrf_token": csrf_from(html)}).status_code
        for _ in range(11)
    ]
    assert statuses == [400] * 10 + [429]
