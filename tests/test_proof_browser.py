"""The sent-message proof in a real Chromium: the sign form's second way, a phrase, a changed
message refused, the saved message uploaded, and the signature counted with no mail at work."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, expect
from werkzeug.serving import make_server

from petitions import create_app
from petitions.db import get_engine
from petitions.mail import worker as mail_worker
from tests.conftest import Site, make_config
from tests.dkim_dns import KeyServer, dns_fixture  # noqa: F401 (fixture dns)
from tests.mailbox import Mailbox, free_port
from tests.test_browser import browser, heading, new_page  # noqa: F401 (fixture)
from tests.test_sent_proof import EMPLOYERS, WORK, work_message

TITLE = "Cancel the surveillance contract"


@pytest.fixture
def live_app(database_url: str, mailbox: Mailbox, dns: KeyServer) -> Iterator[Flask]:
    """The app over real HTTP on a free port, asking the test DNS server for DKIM keys."""
    mailbox.clear()
    mailbox.reject_code = None
    dns.resolver.failing = False
    port = free_port()
    config = make_config(
        database_url,
        mailbox.port,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        DKIM_NAMESERVER=dns.address,
        DKIM_DNS_TIMEOUT=2.0,
    )
    app = create_app(config)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join()
    get_engine(app).dispose()


@pytest.mark.browser
def test_a_signer_proves_their_work_address_with_a_message_they_sent(
    browser: Browser,  # noqa: F811
    live_app: Flask,
    mailbox: Mailbox,
    dns: KeyServer,
    tmp_path: Path,
) -> None:
    site = Site(live_app, live_app.test_client(), mailbox)
    slug = site.letter(TITLE, employers=EMPLOYERS)
    mailbox.clear()
    page = new_page(browser, live_app)
    page.goto(f"/p/{slug}/sign")
    expect(page.locator("#two-ways")).to_contain_text("The easier")
    page.get_by_role("link", name="Prove it without any email to your work inbox").click()
    expect(heading(page, "Prove it without any email to your work inbox")).to_be_visible()
    page.get_by_role("button", name="Show me a phrase").click()
    phrase = page.locator("#proof-phrase").inner_text()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    assert phrase.startswith("Undersigned ")

    changed = tmp_path / "changed.eml"
    changed.write_bytes(work_message(dns, f"Note to self\n\n{phrase}\n").replace(b"Note", b"Nope"))
    page.get_by_label("Upload the saved message (.eml)").set_input_files(changed)
    page.get_by_label("Your name").fill("Ann Example")
    page.get_by_label("Named: my name, job title and team are public").check()
    page.get_by_role("button", name="Check my message and sign").click()
    expect(page.get_by_role("alert")).to_contain_text("changed after it was sent")
    assert Axe().run(page).violations_count == 0

    saved = tmp_path / "message.eml"
    saved.write_bytes(work_message(dns, f"Note to self\n\n{phrase}\n"))
    page.get_by_label("Upload the saved message (.eml)").set_input_files(saved)
    page.get_by_role("button", name="Check my message and sign").click()
    expect(heading(page, "Thank you. Your signature counts.")).to_be_visible()
    expect(page.locator("#withdraw-code")).to_have_text(
        re.compile(r"^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$")
    )

    page.goto(f"/p/{slug}")
    expect(page.locator("#verified-count")).to_have_text("1")
    expect(page.get_by_text("Ann Example")).to_be_visible()
    mail_worker.drain(live_app)
    assert mailbox.to(WORK) == []
    assert mailbox.messages == []
