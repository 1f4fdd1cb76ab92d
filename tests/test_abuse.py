"""Rate limits (memory and the real Redis), proxies, honeypot, fill time."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
import redis
from sqlalchemy import func, select

from petitions import create_app
from petitions.db import get_engine, new_session
from petitions.models import Signature
from tests.conftest import REDIS_URL, csrf_from, make_config, require_redis, sign_fields
from tests.servers import start_gunicorn, stop


def _login_attempts(client, count, headers=None):
    html = client.get("/login").get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "email": "x@example.org", "password": "wrong password"}
    return [client.post("/login", data=data, headers=headers or {}) for _ in range(count)]


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_login_is_limited_with_a_clear_429(client):
    responses = _login_attempts(client, 11)
    assert [r.status_code for r in responses[:10]] == [400] * 10
    limited = responses[10]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    html = limited.get_data(as_text=True)
    assert "Slow down" in html and 'class="site-header"' in html


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_code_guessing_is_limited_per_address_and_per_code(site):
    slug = site.letter()
    page = site.sign(slug, "guess@example.net").get_data(as_text=True)
    handle = page.split('name="handle" type="hidden" value="')[1].split('"')[0]
    token = csrf_from(page)
    statuses = [
        site.client.post(
            "/confirm/code", data={"csrf_token": token, "handle": handle, "code": f"{n:04d}-0000"}
        ).status_code
        for n in range(21)
    ]
    assert statuses[-1] == 429
    assert statuses[:5] == [400] * 5  # the code itself died after 5 wrong tries


def _login_statuses(bases: list[str], attempts: int) -> list[int]:
    """Failed logins, alternating between servers, with one browser's cookies and CSRF token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    token = csrf_from(opener.open(f"{bases[0]}/login").read().decode())
    body = urllib.parse.urlencode(
        {"csrf_token": token, "email": "x@example.org", "password": "wrong password"}
    ).encode()
    statuses = []
    for attempt in range(attempts):
        try:
            statuses.append(opener.open(f"{bases[attempt % len(bases)]}/login", body).status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    return statuses


@pytest.mark.parametrize("storage,shared", [(REDIS_URL, True), ("memory://", False)])
def test_several_gunicorn_servers_share_one_budget_through_redis(database_url, storage, shared):
    if shared:
        require_redis()
    prefix = f"test-{uuid.uuid4().hex}"
    settings = {
        "RATELIMIT_ENABLED": "1",
        "RATELIMIT_STORAGE_URI": storage,
        "RATELIMIT_KEY_PREFIX": prefix,
    }
    servers = [start_gunicorn(database_url, **settings) for _ in range(2)]
    try:
        statuses = _login_statuses([base for _, base in servers], 12)
    finally:
        for process, _ in servers:
            stop(process)
        connection = redis.Redis.from_url(REDIS_URL)
        for key in connection.scan_iter(f"*{prefix}*"):
            connection.delete(key)
    assert statuses[:10] == [400] * 10
    # Shared: the 11th attempt overall is over the limit. Separate memories: each server
    # has seen only 5 or 6, so nothing is limited yet.
    assert (statuses[10] == 429) is shared
    assert (429 in statuses) is shared


@pytest.mark.parametrize("proxies,separate", [(1, True), (0, False)])
def test_trusted_proxies_decide_whose_address_is_limited(database_url, mailbox, proxies, separate):
    app = create_app(
        make_config(database_url, mailbox.port, RATELIMIT_ENABLED=True, TRUSTED_PROXIES=proxies)
    )
    client = app.test_client()
    first = _login_attempts(client, 10, {"X-Forwarded-For": "203.0.113.1"})
    assert all(r.status_code == 400 for r in first)
    other = _login_attempts(client, 1, {"X-Forwarded-For": "203.0.113.2"})[0]
    assert (other.status_code == 400) is separate
    get_engine(app).dispose()


def _count(app) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(func.count()).select_from(Signature))


def _sign_with(site, slug, **overrides):
    html = site.client.get(f"/p/{slug}/sign").get_data(as_text=True)
    data = {
        **sign_fields(html),
        "name": "Bot",
        "email": "bot@example.net",
        "affiliation": "current",
        "display": "named",
        **overrides,
    }
    return site.client.post(f"/p/{slug}/sign", data=data)


def test_honeypot_filled_is_refused_and_nothing_stored(site, app):
    slug = site.letter()
    response = _sign_with(site, slug, website="http://spam.example")
    assert response.status_code == 400
    assert _count(app) == 0


@pytest.mark.config(SIGN_MIN_SECONDS=30)
def test_form_sent_back_too_fast_is_refused(site, app):
    slug = site.letter()
    response = _sign_with(site, slug)
    assert response.status_code == 400
    assert "faster than anyone can read" in response.get_data(as_text=True)
    forged = _sign_with(site, slug, started="forged-value")
    assert "out of date" in forged.get_data(as_text=True)
    assert _count(app) == 0


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_api_limit_answers_json_429(site, app):
    slug = site.letter()
    from petitions.security import API_LIMIT

    allowed = int(API_LIMIT.split()[0])
    statuses = [site.client.get(f"/api/v1/petitions/{slug}").status_code for _ in range(allowed)]
    assert set(statuses) == {200}
    limited = site.client.get("/api/v1/petitions")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.get_json()["error"]["status"] == 429
    assert limited.headers["Content-Type"].startswith("application/json")
