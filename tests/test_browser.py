"""The whole journey in a real Chromium: an organizer publishes a letter, and two people sign
it, one through the emailed link and one by typing the emailed code into the open tab."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from werkzeug.serving import make_server

from petitions import create_app
from petitions.db import get_engine
from petitions.mail import worker as mail_worker
from tests.conftest import PASSWORD, make_config
from tests.mailbox import Mailbox, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TITLE = "Drop the ICE contract"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium; skipped when it is missing, unless REQUIRE_BROWSER=1."""
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def live_app(database_url: str, mailbox: Mailbox) -> Iterator[Flask]:
    """The app served over real HTTP on a free port; emailed links point at it."""
    mailbox.clear()
    mailbox.reject_code = None
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(make_config(database_url, mailbox.port, PUBLIC_URL=base_url))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join()
    get_engine(app).dispose()


def new_page(browser: Browser, app: Flask) -> Page:
    """A tab in a fresh browser profile: its own cookies, like a different person."""
    page = browser.new_context(base_url=app.config["PUBLIC_URL"]).new_page()
    page.set_default_timeout(10_000)
    return page


def heading(page: Page, name: str) -> Locator:
    return page.get_by_role("heading", name=name)


def sign(page: Page, letter_url: str, name: str, email: str) -> None:
    """Fill in the public sign form as a named signer and send it."""
    page.goto(letter_url)
    page.get_by_role("link", name="Sign this letter").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email address to verify").fill(email)
    page.get_by_label("Named: my name, job title and team are public").check()
    page.get_by_role("button", name="Sign", exact=True).click()
    expect(heading(page, "Check your email")).to_be_visible()


@pytest.mark.browser
def test_organizer_publishes_and_two_people_sign(
    browser: Browser, live_app: Flask, mailbox: Mailbox, tmp_path: Path
) -> None:
    organizer = new_page(browser, live_app)
    organizer.goto("/register")
    organizer.get_by_label("Display name").fill("Olivia Organizer")
    organizer.get_by_label("Email").fill("olivia@example.org")
    organizer.get_by_label("Password", exact=True).fill(PASSWORD)
    organizer.get_by_label("Repeat password").fill(PASSWORD)
    organizer.get_by_role("button", name="Create account").click()
    expect(heading(organizer, "Check your email")).to_be_visible()

    mail_worker.drain(live_app)
    organizer.goto(mailbox.last_to("olivia@example.org").link())
    organizer.get_by_role("button", name="Confirm my address").click()
    expect(organizer.get_by_text("Your address is confirmed")).to_be_visible()

    organizer.get_by_label("Email").fill("olivia@example.org")
    organizer.get_by_label("Password").fill(PASSWORD)
    organizer.get_by_role("button", name="Log in").click()
    expect(heading(organizer, "My letters")).to_be_visible()

    organizer.get_by_role("link", name="New letter").click()
    organizer.get_by_label("Title").fill(TITLE)
    organizer.get_by_label("Addressed to").fill("Satya Nadella, CEO, Microsoft")
    organizer.get_by_label("Letter", exact=True).fill("We ask you to **cancel** the contract.")
    organizer.get_by_label("Signature goal (optional)").fill("100")
    organizer.get_by_role("button", name="Preview").click()
    preview = organizer.get_by_role("region", name="Preview")
    expect(preview.locator("strong")).to_have_text("cancel")  # the Markdown is rendered
    organizer.get_by_role("button", name="Save draft").click()
    expect(organizer.get_by_text("Draft saved")).to_be_visible()
    organizer.get_by_role("button", name="Publish").click()
    expect(organizer.get_by_text("Published.")).to_be_visible()
    letter_url = organizer.get_by_role("link", name="/p/").get_attribute("href")
    assert letter_url and letter_url.startswith("/p/")

    # (a) Confirms through the emailed link, in the browser.
    first = new_page(browser, live_app)
    sign(first, letter_url, "Sam Signer", "sam@example.net")
    mail_worker.drain(live_app)
    first.goto(mailbox.last_to("sam@example.net").link())
    expect(heading(first, "One more step")).to_be_visible()
    expect(first.get_by_text(TITLE)).to_have_count(0)  # the link page does not name the letter
    first.get_by_role("button", name="Confirm").click()
    expect(heading(first, "Thank you. Your signature counts.")).to_be_visible()
    first.goto(letter_url)
    expect(first.locator("#verified-count")).to_have_text("1")

    # (b) Types the code into the "check your email" tab; no link is opened.
    second = new_page(browser, live_app)
    sign(second, letter_url, "Tess Typist", "tess@example.net")
    mail_worker.drain(live_app)
    second.get_by_label("Code from the email").fill(mailbox.last_to("tess@example.net").code())
    second.get_by_role("button", name="Confirm my signature").click()
    expect(heading(second, "Thank you. Your signature counts.")).to_be_visible()
    second.goto(letter_url)
    expect(second.locator("#verified-count")).to_have_text("2")
    expect(second.get_by_text("verified signatures")).to_be_visible()

    screenshot = tmp_path / "letter.png"
    second.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0
