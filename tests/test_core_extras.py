"""Odds and ends of the core: key rotation, PUBLIC_URL in links, cookies, withdrawals racing."""

from __future__ import annotations

import re
import threading

import pytest

from petitions import create_app
from petitions.db import get_engine
from tests.conftest import csrf_from, make_config


def test_links_use_public_url_never_the_host_header(site):
    slug = site.letter()
    html = site.client.get(f"/p/{slug}/sign", headers={"Host": "evil.example"}).get_data(
        as_text=True
    )
    site.client.post(
        f"/p/{slug}/sign",
        headers={"Host": "evil.example"},
        data={
            "csrf_token": csrf_from(html),
            "started": re.search(r'name="started" type="hidden" value="([^"]+)"', html).group(1),
            "name": "N",
            "email": "host@example.net",
            "affiliation": "current",
            "display": "counted",
        },
    )
    site.deliver()
    mail = site.mailbox.last_to("host@example.net")
    assert mail.link().startswith("http://undersigned.test/c/")
    assert "evil.example" not in mail.raw


def test_rotating_secret_key_keeps_sent_links_working(site, app, database_url, mailbox):
    slug = site.letter()
    site.sign(slug, "rotate@example.net")
    site.deliver()
    path = site.mailbox.last_to("rotate@example.net").link().removeprefix("http://undersigned.test")
    rotated = create_app(
        make_config(
            database_url,
            mailbox.port,
            SECRET_KEY="a-brand-new-key",
            SECRET_KEY_FALLBACKS=[app.config["SECRET_KEY"]],
        )
    )
    unrotated = create_app(make_config(database_url, mailbox.port, SECRET_KEY="a-brand-new-key"))
    try:
        assert unrotated.test_client().get(path).status_code == 400  # old key unknown: refused
        client = rotated.test_client()
        page = client.get(path)
        assert page.status_code == 200
        response = client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True))})
        assert "Your signature counts" in response.get_data(as_text=True)
    finally:
        get_engine(rotated).dispose()
        get_engine(unrotated).dispose()


@pytest.mark.config(PUBLIC_URL="https://letters.example.org")
def test_cookies_are_secure_httponly_and_lax_over_https(client):
    response = client.get("/login", base_url="https://letters.example.org")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_cookies_are_not_marked_secure_over_plain_http(client):
    cookie = client.get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" not in cookie


@pytest.mark.config(RATELIMIT_ENABLED=False)  # one client here stands for many people
def test_concurrent_confirmations_and_withdrawals_keep_the_count_exact(site, app):
    slug = site.letter()
    withdraw_codes = []
    for n in range(8):
        site.sign(slug, f"early{n}@example.net")
        page = site.confirm_link(f"early{n}@example.net").get_data(as_text=True)
        withdraw_codes.append(re.search(r'id="withdraw-code">([^<]+)<', page).group(1))
    for n in range(8):
        site.sign(slug, f"late{n}@example.net")
    site.deliver()
    confirm_paths = [
        site.mailbox.last_to(f"late{n}@example.net").link().removeprefix("http://undersigned.test")
        for n in range(8)
    ]
    jobs = []
    for path in confirm_paths:
        jobs.append(("confirm", path))
    for code in withdraw_codes:
        jobs.append(("withdraw", code))
    barrier = threading.Barrier(len(jobs), timeout=60)
    statuses = []

    def run(kind, value):
        client = app.test_client()
        page = client.get(value if kind == "confirm" else "/withdraw").get_data(as_text=True)
        token = csrf_from(page)
        barrier.wait()
        if kind == "confirm":
            statuses.append(client.post(value, data={"csrf_token": token}).status_code)
        else:
            data = {"csrf_token": token, "code": value}
            statuses.append(client.post("/withdraw", data=data).status_code)

    threads = [threading.Thread(target=run, args=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [200] * 16
    assert site.count(slug) == 8
    assert "Nothing to repair" in app.test_cli_runner().invoke(args=["recount"]).output
