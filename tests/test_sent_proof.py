"""Proving a work address with a message the signer sends: a DKIM-signed message checked
against the keys that a real local DNS server publishes."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from petitions.db import checkpoint_sqlite, get_engine, new_session
from petitions.hashing import hash_address
from petitions.models import ProofPhrase, Signature, SignatureState
from tests.conftest import csrf_from, sign_fields
from tests.dkim_dns import KeyServer, dkim_app_fixture, dns_fixture, message, signed  # noqa: F401

EMPLOYERS = "example.com Example Corp\nother.org Other Org"
WORK = "ann@example.com"
HOME = "ann.home@personal.example.net"


def get_phrase(client, slug: str) -> tuple[str, str]:
    """Press "Show me a phrase"; the phrase and the page with the upload form."""
    start = client.get(f"/p/{slug}/sign/proof").get_data(as_text=True)
    pressed = client.post(f"/p/{slug}/sign/proof/phrase", data={"csrf_token": csrf_from(start)})
    assert pressed.status_code == 303
    html = client.get(f"/p/{slug}/sign/proof").get_data(as_text=True)
    match = re.search(r'id="proof-phrase">([^<]+)<', html)
    assert match, html
    return match.group(1), html


def upload(client, slug: str, html: str, raw: bytes, paste: bool = False, **details: str):
    """Send the saved message (as a file, or pasted) with the sign form's details."""
    data: dict[str, object] = {
        **sign_fields(html),
        "name": "Ann Example",
        "affiliation": "current",
        "display": "named",
        **details,
    }
    if paste:
        data["message_text"] = raw.decode()
    else:
        data["message_file"] = (io.BytesIO(raw), "message.eml")
    return client.post(f"/p/{slug}/sign/proof", data=data, content_type="multipart/form-data")


def work_message(
    dns: KeyServer,
    body: str,
    sender: str = WORK,
    domain: str = "example.com",
    sent_at: datetime | None = None,
    **options,
) -> bytes:
    """A message as the sender's mail system sends it, signed by `domain`."""
    headers = options.pop("headers", None)
    mail = message(sender, HOME, body, sent_at or datetime.now(UTC), **options)
    if headers:
        return signed(mail, dns.keys[domain], domain, headers=headers)
    return signed(mail, dns.keys[domain], domain)


def prove(site, dns: KeyServer, slug: str, client=None, **details: str):
    """The whole sent-message proof for Ann's work address."""
    client = client or site.client
    phrase, html = get_phrase(client, slug)
    raw = work_message(dns, f"Note to self:\n\n{phrase}\n")
    return upload(client, slug, html, raw, **details)


def stored_text(app: Flask) -> str:
    """Everything the database holds: the SQLite files' raw bytes, or a PostgreSQL dump."""
    engine = get_engine(app)
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True)
    return dump.stdout.decode()


def signatures(app: Flask) -> list[Signature]:
    with new_session(app, write=False) as session:
        return list(session.scalars(select(Signature).order_by(Signature.id)))


def no_mail_reached(site, *addresses: str) -> None:
    """Deliver all queued mail; nothing may reach the SMTP server for these addresses."""
    site.deliver()
    for address in addresses:
        assert site.mailbox.to(address) == []


def test_a_sent_message_counts_one_signature_and_nothing_is_mailed_to_work(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    site.mailbox.clear()
    sign_page = site.client.get(f"/p/{slug}/sign").get_data(as_text=True)
    assert "Prove it without any email to your work inbox" in sign_page
    assert "easier" in sign_page
    safety = site.client.get("/safety").get_data(as_text=True)
    assert "prove your address the other way" in safety
    queries = len(dns.resolver.queries)

    response = prove(site, dns, slug)

    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert "Your signature counts" in html
    assert re.search(r'id="withdraw-code">[0-9A-Z-]{19}<', html)
    assert site.count(slug) == 1
    assert "Ann Example" in site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "s2026._domainkey.example.com" in dns.resolver.queries[queries:]
    no_mail_reached(site, WORK, HOME)
    assert site.mailbox.messages == []
    [signature] = signatures(app)
    assert signature.state == SignatureState.CONFIRMED
    assert signature.email is None
    assert signature.email_domain == "example.com"
    with app.app_context():
        assert signature.address_hash == hash_address(WORK)  # as the emailed code keeps it
    with new_session(app, write=False) as session:
        assert session.scalars(select(ProofPhrase.used_at)).one() is not None
    checkpoint_sqlite(get_engine(app))
    stored = stored_text(app)
    assert "Note to self" not in stored and "dkim-signature" not in stored.casefold()
    assert "example corp" in stored.casefold()  # the search itself works


def test_a_pasted_message_from_a_subdomain_counts_too(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    raw = work_message(
        dns, f"{phrase.lower()}\n", sender="Bo <bo@eng.example.com>", domain="eng.example.com"
    )
    response = upload(site.client, slug, html, raw, paste=True, display="counted")
    assert "Your signature counts" in response.get_data(as_text=True)
    assert site.count(slug) == 1
    assert signatures(app)[0].email_domain == "eng.example.com"


def _tampered_body(dns, phrase):
    return work_message(dns, f"Note to self:\n\n{phrase}\n").replace(b"Note to", b"Note for")


def _tampered_header(dns, phrase):
    return work_message(dns, f"{phrase}\n").replace(b"Subject: Hello", b"Subject: Hellp")


def _other_domain(dns, phrase):
    return work_message(dns, f"{phrase}\n", sender="ann@elsewhere.net", domain="elsewhere.net")


def _from_elsewhere(dns, phrase):
    return work_message(dns, f"{phrase}\n", sender="ann@elsewhere.net")


def _broken_from(dns, phrase):
    # the standard library's strict header parser raises AttributeError on this one
    return work_message(dns, f"{phrase}\n").replace(b"From: ann@example.com", b"From: ann@[", 1)


def _unsigned(dns, phrase):
    return message(WORK, HOME, f"{phrase}\n", datetime.now(UTC)).as_bytes()


def _forwarded(dns, phrase):
    body = f"---------- Forwarded message ---------\nFrom: <{WORK}>\n\n{phrase}\n"
    return work_message(
        dns, body, sender=HOME, domain="elsewhere.net", subject="Fwd: Hello"
    ).replace(HOME.encode(), b"ann@elsewhere.net", 1)


def _phrase_missing(dns, phrase):
    return work_message(dns, "Undersigned ABCD-EFGH-JKMN\n")


def _too_old(dns, phrase):
    return work_message(dns, f"{phrase}\n", sent_at=datetime.now(UTC) - timedelta(hours=2))


def _date_added_on_top(dns, phrase):
    old = work_message(dns, f"{phrase}\n", sent_at=datetime.now(UTC) - timedelta(hours=3))
    return f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode() + old


def _date_not_signed(dns, phrase):
    return work_message(dns, f"{phrase}\n", headers=(b"from", b"to", b"subject"))


REFUSALS = {
    "tampered body": (_tampered_body, 400, "changed after it was sent"),
    "tampered header": (_tampered_header, 400, "changed after it was sent"),
    "another domain": (_other_domain, 400, "signed by elsewhere.net, which is not one of"),
    "from another domain": (_from_elsewhere, 400, "from an address at elsewhere.net"),
    "broken From": (_broken_from, 400, "changed after it was sent"),
    "no DKIM": (_unsigned, 400, "has no DKIM signature"),
    "forwarded": (_forwarded, 400, "This message was forwarded"),
    "phrase missing": (_phrase_missing, 400, "does not contain the phrase shown on this page"),
    "too old": (_too_old, 400, "This message is too old"),
    "date added on top": (_date_added_on_top, 400, "must have exactly one date"),
    "date not signed": (_date_not_signed, 400, "but not its sender, date and whole text"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_message_that_proves_nothing_is_refused_clearly_and_nothing_is_stored(
    site, app, dns, case
):
    build, status, text = REFUSALS[case]
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    response = upload(site.client, slug, html, build(dns, phrase))
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert text in page
    assert 'role="alert"' in page and "Undersigned</a>" in page  # the site's own page
    assert signatures(app) == []
    assert site.count(slug) == 0
    with new_session(app, write=False) as session:
        assert session.scalars(select(ProofPhrase.used_at)).one() is None
    no_mail_reached(site, WORK, HOME)


def test_a_dns_failure_asks_to_try_again_and_a_retry_works(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    raw = work_message(dns, f"{phrase}\n")
    dns.resolver.failing = True
    response = upload(site.client, slug, html, raw)
    assert response.status_code == 503
    assert "please try again in a minute" in response.get_data(as_text=True)
    assert signatures(app) == []
    dns.resolver.failing = False
    assert "Your signature counts" in upload(site.client, slug, html, raw).get_data(as_text=True)


def test_a_dns_server_that_never_answers_asks_to_try_again(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    app.config.update(DKIM_NAMESERVER="127.0.0.1:9", DKIM_DNS_TIMEOUT=0.5)  # nobody there
    phrase, html = get_phrase(site.client, slug)
    response = upload(site.client, slug, html, work_message(dns, f"{phrase}\n"))
    assert response.status_code == 503
    assert "try again" in response.get_data(as_text=True)
    assert signatures(app) == []


def test_a_replayed_phrase_is_refused(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    raw = work_message(dns, f"{phrase}\n")
    assert "Your signature counts" in upload(site.client, slug, html, raw).get_data(as_text=True)
    again = upload(site.client, slug, html, raw)
    assert again.status_code == 400
    assert "each phrase works once" in again.get_data(as_text=True)
    # Another browser with the same message: its own phrase is not in it.
    other = app.test_client()
    _, other_html = get_phrase(other, slug)
    stolen = upload(other, slug, other_html, raw, name="Mallory")
    assert "does not contain the phrase" in stolen.get_data(as_text=True)
    assert site.count(slug) == 1
    assert len(signatures(app)) == 1


def test_a_phrase_is_used_once_even_by_its_own_browser(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    with new_session(app) as session:
        session.execute(update(ProofPhrase).values(used_at=datetime.now(UTC)))
        session.commit()
    response = upload(site.client, slug, html, work_message(dns, f"{phrase}\n"))
    assert response.status_code == 400
    assert "This phrase was already used" in response.get_data(as_text=True)
    assert signatures(app) == []


def test_an_expired_phrase_is_refused(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    past = datetime.now(UTC) - timedelta(minutes=61)
    with new_session(app) as session:
        session.execute(update(ProofPhrase).values(created_at=past, expires_at=past))
        session.commit()
    response = upload(site.client, slug, html, work_message(dns, f"{phrase}\n"))
    assert response.status_code == 400
    assert "more than an hour old" in response.get_data(as_text=True)
    assert signatures(app) == []


def test_a_five_megabyte_upload_is_refused_in_the_sites_look(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    huge = work_message(dns, f"{phrase}\n" + "x" * (5 * 1024 * 1024))
    response = upload(site.client, slug, html, huge)
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "This message is too large" in page and "Undersigned</a>" in page
    assert signatures(app) == []


def test_uploads_stay_below_the_size_werkzeug_spools_to_disk(app):
    # Werkzeug keeps a file part in memory up to 500 KB (formparser.default_stream_factory).
    assert app.config["MAX_CONTENT_LENGTH"] <= 500 * 1024


def test_signing_by_both_routes_counts_once(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    # The code first (with a +tag: the same person), then the sent message.
    site.sign(slug, "Ann+letters@Example.com")
    assert "Your signature counts" in site.confirm_link("Ann+letters@Example.com").get_data(
        as_text=True
    )
    again = prove(site, dns, slug)
    assert "Already confirmed" in again.get_data(as_text=True)
    assert site.count(slug) == 1
    # A pending code, then the message: counted once, and the old link no longer counts.
    site.sign(slug, "bo@example.com", name="Bo")
    site.deliver()
    link = site.mailbox.last_to("bo@example.com").link().removeprefix("http://undersigned.test")
    phrase, html = get_phrase(site.client, slug)
    raw = work_message(dns, f"{phrase}\n", sender="bo@example.com")
    assert "Your signature counts" in upload(site.client, slug, html, raw).get_data(as_text=True)
    late = site.post_form(link, link, {})
    assert "Already confirmed" in late.get_data(as_text=True)
    assert site.count(slug) == 2
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 2


@pytest.mark.config(RATELIMIT_ENABLED=False)  # one client here stands for many people
def test_a_mangled_message_is_refused_never_a_crash(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    phrase, html = get_phrase(site.client, slug)
    original = work_message(dns, f"Note to self:\n\n{phrase}\n")

    # Mostly in the headers (the DKIM-Signature comes first), with the bytes its tags are made of.
    tag_bytes = st.lists(st.sampled_from(list(b"=;:\r\n \t-_ab09+/@.<>\"'\x00\xff")), max_size=8)

    @settings(max_examples=120, deadline=None, database=None)
    @given(
        edits=st.lists(
            st.tuples(st.integers(0, 900), st.integers(0, 8), tag_bytes.map(bytes)),
            min_size=1,
            max_size=5,
        )
    )
    def upload_mangled(edits: list[tuple[int, int, bytes]]) -> None:
        raw = original
        for at, cut, insert in edits:
            raw = raw[:at] + insert + raw[at + cut :]
        response = upload(site.client, slug, html, raw)
        # 200 only where the edit left the signed content as it was (relaxed whitespace)
        assert response.status_code in {200, 400}, response.get_data(as_text=True)

    upload_mangled()
    assert site.count(slug) <= 1
