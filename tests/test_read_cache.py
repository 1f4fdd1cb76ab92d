"""The per-process read cache: public answers kept for READ_CACHE_SECONDS, never longer, never
shared between sessions, emptied by writes in the same process, and still rate limited.

A second app on the same database stands for another gunicorn worker: it sees writes made
through the first only once its copy is older than the TTL. Time is a clock the test moves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask

from petitions import create_app
from petitions.db import get_engine
from petitions.firstvisit import FirstVisitPage
from petitions.microcache import TimedStore
from petitions.security import API_LIMIT
from tests.conftest import csrf_from, hidden, make_config

pytestmark = pytest.mark.config(READ_CACHE_SECONDS=1.0)


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Flask) -> Clock:
    """The first app's cache clock."""
    moved = Clock()
    app.extensions["microcache"].clock = moved
    return moved


@pytest.fixture
def other_worker(app: Flask, mailbox) -> Iterator[tuple[Flask, Clock]]:
    """Another process of the site on the same database, with its own cache and clock."""
    config = make_config(app.config["DATABASE_URL"], mailbox.port, READ_CACHE_SECONDS=1.0)
    other = create_app(config)
    other_clock = Clock()
    other.extensions["microcache"].clock = other_clock
    yield other, other_clock
    get_engine(other).dispose()


def _letter(site) -> str:
    return site.letter(employers="example.com Example Corp")


def _sign_and_confirm(site, slug: str, email: str) -> None:
    page = site.sign(slug, email, client=site.app.test_client())
    assert page.status_code == 200, page.get_data(as_text=True)
    assert "Your signature counts" in site.confirm_link(email).get_data(as_text=True)


def _count_on_page(html: str) -> int:
    match = re.search(r'id="verified-count">([\d,]+)<', html)
    assert match
    return int(match.group(1).replace(",", ""))


def test_another_process_sees_a_new_count_once_its_copy_is_older_than_the_ttl(
    site, clock, other_worker
):
    slug = _letter(site)
    other, other_clock = other_worker
    reader = other.test_client()
    api, badge, page = f"/api/v1/petitions/{slug}", f"/p/{slug}/badge.svg", f"/p/{slug}"
    first = reader.get(api)
    assert first.get_json()["signature_count"] == 0
    assert "0 verified signatures" in reader.get(badge).get_data(as_text=True)
    assert _count_on_page(reader.get(page).get_data(as_text=True)) == 0

    _sign_and_confirm(site, slug, "ada@example.com")
    other_clock.now += 0.9
    again = reader.get(api)
    assert again.get_json()["signature_count"] == 0
    assert again.get_data() == first.get_data()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert "0 verified signatures" in reader.get(badge).get_data(as_text=True)
    assert _count_on_page(reader.get(page).get_data(as_text=True)) == 0

    other_clock.now += 0.2
    assert reader.get(api).get_json()["signature_count"] == 1
    assert "1 verified signature<" in reader.get(badge).get_data(as_text=True)
    assert _count_on_page(reader.get(page).get_data(as_text=True)) == 1


def test_a_write_in_the_same_process_empties_its_cache(site, clock):
    slug = _letter(site)
    reader = site.app.test_client()
    assert reader.get(f"/api/v1/petitions/{slug}").get_json()["signature_count"] == 0
    assert _count_on_page(reader.get(f"/p/{slug}").get_data(as_text=True)) == 0
    _sign_and_confirm(site, slug, "ada@example.com")
    assert reader.get(f"/api/v1/petitions/{slug}").get_json()["signature_count"] == 1
    assert _count_on_page(reader.get(f"/p/{slug}").get_data(as_text=True)) == 1


def test_a_replayed_answer_has_the_headers_of_the_first(site, clock):
    slug = _letter(site)
    reader = site.app.test_client()
    for path in (
        f"/api/v1/petitions/{slug}",
        f"/p/{slug}/badge.svg",
        f"/p/{slug}/widget",
        f"/p/{slug}/chart.svg",
        "/feed.atom",
    ):
        first, second = reader.get(path), reader.get(path)
        assert first.status_code == second.status_code == 200
        assert second.get_data() == first.get_data()

        def shown(response):
            return [(k, v) for k, v in response.headers.items() if k != "Date"]

        assert shown(second) == shown(first), path
        for name in ("Content-Security-Policy", "X-Content-Type-Options", "Cache-Control"):
            assert second.headers[name], (path, name)
    widget = reader.get(f"/p/{slug}/widget")
    assert "frame-ancestors *" in widget.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in widget.headers
    api = reader.get(f"/api/v1/petitions/{slug}")
    assert api.headers["Access-Control-Allow-Origin"] == "*"


def test_replayed_answers_honour_if_none_match_and_head(site, clock):
    slug = _letter(site)
    reader = site.app.test_client()
    path = f"/api/v1/petitions/{slug}"
    full = reader.get(path)
    etag = full.headers["ETag"]
    not_modified = reader.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.get_data() == b""
    assert not_modified.headers["ETag"] == etag
    assert "Content-Type" not in not_modified.headers
    changed = reader.get(path, headers={"If-None-Match": 'W/"something-else"'})
    assert changed.status_code == 200
    assert changed.get_data() == full.get_data()
    head = reader.head(path)
    assert head.status_code == 200
    assert head.get_data() == b""
    assert head.headers["Content-Length"] == str(len(full.get_data()))


def test_errors_are_not_kept(site, clock, other_worker):
    """A 404 for a letter not yet published turns into the letter as soon as it is."""
    other, _ = other_worker
    reader = other.test_client()
    site.organizer()
    petition_id = site.draft("Drop the ICE contract")
    assert reader.get("/api/v1/petitions/drop-the-ice-contract").status_code == 404
    assert reader.get("/p/drop-the-ice-contract/badge.svg").status_code == 404
    assert reader.get("/p/drop-the-ice-contract").status_code == 404
    slug = site.publish(petition_id)
    assert slug == "drop-the-ice-contract"
    assert reader.get(f"/api/v1/petitions/{slug}").status_code == 200
    assert reader.get(f"/p/{slug}/badge.svg").status_code == 200
    assert reader.get(f"/p/{slug}").status_code == 200


@pytest.mark.config(READ_CACHE_SECONDS=1.0, RATELIMIT_ENABLED=True)
def test_replayed_api_answers_are_charged_to_the_shared_limit(site, clock):
    slug = _letter(site)
    reader = site.app.test_client()
    allowed = int(API_LIMIT.split()[0])
    answers = [reader.get(f"/api/v1/petitions/{slug}") for _ in range(allowed)]
    assert {answer.status_code for answer in answers} == {200}
    remaining = [int(answer.headers["X-RateLimit-Remaining"]) for answer in answers]
    assert remaining == list(range(allowed - 1, -1, -1))
    assert {answer.headers["X-RateLimit-Limit"] for answer in answers} == {str(allowed)}
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in answers)
    # A replayed answer has the first one's headers, the client's own limit in its place.
    assert [name for name, _ in answers[1].headers.items()] == [
        name for name, _ in answers[0].headers.items()
    ]
    # The next one is over the budget, whether it would be replayed or not.
    for path in (f"/api/v1/petitions/{slug}", "/api/v1/petitions"):
        limited = reader.get(path)
        assert limited.status_code == 429, path
        assert limited.get_json()["error"]["status"] == 429
        assert int(limited.headers["Retry-After"]) > 0
    # Other addresses have their own budget, and the badge none at all.
    elsewhere = reader.get(f"/api/v1/petitions/{slug}", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert elsewhere.status_code == 200
    assert elsewhere.headers["X-RateLimit-Remaining"] == str(allowed - 1)
    assert reader.get(f"/p/{slug}/badge.svg").status_code == 200


def test_each_anonymous_visitor_gets_their_own_token_and_etag(site, clock):
    slug = _letter(site)
    first, second = site.app.test_client(), site.app.test_client()
    page_one = first.get(f"/p/{slug}")
    page_two = second.get(f"/p/{slug}")
    html_one, html_two = page_one.get_data(as_text=True), page_two.get_data(as_text=True)
    assert csrf_from(html_one) != csrf_from(html_two)
    assert page_one.headers["ETag"] != page_two.headers["ETag"]
    assert page_one.headers["Cache-Control"] == page_two.headers["Cache-Control"]
    assert "private" in page_one.headers["Cache-Control"]
    assert "Cookie" in page_one.headers["Vary"]
    assert "Set-Cookie" in page_one.headers

    # Each copy's ETag gets a 304 only in the session it was made for.
    etag = page_one.headers["ETag"]
    assert first.get(f"/p/{slug}", headers={"If-None-Match": etag}).status_code == 304
    assert second.get(f"/p/{slug}", headers={"If-None-Match": etag}).status_code == 200

    # The token and stamp spliced into a copy are accepted for its visitor, and only for them.
    form = {"csrf_token": csrf_from(html_one), "started": hidden(html_one, "started")}
    data = {"name": "Ada", "email": "ada@example.com", "affiliation": "current"}
    stolen = second.post(f"/p/{slug}/sign", data={**form, **data, "display": "named"})
    assert stolen.status_code == 400
    signed = first.post(f"/p/{slug}/sign", data={**form, **data, "display": "named"})
    assert signed.status_code == 200
    assert "Check your email" in signed.get_data(as_text=True)


def _masked(html: str) -> str:
    html = re.sub(r'(name="(?:csrf_token|started)"[^>]*?value=")[^"]*"', r"\1", html)
    return re.sub(r'<time class="as-of"[^>]*>[^<]*</time>', "", html)


def test_the_cached_page_is_the_page_a_visitor_would_get_rendered(site, app, clock):
    slug = _letter(site)
    _sign_and_confirm(site, slug, "ada@example.com")
    cached = site.app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    cache = app.extensions["microcache"]
    cache.seconds = 0
    rendered = site.app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    assert _masked(cached) == _masked(rendered)
    assert "Sam Signer" in cached
    assert 'name="started"' in cached


def test_logged_in_and_flashed_visitors_get_their_own_rendering(site, clock):
    slug = _letter(site)  # site.client is the organizer, logged in
    anonymous = site.app.test_client()
    assert "My letters" not in anonymous.get(f"/p/{slug}").get_data(as_text=True)
    organizer_page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "My letters" in organizer_page
    assert "Log out" in organizer_page
    assert "My letters" not in anonymous.get(f"/p/{slug}").get_data(as_text=True)

    logout = site.client.post("/logout", data={"csrf_token": csrf_from(organizer_page)})
    assert logout.status_code == 302
    after = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "You are logged out." in after
    assert "My letters" not in after
    assert "You are logged out." not in anonymous.get(f"/p/{slug}").get_data(as_text=True)


def test_pages_of_signers_are_kept_apart(site, clock):
    slug = _letter(site)
    _sign_and_confirm(site, slug, "ada@example.com")
    reader = site.app.test_client()
    first = reader.get(f"/p/{slug}").get_data(as_text=True)
    second = reader.get(f"/p/{slug}?page=2").get_data(as_text=True)
    assert "Sam Signer" in first
    assert "Sam Signer" not in second
    assert "Everyone so far chose to be counted without being shown." in second
    assert reader.get(f"/p/{slug}?page=x").status_code == 404


@pytest.mark.config(READ_CACHE_SECONDS=0.0)
def test_zero_seconds_turns_the_cache_off(site, app):
    slug = _letter(site)
    reader = app.test_client()
    other = create_app(make_config(app.config["DATABASE_URL"], site.mailbox.port))
    try:
        assert reader.get(f"/api/v1/petitions/{slug}").get_json()["signature_count"] == 0
        assert _count_on_page(reader.get(f"/p/{slug}").get_data(as_text=True)) == 0
        writer = other.test_client()
        assert site.sign(slug, "ada@example.com", client=writer).status_code == 200
        confirmed = site.confirm_link("ada@example.com", client=writer)
        assert "Your signature counts" in confirmed.get_data(as_text=True)
        assert reader.get(f"/api/v1/petitions/{slug}").get_json()["signature_count"] == 1
        assert _count_on_page(reader.get(f"/p/{slug}").get_data(as_text=True)) == 1
    finally:
        get_engine(other).dispose()


def test_visitors_without_cookies_each_get_a_working_session(site, app, clock):
    """The first visitor's answer comes from Flask; later ones without cookies get theirs
    from a template of it. Each gets their own session, token and ETag, all of which work."""
    slug = _letter(site)
    visitors = [app.test_client() for _ in range(3)]
    pages = [visitor.get(f"/p/{slug}") for visitor in visitors]
    # Learning checks itself and gives up quietly; make sure it did learn here.
    learned = app.extensions["microcache"].answers.get(("http", "", f"/p/{slug}", ""))
    assert isinstance(learned, FirstVisitPage)
    sessions = [
        [cookie for cookie in page.headers.getlist("Set-Cookie") if cookie.startswith("session=")]
        for page in pages
    ]
    assert all(len(cookies) == 1 for cookies in sessions)
    assert len({cookies[0] for cookies in sessions}) == 3
    assert len({csrf_from(page.get_data(as_text=True)) for page in pages}) == 3
    assert len({page.headers["ETag"] for page in pages}) == 3
    assert _masked(pages[1].get_data(as_text=True)) == _masked(pages[0].get_data(as_text=True))

    def shown(response):
        return [
            name if name in {"Set-Cookie", "ETag", "Date"} else (name, value)
            for name, value in response.headers.items()
        ]

    assert shown(pages[1]) == shown(pages[0]) == shown(pages[2])

    for visitor, page in zip(visitors[1:], pages[1:], strict=True):
        # The ETag made outside Flask is the one Flask makes for this session.
        again = visitor.get(f"/p/{slug}", headers={"If-None-Match": page.headers["ETag"]})
        assert again.status_code == 304
    html = pages[2].get_data(as_text=True)
    data = {"name": "Ada", "email": "ada@example.com", "affiliation": "current"}
    form = {"csrf_token": csrf_from(html), "started": hidden(html, "started")}
    assert visitors[1].post(f"/p/{slug}/sign", data={**form, **data}).status_code == 400
    signed = visitors[2].post(f"/p/{slug}/sign", data={**form, **data, "display": "named"})
    assert signed.status_code == 200
    assert "Check your email" in signed.get_data(as_text=True)


def test_first_visits_see_new_counts_once_the_rendering_is_older_than_the_ttl(site, other_worker):
    slug = _letter(site)
    other, other_clock = other_worker

    def first_visit_count() -> int:
        return _count_on_page(other.test_client().get(f"/p/{slug}").get_data(as_text=True))

    assert first_visit_count() == 0
    assert first_visit_count() == 0
    _sign_and_confirm(site, slug, "ada@example.com")
    other_clock.now += 0.9
    assert first_visit_count() == 0
    other_clock.now += 0.2
    assert first_visit_count() == 1
    assert first_visit_count() == 1


def test_first_visits_with_a_cookie_or_a_condition_go_through_flask(site, app, clock):
    slug = _letter(site)
    app.test_client().get(f"/p/{slug}")  # learns the template
    with_cookie = app.test_client()
    with_cookie.set_cookie("unrelated", "1")
    page = with_cookie.get(f"/p/{slug}")
    assert page.status_code == 200
    assert "session=" in " ".join(page.headers.getlist("Set-Cookie"))
    conditional = app.test_client().get(f"/p/{slug}", headers={"If-None-Match": 'W/"x"'})
    assert conditional.status_code == 200
    head = app.test_client().head(f"/p/{slug}")
    assert head.status_code == 200
    assert head.get_data() == b""


def test_the_stores_are_bounded_in_bytes_and_time():
    clock = Clock()
    store = TimedStore(1.0, max_bytes=100, clock=clock)
    store.put("a", "A", 40)
    store.put("b", "B", 40)
    store.put("too big", "X", 101)
    assert store.get("too big") is None
    store.put("c", "C", 40)  # no room: the oldest goes
    assert (store.get("a"), store.get("b"), store.get("c")) == (None, "B", "C")
    clock.now += 0.5
    store.put("d", "D", 40)
    assert (store.get("b"), store.get("c"), store.get("d")) == (None, "C", "D")
    clock.now += 0.6  # c is now older than a second; d is not
    assert (store.get("c"), store.get("d")) == (None, "D")
    store.put("e", "E", 60)  # expired c makes room before anyone younger goes
    assert (store.get("d"), store.get("e")) == ("D", "E")
    store.clear()
    assert store.get("d") is None
    assert len(store) == 0
    off = TimedStore(0.0, max_bytes=100, clock=clock)
    off.put("a", "A", 1)
    assert off.get("a") is None


def test_a_closed_letter_is_served_from_the_cache_without_a_form(site, app, clock):
    site.organizer()
    petition_id = site.draft("Drop the ICE contract")
    slug = site.publish(petition_id)
    reader = app.test_client()
    assert 'name="started"' in reader.get(f"/p/{slug}").get_data(as_text=True)
    closed = site.post_form(f"/letters/{petition_id}", f"/letters/{petition_id}/close", {})
    assert closed.status_code == 302
    pages = [app.test_client().get(f"/p/{slug}") for _ in range(3)]
    for page in pages:
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "This letter is closed" in html
        assert 'name="started"' not in html
    assert len({page.headers["ETag"] for page in pages}) == 3
