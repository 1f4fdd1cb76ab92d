"""Delivery in a real Chromium with JavaScript off, by keyboard: an organizer names a target and
records a delivery; the recipient opens the private link, confirms receipt and answers; the
organizer records the outcome and a correction. Every new page passes axe-core."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader
from sqlalchemy import select
from werkzeug.serving import make_server

from petitions import create_app
from petitions.db import get_engine, new_session, utcnow
from petitions.letters import service as letters
from petitions.mail import worker as mail_worker
from petitions.models import User
from tests.conftest import PASSWORD, make_config, require_weasyprint
from tests.mailbox import Mailbox, free_port
from tests.test_browser import browser  # noqa: F401 - the Chromium fixture

AXE = Axe()

require_weasyprint()  # the pack's PDF


@pytest.fixture
def served(database_url: str, mailbox: Mailbox) -> Iterator[Flask]:
    """The app over real HTTP on a free port."""
    mailbox.clear()
    port = free_port()
    app = create_app(make_config(database_url, mailbox.port, PUBLIC_URL=f"http://127.0.0.1:{port}"))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join()
    get_engine(app).dispose()


def accessible(chromium: Browser, app: Flask, path: str, cookies: list | None = None) -> None:
    """axe-core finds no violation on the page (read in a tab with scripts on, for axe)."""
    context = chromium.new_context(base_url=app.config["PUBLIC_URL"])
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    page.goto(path)
    results = AXE.run(page)
    assert results.violations_count == 0, f"{path}\n{results.generate_report()}"
    context.close()


def press(page: Page, role: str, name: str) -> None:
    """Reach a control from the keyboard and use it."""
    control = page.get_by_role(role, name=name, exact=True)  # type: ignore[arg-type]
    control.focus()
    expect(control).to_be_focused()
    page.keyboard.press("Enter" if role == "button" else "Space")


def organizer(chromium: Browser, app: Flask, mailbox: Mailbox) -> Page:
    """Register, confirm and log in with JavaScript off."""
    context = chromium.new_context(base_url=app.config["PUBLIC_URL"], java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/register")
    page.get_by_label("Display name").fill("Olivia Organizer")
    page.get_by_label("Email").fill("olivia@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    mail_worker.drain(app)
    page.goto(mailbox.last_to("olivia@example.org").link())
    page.get_by_role("button", name="Confirm my address").click()
    page.get_by_label("Email").fill("olivia@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return page


def published_letter(app: Flask) -> tuple[int, str]:
    """Olivia's published letter (the committee's own pages are tested elsewhere)."""
    with app.app_context(), new_session(app) as session:
        olivia = session.scalars(select(User).where(User.email == "olivia@example.org")).one()
        petition = letters.create_draft(
            session,
            olivia,
            title="Drop the ICE contract",
            addressed_to="Satya Nadella, CEO, Microsoft",
            body_markdown="We ask you to **cancel** the contract.",
            goal=100,
            now=utcnow(),
            employers={"microsoft.com": "Microsoft"},
        )
        session.flush()
        letters.publish(session, petition, utcnow() - timedelta(days=30))
        session.commit()
        return petition.id, petition.slug or ""


def test_delivery_journey_by_keyboard_without_javascript(
    browser: Browser,  # noqa: F811
    served: Flask,
    mailbox: Mailbox,
) -> None:
    page = organizer(browser, served, mailbox)
    petition_id, slug = published_letter(served)
    manage = f"/letters/{petition_id}/delivery"
    page.goto(manage)
    expect(page.get_by_role("heading", name="Delivery and response")).to_be_visible()
    cookies = page.context.cookies()
    accessible(browser, served, manage, cookies)

    page.get_by_label("Name", exact=True).fill("Satya Nadella")
    page.get_by_label("Role (optional)").fill("CEO")
    page.get_by_label("Organisation (optional)").fill("Microsoft")
    press(page, "button", "Add target")
    expect(page.get_by_text("Target added.")).to_be_visible()

    delivered_on = (utcnow().date() - timedelta(days=12)).isoformat()
    page.get_by_label("Delivered to").select_option(label="Satya Nadella, CEO, Microsoft")
    page.get_by_label("Date of delivery").fill(delivered_on)
    press(page, "radio", "In person")
    page.get_by_label("Note (optional, shown on the public timeline)").fill("At the all-hands.")
    press(page, "button", "Record delivery and freeze the pack")
    expect(page.get_by_role("heading", name="The recipient's private link")).to_be_visible()
    link = page.get_by_label("Link").input_value()
    sha256 = page.locator("code.hash").first.inner_text()
    accessible(browser, served, manage, cookies)

    page.goto(manage)
    pdf_url = page.get_by_role("link", name="PDF").get_attribute("href") or ""
    answer = page.request.get(pdf_url)
    assert answer.headers["content-type"] == "application/pdf"
    pdf_text = PdfReader(io.BytesIO(answer.body())).pages[0].extract_text()
    assert "Delivered to Satya Nadella, CEO, Microsoft" in pdf_text

    recipient = browser.new_context(java_script_enabled=False).new_page()
    recipient.goto(link)
    expect(recipient.get_by_role("heading", name="Drop the ICE contract")).to_be_visible()
    accessible(browser, served, link)
    press(recipient, "button", "Confirm receipt")
    expect(recipient.get_by_text("Receipt was recorded on")).to_be_visible()
    recipient.get_by_label("Your name and role (optional)").fill("Satya Nadella, CEO")
    recipient.get_by_role("textbox", name="Your response").fill("We will review the contract.")
    press(recipient, "button", "Publish response")
    expect(recipient.get_by_text("Your response is published beside the letter.")).to_be_visible()
    accessible(browser, served, link)

    page.goto(manage)
    press(page, "radio", "Partly won")
    page.get_by_label("Short public note (optional)").fill("Reviewed, not yet cancelled.")
    press(page, "button", "Record outcome")
    expect(page.get_by_text("Outcome recorded on the public timeline.")).to_be_visible()
    page.get_by_label("Entry to correct").select_option(index=0)
    page.get_by_label("Correction", exact=True).fill("It was handed over at the town hall.")
    press(page, "button", "Publish correction")
    expect(page.get_by_text("the original entry stays visible")).to_be_visible()
    accessible(browser, served, manage, cookies)

    reader = browser.new_context(java_script_enabled=False).new_page()
    reader.goto(f"{served.config['PUBLIC_URL']}/p/{slug}")
    status = reader.locator("#delivery-status")
    expect(status).to_contain_text("Delivered to Satya Nadella, CEO, Microsoft on")
    expect(status).to_contain_text("answered on")
    response = reader.get_by_role("article", name="Response from Satya Nadella, CEO")
    expect(response).to_contain_text("We will review the contract.")
    expect(response).to_contain_text("Posted by the recipient")
    timeline = reader.locator("#timeline")
    expect(timeline).to_contain_text(sha256)
    expect(timeline).to_contain_text("At the all-hands.")
    expect(timeline).to_contain_text("It was handed over at the town hall.")
    expect(timeline).to_contain_text("Outcome: Partly won")
    expect(reader.locator("#verified-count")).to_be_visible()
    accessible(browser, served, f"/p/{slug}")

    # The link page is only ever the answer to a POST: check it in a tab with scripts on.
    context = browser.new_context(base_url=served.config["PUBLIC_URL"])
    context.add_cookies(page.context.cookies())
    tab = context.new_page()
    tab.goto(manage)
    tab.get_by_role("button", name="New recipient link").click()
    expect(tab.get_by_label("Link")).not_to_have_value(link)
    results = AXE.run(tab)
    assert results.violations_count == 0, results.generate_report()
    context.close()
