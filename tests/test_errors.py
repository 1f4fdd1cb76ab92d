"""Bad input gets a clear page in the site's look: never a 500, never a half-written row."""

from __future__ import annotations

from sqlalchemy import func, select

from petitions import create_app
from petitions.db import new_session
from petitions.models import OutboxMessage, Signature
from tests.conftest import csrf_from, make_config, sign_fields


def _rows(app, model) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_error_pages_share_the_site_look(client):
    for path, status in [("/nope", 404), ("/p/no-such-letter", 404), ("/p/" + "a" * 3000, 404)]:
        response = client.get(path)
        assert response.status_code == status
        assert 'class="site-header"' in response.get_data(as_text=True)
    response = client.get("/confirm/code")
    assert response.status_code == 405
    assert "Allow" in response.headers


def test_post_without_csrf_is_refused_and_changes_nothing(site, app):
    slug = site.letter()
    response = site.client.post(
        f"/p/{slug}/sign",
        data={
            "name": "N",
            "email": "nocsrf@example.net",
            "affiliation": "current",
            "display": "named",
        },
    )
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert _rows(app, Signature) == 0


def test_bad_sign_input_is_a_form_error(site, app):
    slug = site.letter()
    html = site.client.get(f"/p/{slug}/sign").get_data(as_text=True)
    fields = sign_fields(html)
    queued_before = _rows(app, OutboxMessage)
    cases = [
        {"name": "", "email": "ok@example.net"},
        {"name": "Bad", "email": "not-an-address"},
        {"name": "Bad", "email": "a@b@c"},
        {"name": "x" * 500, "email": "ok@example.net"},
        {"name": "Nul\x00byte", "email": "ok@example.net"},
        {"name": "Bad", "email": "ok@example.net", "display": "everyone"},
        {"name": "Bad", "email": "ok@example.net", "wants_updates": "y"},
    ]
    for case in cases:
        data = {**fields, "affiliation": "current", "display": "named", **case}
        response = site.client.post(f"/p/{slug}/sign", data=data)
        assert response.status_code == 400, case
        assert 'class="error"' in response.get_data(as_text=True), case
    assert _rows(app, Signature) == 0
    assert _rows(app, OutboxMessage) == queued_before


def test_oversized_request_is_413(site):
    slug = site.letter()
    html = site.client.get(f"/p/{slug}/sign").get_data(as_text=True)
    response = site.client.post(
        f"/p/{slug}/sign", data={"csrf_token": csrf_from(html), "name": "x" * 300_000}
    )
    assert response.status_code == 413
    assert 'class="site-header"' in response.get_data(as_text=True)


def test_bad_codes_and_handles_are_form_errors(site):
    slug = site.letter()
    html = site.client.get(f"/p/{slug}/sign").get_data(as_text=True)
    token = csrf_from(html)
    for data in [
        {"handle": "", "code": "1234-5678"},
        {"handle": "x" * 100, "code": "1234-5678"},
        {"handle": "made-up", "code": "1234-5678"},
        {"handle": "made-up", "code": "\x00\x01"},
        {"handle": "made-up", "code": "'; DROP TABLE signatures; --"},
    ]:
        response = site.client.post("/confirm/code", data={"csrf_token": token, **data})
        assert response.status_code == 400, data
    for path in ["/c/" + "%00", "/w/garbage", "/account/confirm/garbage"]:
        assert site.client.get(path).status_code in {400, 200, 404}
        assert site.client.get(path).status_code < 500


def test_pages_say_busy_with_503_while_the_database_is_unreachable(site):
    """A logged-in organizer, a reader of the API and a signer each get the site's own 503
    page (JSON under /api/) with Retry-After, and the page itself needs no database."""
    site.organizer()
    session_cookie = site.client.get_cookie("session")
    config = make_config("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", 25)
    client = create_app(config).test_client()
    client.set_cookie("session", session_cookie.value, domain=session_cookie.domain)
    for path in ("/letters/", "/p/some-letter", "/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "5"
        html = response.get_data(as_text=True)
        assert 'class="site-header"' in html and "Busy, please try again" in html
        assert "My letters" not in html
    api = client.get("/api/v1/petitions")
    assert api.status_code == 503
    assert api.get_json()["error"]["status"] == 503
    # Flask-Limiter keeps the later of ours and the end of the API's limit window.
    assert int(api.headers["Retry-After"]) >= 5


def test_an_error_that_escapes_every_handler_is_logged_without_its_path(app, caplog):
    """Flask's own log line for it names the route's rule, never a token link."""

    class Unhandled(Exception):
        pass

    def failing_handler(error: Unhandled):
        raise RuntimeError("the error page itself failed")

    def view(token: str):
        raise Unhandled()

    app.add_url_rule("/c/<token>/fails", "fails", view)
    app.register_error_handler(Unhandled, failing_handler)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # log it, as production does
    response = app.test_client().get("/c/secret-token-value/fails")
    assert response.status_code == 500
    assert 'class="site-header"' in response.get_data(as_text=True)
    assert "Exception on /c/<token>/fails [GET]" in caplog.text
    assert "secret-token-value" not in caplog.text
