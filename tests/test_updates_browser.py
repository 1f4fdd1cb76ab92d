"""Updates in a real Chromium (issue 27): a reader with JavaScript off subscribes by keyboard
from the letter page (a work address refused first) and confirms; under the two-person rule
the owner previews and proposes an update, the organizer approves; the email matches the
preview and its link unsubscribes without login. axe-core finds nothing on any new page."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from petitions.mail import worker as mail_worker
from petitions.signing.subscribers import move_new_subscribers
from petitions.updates.sending import work as send_updates
from tests.mailbox import Mailbox
from tests.test_browser import browser, heading  # noqa: F401 - the Chromium fixture
from tests.test_committee_browser import accessible, account, press, review_app  # noqa: F401

PERSONAL = "robin.home@home.example"
OTHER = "kim.private@elsewhere.example"
CHORES = [
    mail_worker.Chore("subscribers", 60, move_new_subscribers),
    mail_worker.Chore("updates", 10, send_updates),
]


def deliver(app: Flask) -> None:
    """Two passes of the worker: the chores queue the updates' email, then count deliveries."""
    with app.app_context():
        mail_worker.drain(app, chores=CHORES)
        mail_worker.drain(app, chores=CHORES)


def link_in(text: str, path: str) -> str:
    match = re.search(rf"https?://\S+/account/updates/{path}/[A-Za-z0-9._\-]+", text)
    assert match, text
    return match.group(0)


@pytest.mark.browser
def test_subscribe_confirm_send_under_the_rule_and_unsubscribe(
    browser: Browser,  # noqa: F811
    review_app: Flask,  # noqa: F811
    mailbox: Mailbox,
) -> None:
    app = review_app
    olivia = account(browser, app, mailbox, "olivia@example.org", "Olivia Owner")
    olivia.get_by_role("link", name="New letter").click()
    olivia.get_by_label("Title").fill("Publish the pay bands")
    olivia.get_by_label("Addressed to").fill("Satya Nadella, CEO, Microsoft")
    olivia.get_by_label("Letter", exact=True).fill("Publish **every** pay band.")
    olivia.get_by_label("Employer domains").fill("example.com Example Corp")
    olivia.get_by_role("button", name="Save draft").click()
    letter_page = olivia.url
    olivia.get_by_role("button", name="Publish").click()
    public_url = olivia.get_by_role("link", name="/p/").get_attribute("href")
    assert public_url
    olivia.get_by_role("link", name="Committee", exact=True).click()
    olivia.get_by_label("Their email address").fill("bea@example.org")
    press(olivia, "button", "Send invitation")
    expect(olivia.get_by_text("Invitation sent to bea@example.org")).to_be_visible()
    mail_worker.drain(app)
    invitation = mailbox.last_to("bea@example.org").link()
    bea = account(browser, app, mailbox, "bea@example.org", "Bea Organizer", js=False)
    bea.goto(invitation)
    press(bea, "button", "Accept and join the committee")
    expect(bea.get_by_text("Welcome to the committee.")).to_be_visible()
    olivia.goto(letter_page)
    olivia.get_by_role("link", name="Committee", exact=True).click()
    olivia.get_by_role("checkbox", name="Two-person rule").check()
    press(olivia, "button", "Save the rule")
    expect(olivia.get_by_text("The two-person rule is now on.")).to_be_visible()

    # A reader, keyboard only (JavaScript on so that axe-core can run in the page).
    reader = browser.new_context(base_url=app.config["PUBLIC_URL"]).new_page()
    reader.set_default_timeout(10_000)
    reader.goto(public_url)
    press(reader, "link", "Get this letter's updates by email")
    expect(heading(reader, "Get updates about this letter")).to_be_visible()
    accessible(reader)
    reader.get_by_label("Your personal address").fill("robin@example.com")
    press(reader, "button", "Send me a confirmation email")
    expect(reader.get_by_text("That is a work address of a company")).to_be_visible()
    accessible(reader)
    reader.get_by_label("Your personal address").fill(PERSONAL)
    press(reader, "button", "Send me a confirmation email")
    expect(heading(reader, "Check your email")).to_be_visible()
    accessible(reader)
    deliver(app)
    reader.goto(link_in(mailbox.last_to(PERSONAL).text, "confirm"))
    accessible(reader)
    press(reader, "button", "Confirm updates")
    expect(heading(reader, "Updates confirmed")).to_be_visible()
    accessible(reader)

    # Another, with JavaScript off.
    plain = browser.new_context(
        base_url=app.config["PUBLIC_URL"], java_script_enabled=False
    ).new_page()
    plain.set_default_timeout(10_000)
    plain.goto(public_url)
    press(plain, "link", "Get this letter's updates by email")
    plain.get_by_label("Your personal address").fill(OTHER)
    press(plain, "button", "Send me a confirmation email")
    expect(heading(plain, "Check your email")).to_be_visible()
    deliver(app)
    plain.goto(link_in(mailbox.last_to(OTHER).text, "confirm"))
    press(plain, "button", "Confirm updates")
    expect(heading(plain, "Updates confirmed")).to_be_visible()

    olivia.goto(letter_page)
    olivia.get_by_role("link", name="Updates to signers").click()
    expect(olivia.locator("#subscriber-count")).to_have_text("2")
    accessible(olivia)
    olivia.get_by_label("Subject").fill("Delivered today")
    olivia.get_by_label("Update (Markdown)").fill("We **delivered** the letter to the CEO.")
    press(olivia, "button", "Preview")
    expect(heading(olivia, "Preview: the email")).to_be_visible()
    accessible(olivia)
    preview_text = olivia.locator("#preview-text").inner_text()
    press(olivia, "button", "Send to subscribers")
    expect(olivia.get_by_text("goes out once another organizer approves it")).to_be_visible()
    accessible(olivia)
    assert PERSONAL not in olivia.content() and OTHER not in olivia.content()

    bea.goto(letter_page)
    expect(bea.get_by_text("Delivered today")).to_be_visible()
    press(bea, "button", "Approve: Send an update to signers")
    expect(bea.get_by_text("Approved and done.")).to_be_visible()
    deliver(app)
    mail = mailbox.last_to(PERSONAL)
    unsubscribe = link_in(mail.text, "unsubscribe")
    expected = preview_text.replace("(your own unsubscribe link)", unsubscribe)
    assert mail.text.replace("\r\n", "\n").strip() == expected.strip()
    olivia.goto(letter_page)
    olivia.get_by_role("link", name="Updates to signers").click()
    expect(olivia.locator(".delivered")).to_have_text("2")
    reader.goto(public_url)
    expect(reader.get_by_text("Update: Delivered today")).to_be_visible()
    accessible(reader)

    reader.goto(unsubscribe)
    accessible(reader)
    press(reader, "button", "Unsubscribe")
    expect(heading(reader, "Unsubscribed")).to_be_visible()
    accessible(reader)
    reader.goto(unsubscribe)
    expect(reader.get_by_text("gets no updates about this letter")).to_be_visible()
    plain.goto(link_in(mailbox.last_to(OTHER).text, "unsubscribe"))
    press(plain, "button", "Unsubscribe")
    expect(heading(plain, "Unsubscribed")).to_be_visible()
    olivia.reload()
    expect(olivia.locator("#subscriber-count")).to_have_text("0")
