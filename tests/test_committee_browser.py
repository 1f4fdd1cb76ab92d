"""The committee and the review in a real Chromium: an owner invites an organizer, turns on the
two-person rule and proposes publication; the organizer (with JavaScript off, by keyboard)
accepts and approves; an admin hides the letter for a reason and answers the appeal. Every new
page passes axe-core with no violations."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import make_server

from petitions import create_app
from petitions.db import get_engine
from petitions.mail import worker as mail_worker
from tests.conftest import PASSWORD, make_config
from tests.mailbox import Mailbox, free_port
from tests.test_browser import browser, heading  # noqa: F401 - the Chromium fixture

AXE = Axe()
TITLE = "Drop the ICE contract"


@pytest.fixture
def review_app(database_url: str, mailbox: Mailbox) -> Iterator[Flask]:
    """The app over real HTTP, with letters unlisted until 3 verified employees sign."""
    mailbox.clear()
    port = free_port()
    config = make_config(
        database_url, mailbox.port, PUBLIC_URL=f"http://127.0.0.1:{port}", LISTING_THRESHOLD=3
    )
    app = create_app(config)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join()
    get_engine(app).dispose()


def accessible(page: Page) -> None:
    """axe-core finds nothing wrong with the page as it is now."""
    results = AXE.run(page)
    assert results.violations_count == 0, f"{page.url}\n{results.generate_report()}"


def account(
    chromium: Browser, app: Flask, mailbox: Mailbox, email: str, name: str, js: bool = True
) -> Page:
    """Register, confirm and log in, in a browser profile of its own."""
    context = chromium.new_context(base_url=app.config["PUBLIC_URL"], java_script_enabled=js)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/register")
    page.get_by_label("Display name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    mail_worker.drain(app)
    page.goto(mailbox.last_to(email).link())
    page.get_by_role("button", name="Confirm my address").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(heading(page, "My letters")).to_be_visible()
    return page


def press(page: Page, role: str, name: str, key: str = "Enter") -> None:
    """Reach a control from the keyboard and use it."""
    control = page.get_by_role(role, name=name)  # type: ignore[arg-type]
    control.focus()
    expect(control).to_be_focused()
    page.keyboard.press(key)


@pytest.mark.browser
def test_a_committee_publishes_under_the_two_person_rule_and_appeals_a_takedown(
    browser: Browser,  # noqa: F811
    review_app: Flask,
    mailbox: Mailbox,
) -> None:
    app = review_app
    olivia = account(browser, app, mailbox, "olivia@example.org", "Olivia Owner")
    olivia.get_by_role("link", name="New letter").click()
    olivia.get_by_label("Title").fill(TITLE)
    olivia.get_by_label("Addressed to").fill("Satya Nadella, CEO, Microsoft")
    olivia.get_by_label("Letter", exact=True).fill("We ask you to **cancel** the contract.")
    olivia.get_by_label("Employer domains").fill("microsoft.com Microsoft")
    olivia.get_by_role("button", name="Save draft").click()
    expect(olivia.get_by_text("Draft saved")).to_be_visible()
    letter_page = olivia.url
    accessible(olivia)

    olivia.get_by_role("link", name="Committee", exact=True).click()
    expect(heading(olivia, "Committee")).to_be_visible()
    accessible(olivia)
    olivia.get_by_label("Their email address").fill("bea@example.org")
    press(olivia, "button", "Send invitation")
    expect(olivia.get_by_text("Invitation sent to bea@example.org")).to_be_visible()
    accessible(olivia)
    mail_worker.drain(app)
    link = mailbox.last_to("bea@example.org").link()

    # Anyone holding the link sees only how to log in or register.
    stranger = browser.new_context().new_page()
    stranger.goto(link)
    expect(stranger.get_by_role("link", name="Log in", exact=True).last).to_be_visible()
    expect(stranger.get_by_text(TITLE)).to_have_count(0)
    accessible(stranger)

    # Bea, with JavaScript off and the keyboard only, accepts.
    bea = account(browser, app, mailbox, "bea@example.org", "Bea Organizer", js=False)
    bea.goto(link)
    expect(bea.get_by_text(TITLE)).to_be_visible()
    press(bea, "button", "Accept and join the committee")
    expect(bea.get_by_text("Welcome to the committee.")).to_be_visible()

    olivia.goto(letter_page)
    olivia.get_by_role("link", name="Committee", exact=True).click()
    olivia.get_by_role("checkbox", name="Two-person rule").check()
    press(olivia, "button", "Save the rule")
    expect(olivia.get_by_text("The two-person rule is now on.")).to_be_visible()
    olivia.goto(letter_page)
    olivia.get_by_role("button", name="Publish").click()
    expect(olivia.get_by_text("waits for another member")).to_be_visible()
    expect(olivia.get_by_role("button", name="Approve: Publish the letter")).to_have_count(0)
    accessible(olivia)

    bea.goto(letter_page)
    press(bea, "button", "Approve: Publish the letter")
    expect(bea.get_by_text("Approved and done.")).to_be_visible()
    public_url = bea.get_by_role("link", name="/p/").get_attribute("href")
    assert public_url

    olivia.goto(public_url)
    expect(olivia.locator("#unlisted")).to_be_visible()
    accessible(olivia)
    olivia.goto(letter_page)
    olivia.get_by_role("link", name="Committee log").click()
    expect(olivia.get_by_text("Approved: Publish the letter")).to_be_visible()
    accessible(olivia)

    # The admin hides it for a reason; the committee appeals; the admin answers.
    admin = account(browser, app, mailbox, "admin@example.org", "Ada Admin")
    assert (
        "is now a site admin"
        in app.test_cli_runner().invoke(args=["create-admin", "admin@example.org"]).output
    )
    admin.goto("/admin/")
    accessible(admin)
    admin.get_by_role("link", name=TITLE).first.click()
    accessible(admin)
    admin.get_by_label("It names a private individual").check()
    press(admin, "button", "Hide the letter")
    expect(admin.get_by_text("Done, and written to the audit log.")).to_be_visible()

    bea.goto(letter_page)
    expect(bea.get_by_text("It names a private individual")).to_be_visible()
    bea.get_by_label("Your appeal").fill("Nobody private is named: these are public officers.")
    press(bea, "button", "Send appeal")
    expect(bea.get_by_text("Your appeal is with the site's admins.")).to_be_visible()
    olivia.goto(letter_page)
    accessible(olivia)

    admin.goto("/admin/")
    expect(admin.get_by_role("heading", name="Appeals")).to_be_visible()
    admin.get_by_role("link", name=TITLE).first.click()
    admin.get_by_label("Your answer to the committee").fill("Agreed, shown again.")
    admin.get_by_label("Show the letter again").check()
    accessible(admin)
    press(admin, "button", "Record the answer")
    expect(admin.get_by_text("Done, and written to the audit log.")).to_be_visible()
    admin.goto("/admin/audit")
    expect(admin.get_by_text("answer_appeal")).to_be_visible()

    olivia.goto(public_url)
    expect(olivia.get_by_role("heading", name=TITLE)).to_be_visible()
    olivia.goto("/letters/")
    expect(olivia.get_by_text("you are owner")).to_be_visible()
    accessible(olivia)
