"""Fixtures: the app on a real database (SQLite file, or PostgreSQL from TEST_DATABASE_URL),
a real SMTP server, and helpers that drive the site through its front door."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from config import TestingConfig
from petitions import create_app
from petitions.cli import upgrade_database
from petitions.db import Base, get_engine, new_session
from petitions.mail import worker as mail_worker
from tests.mailbox import Mailbox

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
#: the Redis that production shares rate limits through (always running in CI)
REDIS_URL = "redis://127.0.0.1:6379"
PASSWORD = "correct horse battery staple"


def require_weasyprint() -> None:
    """Skip where WeasyPrint's libraries (Pango) are missing; in CI, which installs them, fail."""
    try:
        import weasyprint  # noqa: F401
    except OSError:
        if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
            raise
        pytest.skip(
            "WeasyPrint needs Pango (apt-get install libpango-1.0-0 libpangoft2-1.0-0)",
            allow_module_level=True,
        )


def require_redis() -> None:
    """Skip on a laptop without Redis; in CI (where Redis always runs) fail instead."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis is not running at {REDIS_URL} (CI always has it)")


def make_config(database_url: str, smtp_port: int, **overrides: object) -> TestingConfig:
    """A testing configuration pointed at one database and one SMTP server."""
    config = TestingConfig()
    config.DATABASE_URL = database_url
    config.SMTP_HOST = "127.0.0.1"
    config.SMTP_PORT = smtp_port
    config.PUBLIC_URL = "http://undersigned.test"
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    """One aiosmtpd server for the whole run; cleared before each test."""
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate once: a SQLite file to copy per test, or the PostgreSQL schema."""
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        app = create_app(make_config(PG_URL, 25))
        upgrade_database(app)
        get_engine(app).dispose()
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}", 25))
    upgrade_database(app)
    get_engine(app).dispose()
    return str(path)


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database for one test."""
    if PG_URL:
        engine = create_engine(PG_URL)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        yield PG_URL
        return
    path = tmp_path / "test.sqlite3"
    shutil.copy(migrated_template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def app(database_url: str, mailbox: Mailbox, request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The application, configured for tests; `@pytest.mark.config(KEY=value)` overrides."""
    mailbox.clear()
    mailbox.reject_code = None
    mailbox.reject_only = {}
    marker = request.node.get_closest_marker("config")
    overrides = marker.kwargs if marker else {}
    application = create_app(make_config(database_url, mailbox.port, **overrides))
    yield application
    get_engine(application).dispose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "config(**settings): override app settings for a test")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like client that keeps cookies."""
    return app.test_client()


def csrf_from(html: str) -> str:
    """The CSRF token in a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_fields(html: str) -> dict[str, str]:
    """The hidden fields a sign form must send back: CSRF token and the form's start stamp."""
    return {"csrf_token": csrf_from(html), "started": hidden(html, "started")}


def hidden(html: str, name: str) -> str:
    """The value of a hidden field in a page."""
    match = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html)
    assert match, f"no hidden {name} on the page"
    return match.group(1)


class Site:
    """Drive the site like a person: GET a page, fill its form, POST it; read the mail."""

    def __init__(self, app: Flask, client: FlaskClient, mailbox: Mailbox) -> None:
        self.app = app
        self.client = client
        self.mailbox = mailbox

    def deliver(self) -> mail_worker.DeliveryReport:
        """Run the mail worker once (`worker --drain`), with its move of new subscribers (which
        queues their "signed" email)."""
        from petitions.signing.subscribers import move_new_subscribers

        chores = [mail_worker.Chore("subscribers", 60, move_new_subscribers)]
        with self.app.app_context():
            return mail_worker.drain(self.app, chores=chores)

    def post_form(self, page: str, action: str, data: dict[str, object], client=None):
        """GET `page` for its CSRF token, then POST `data` to `action`."""
        c = client or self.client
        html = c.get(page).get_data(as_text=True)
        return c.post(action, data={"csrf_token": csrf_from(html), **data})

    def register(self, email: str, name: str = "Olivia Organizer") -> None:
        response = self.post_form(
            "/register",
            "/register",
            {"display_name": name, "email": email, "password": PASSWORD, "confirm": PASSWORD},
        )
        assert response.status_code == 200, response.get_data(as_text=True)

    def confirm_account(self, email: str) -> None:
        self.deliver()
        link = self.mailbox.last_to(email).link()
        path = link.removeprefix("http://undersigned.test")
        response = self.post_form(path, path, {})
        assert response.status_code == 302

    def login(self, email: str, client=None):
        return self.post_form("/login", "/login", {"email": email, "password": PASSWORD}, client)

    def organizer(self, email: str = "olivia@example.org", client=None) -> None:
        """Register, confirm and log in an organizer."""
        self.register(email)
        self.confirm_account(email)
        response = self.login(email, client)
        assert response.status_code == 302

    def draft(self, title: str = "Drop the ICE contract", **fields: object) -> int:
        data = {
            "title": title,
            "addressed_to": "Satya Nadella, CEO, Microsoft",
            "body_markdown": "We ask you to **cancel** the contract.",
            "goal": "100",
            "reveal_threshold": "10",
            "allow_supporters": "y",
            **fields,
        }
        response = self.post_form("/letters/new", "/letters/new", data)
        assert response.status_code == 302, response.get_data(as_text=True)
        return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    def publish(self, petition_id: int) -> str:
        page = f"/letters/{petition_id}"
        response = self.post_form(page, f"{page}/publish", {})
        assert response.status_code == 302
        with new_session(self.app, write=False) as session:
            from petitions.models import Petition

            slug = session.get(Petition, petition_id).slug
        assert slug
        return slug

    def letter(self, title: str = "Drop the ICE contract", **fields: object) -> str:
        """A published letter by a fresh organizer; returns its slug."""
        self.organizer()
        return self.publish(self.draft(title, **fields))

    def sign(self, slug: str, email: str, name: str = "Sam Signer", client=None, **extra: object):
        c = client or self.client
        html = c.get(f"/p/{slug}/sign").get_data(as_text=True)
        data = {"name": name, "email": email, "affiliation": "current", "display": "named", **extra}
        return c.post(f"/p/{slug}/sign", data={**sign_fields(html), **data})

    def confirm_link(self, email: str, client=None):
        """Follow the emailed link like a person: GET the page, press Confirm."""
        self.deliver()
        path = self.mailbox.last_to(email).link().removeprefix("http://undersigned.test")
        return self.post_form(path, path, {}, client)

    def count(self, slug: str) -> int:
        html = self.client.get(f"/p/{slug}").get_data(as_text=True)
        match = re.search(r'id="verified-count">([\d,]+)<', html)
        assert match
        return int(match.group(1).replace(",", ""))


@pytest.fixture
def site(app: Flask, client: FlaskClient, mailbox: Mailbox) -> Site:
    """The site driven through its front door."""
    return Site(app, client, mailbox)
