"""Verified employees and signer safety: what is counted, shown, kept and sent."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from petitions.db import Base, get_engine, new_session
from petitions.models import Signature
from tests.conftest import csrf_from, hidden

EMPLOYERS = "example.com Example Corp\nother.org Other Org"
TITLE = "Cancel the surveillance contract"
ADDRESSEE = "Pat Boss, CEO, Example Corp"


def _letter(site, **fields) -> str:
    return site.letter(TITLE, addressed_to=ADDRESSEE, employers=EMPLOYERS, **fields)


def _sign_and_confirm(site, slug, email, display="named", name="Someone", by_code=False, **extra):
    page = site.sign(slug, email, name=name, display=display, **extra)
    assert page.status_code == 200, page.get_data(as_text=True)
    if by_code:
        html = page.get_data(as_text=True)
        site.deliver()
        code = site.mailbox.last_to(email).code()
        response = site.client.post(
            "/confirm/code",
            data={"csrf_token": csrf_from(html), "handle": hidden(html, "handle"), "code": code},
        )
    else:
        response = site.confirm_link(email)
    assert "Your signature counts" in response.get_data(as_text=True)
    return response


def _stored_text(app) -> str:
    """Everything the database holds, as text: the SQLite files' bytes or a PostgreSQL dump."""
    engine = get_engine(app)
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        chunks = [path.read_bytes()]
        for suffix in ("-wal", "-journal"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                chunks.append(extra.read_bytes())
        return b"".join(chunks).decode("latin-1").casefold()
    with engine.connect() as conn:
        rows = []
        for table in Base.metadata.sorted_tables:
            rows += [r[0] for r in conn.execute(text(f"SELECT t::text FROM {table.name} t"))]
    return "\n".join(rows).casefold()


def test_database_keeps_no_verification_address_and_no_hidden_name(site, app):
    slug = _letter(site)
    signers = [
        ("nadia.named@example.com", "named", "Nadia Namedperson"),
        ("anya.anon@example.com", "anonymous", "Anya Anonperson"),
        ("colin.counted@example.com", "counted", "Colin Countperson"),
        ("theo.threshold@eng.example.com", "threshold", "Theo Thresholdperson"),
        ("sue.supporter@elsewhere.net", "anonymous", "Sue Supportperson"),
    ]
    for number, (email, display, name) in enumerate(signers):
        _sign_and_confirm(
            site,
            slug,
            email,
            display=display,
            name=name,
            by_code=number % 2 == 1,
            wants_updates="y" if display == "counted" else "",
            updates_email="colin.home@personal.example" if display == "counted" else "",
        )
    site.deliver()
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0
    stored = _stored_text(app)
    for email, _display, _name in signers:
        local = email.split("@")[0]
        assert email not in stored
        assert local not in stored, local
    for hidden_name in ["Anya Anonperson", "Colin Countperson", "Sue Supportperson"]:
        assert hidden_name.casefold() not in stored
    # What is meant to be kept is there, so the search itself works.
    assert "nadia namedperson" in stored
    # The personal address for updates is kept only sealed, in the subscriber store.
    assert "colin.home" not in stored
    assert "eng.example.com" in stored
    assert site.count(slug) == 5


def test_confirmation_email_and_landing_page_name_neither_letter_nor_addressee(site):
    slug = _letter(site)
    site.sign(slug, "quiet@example.com", display="counted")
    site.deliver()
    mail = site.mailbox.last_to("quiet@example.com")
    for needle in [TITLE, ADDRESSEE, "Example Corp", "surveillance", "Pat Boss", slug]:
        assert needle.casefold() not in mail.raw.casefold()
        assert needle.casefold() not in mail.html.casefold()
    assert mail.subject == "Your confirmation code"
    path = mail.link().removeprefix("http://undersigned.test")
    landing = site.client.get(path).get_data(as_text=True)
    for needle in [TITLE, ADDRESSEE, "surveillance"]:
        assert needle not in landing
    confirmed = site.post_form(path, path, {}).get_data(as_text=True)
    assert TITLE in confirmed  # shown only after the POST


def test_domains_subdomains_and_supporters_are_counted_apart(site):
    slug = _letter(site)
    _sign_and_confirm(site, slug, "a@example.com", affiliation="current")
    _sign_and_confirm(site, slug, "b@eng.example.com", affiliation="former")
    _sign_and_confirm(site, slug, "c@other.org", affiliation="contractor")
    _sign_and_confirm(site, slug, "d@notexample.com", affiliation="current")
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert site.count(slug) == 4
    assert re.search(r"<strong>2</strong> verified at Example Corp", page)
    assert "(1 current, 1 former, 0 contractors)" in page
    assert re.search(r"<strong>1</strong> verified at Other Org", page)
    assert "(0 current, 0 former, 1 contractors)" in page
    assert re.search(r"<strong>1</strong> supporters", page)


def test_only_listed_domains_when_supporters_are_off(site, app):
    slug = _letter(site, allow_supporters="")
    response = site.sign(slug, "outsider@gmail.example")
    assert response.status_code == 400
    assert "only from addresses at @example.com, @other.org" in response.get_data(as_text=True)
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 0
    _sign_and_confirm(site, slug, "insider@example.com")
    assert site.count(slug) == 1


def test_counted_only_keeps_no_name_or_role(site, app):
    slug = _letter(site)
    _sign_and_confirm(
        site, slug, "c@example.com", display="counted", name="Cee", job_title="SRE", team="Infra"
    )
    with new_session(app, write=False) as session:
        signature = session.scalars(select(Signature)).one()
    assert (signature.name, signature.job_title, signature.team, signature.email) == (
        None,
        None,
        None,
        None,
    )
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "Everyone so far chose to be counted" in page
    assert "SRE" not in page


def test_anonymous_signers_appear_only_as_verified_employees(site):
    slug = _letter(site)
    _sign_and_confirm(
        site,
        slug,
        "anon@example.com",
        display="anonymous",
        name="Hidden Person",
        job_title="Engineer",
        affiliation="former",
    )
    _sign_and_confirm(site, slug, "named@example.com", display="named", name="Open Person")
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "Verified former employee at Example Corp" in page
    assert "Engineer" in page
    assert "Hidden Person" not in page
    assert "Open Person" in page
    assert page.index("Open Person") < page.index("Verified former employee")  # newest first


@pytest.mark.parametrize("signed,revealed", [(2, False), (3, True), (4, True)])
def test_reveal_threshold_below_at_and_above(site, signed, revealed):
    slug = _letter(site, reveal_threshold="3")
    names = [f"Colleague Number{n}" for n in range(signed)]
    for n, name in enumerate(names):
        _sign_and_confirm(site, slug, f"t{n}@example.com", display="threshold", name=name)
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    for name in names:
        assert (name in page) is revealed
    assert page.count("Verified employee at Example Corp") == (0 if revealed else signed)


def test_withdraw_before_reveal_keeps_names_hidden(site):
    slug = _letter(site, reveal_threshold="3")
    confirmed = [
        _sign_and_confirm(site, slug, f"w{n}@example.com", display="threshold", name=f"Person W{n}")
        for n in range(2)
    ]
    code = re.search(r'id="withdraw-code">([^<]+)<', confirmed[0].get_data(as_text=True)).group(1)
    response = site.post_form("/withdraw", "/withdraw", {"code": code})
    assert "Your signature is withdrawn" in response.get_data(as_text=True)
    _sign_and_confirm(site, slug, "w2@example.com", display="threshold", name="Person W2")
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "Person W0" not in page and "Person W1" not in page and "Person W2" not in page
    _sign_and_confirm(site, slug, "w3@example.com", display="threshold", name="Person W3")
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert all(f"Person W{n}" in page for n in (1, 2, 3))
    assert "Person W0" not in page


def test_withdrawal_lowers_every_count(site, app):
    slug = _letter(site, reveal_threshold="2")
    first = _sign_and_confirm(site, slug, "x@example.com", display="threshold", name="X Person")
    _sign_and_confirm(site, slug, "y@example.com", display="threshold", name="Y Person")
    _sign_and_confirm(site, slug, "z@elsewhere.net", display="named", name="Z Person")
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "X Person" in page and site.count(slug) == 3
    link = re.search(r'(http://undersigned\.test/w/[^"<\s]+)', first.get_data(as_text=True)).group(
        1
    )
    path = link.removeprefix("http://undersigned.test")
    assert "Withdraw your signature" in site.client.get(path).get_data(as_text=True)
    assert site.count(slug) == 3  # the GET changed nothing
    response = site.post_form(path, path, {})
    assert "Your signature is withdrawn" in response.get_data(as_text=True)
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert site.count(slug) == 2
    assert re.search(r"<strong>1</strong> verified at Example Corp", page)
    assert "Y Person" not in page  # below the threshold again
    again = site.post_form(path, path, {})
    assert again.status_code == 400
    assert "Nothing to repair" in app.test_cli_runner().invoke(args=["recount"]).output


def test_plus_tags_and_case_make_one_signature(site, app):
    slug = _letter(site)
    _sign_and_confirm(site, slug, "Dana@Example.com")
    site.sign(slug, "dana+petition@example.COM")
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
    assert site.count(slug) == 1


def test_no_signed_state_cookie_and_no_addresses_or_tokens_in_logs(site, app, caplog):
    slug = _letter(site)
    site.client = app.test_client()  # a signer's browser, not the organizer's
    caplog.set_level(logging.DEBUG)
    response = _sign_and_confirm(site, slug, "logged@example.com", display="named", name="Log Me")
    link = site.mailbox.last_to("logged@example.com").link()
    token = link.rsplit("/", 1)[1]
    # Every log record but the test SMTP server's own (aiosmtpd, "mail.log"), which is not ours.
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert records  # the app did log (the worker's batch line, at least)
    for record in records:
        message = record.getMessage()
        assert "logged@example.com" not in message
        assert token not in message
    # Only the session cookie (CSRF token) is set; Flask-Login may clear its own, never set it.
    for cookie in response.headers.getlist("Set-Cookie"):
        assert cookie.startswith("session=") or "Max-Age=0" in cookie, cookie
    with site.client.session_transaction() as session:
        assert set(session.keys()) <= {"csrf_token"}
