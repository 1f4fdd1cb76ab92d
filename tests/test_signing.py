"""The core journey through the HTTP client: publish, sign, confirm by link or code."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from petitions.db import new_session
from petitions.models import OutboxMessage, Signature, SignatureState, Token
from tests.conftest import csrf_from, hidden, sign_fields


def test_sign_and_confirm_by_link_counts_once(site):
    slug = site.letter()
    assert site.count(slug) == 0
    response = site.sign(slug, "sam@example.net")
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    assert site.count(slug) == 0  # pending signatures do not count

    site.deliver()
    mail = site.mailbox.last_to("sam@example.net")
    path = mail.link().removeprefix("http://undersigned.test")
    # A mail scanner fetching the link changes nothing.
    for _ in range(3):
        page = site.client.get(path)
        assert page.status_code == 200
        assert "Confirm" in page.get_data(as_text=True)
    assert site.count(slug) == 0

    confirmed = site.post_form(path, path, {})
    assert confirmed.status_code == 200
    assert "Your signature counts" in confirmed.get_data(as_text=True)
    assert site.count(slug) == 1

    again = site.post_form(path, path, {})
    assert "Already confirmed" in again.get_data(as_text=True)
    assert site.count(slug) == 1


def test_confirm_by_typing_code_in_the_open_tab(site):
    slug = site.letter()
    page = site.sign(slug, "tab@example.net").get_data(as_text=True)
    handle = hidden(page, "handle")
    site.deliver()
    code = site.mailbox.last_to("tab@example.net").code()
    response = site.client.post(
        "/confirm/code",
        data={"csrf_token": csrf_from(page), "handle": handle, "code": code.lower()},
    )
    assert response.status_code == 200
    assert "Your signature counts" in response.get_data(as_text=True)
    assert site.count(slug) == 1


def test_wrong_codes_die_at_the_limit(site):
    slug = site.letter()
    page = site.sign(slug, "guess@example.net").get_data(as_text=True)
    handle, token = hidden(page, "handle"), csrf_from(page)
    site.deliver()
    real = site.mailbox.last_to("guess@example.net").code()
    wrong = "0000-0000" if real != "0000-0000" else "1111-1111"
    bodies = []
    for _ in range(5):
        r = site.client.post(
            "/confirm/code", data={"csrf_token": token, "handle": handle, "code": wrong}
        )
        assert r.status_code == 400
        bodies.append(r.get_data(as_text=True))
    assert "4 more tries" in bodies[0]
    assert "Too many wrong codes" in bodies[-1]
    # Even the right code is refused now; a fresh email is offered.
    r = site.client.post(
        "/confirm/code", data={"csrf_token": token, "handle": handle, "code": real}
    )
    assert "Too many wrong codes" in r.get_data(as_text=True)
    assert "Send me a fresh email" in r.get_data(as_text=True)
    assert site.count(slug) == 0


def test_same_page_whatever_the_address_history(site):
    slug = site.letter()
    first = site.sign(slug, "repeat@example.net")
    site.confirm_link("repeat@example.net")
    again = site.sign(slug, "Repeat+tag@Example.NET")
    new = site.sign(slug, "new@example.net")

    def normalized(response):
        html = response.get_data(as_text=True)
        html = re.sub(r'value="[^"]+"', 'value=""', html)
        return html

    assert first.status_code == again.status_code == new.status_code == 200
    assert normalized(first) == normalized(again) == normalized(new)
    assert site.count(slug) == 1
    with new_session(site.app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 2


def test_expired_link_offers_a_fresh_email(site, app):
    slug = site.letter()
    site.sign(slug, "late@example.net")
    site.deliver()
    path = site.mailbox.last_to("late@example.net").link().removeprefix("http://undersigned.test")
    with new_session(app) as session:
        for token in session.scalars(select(Token)):
            token.expires_at = token.created_at
        session.commit()
    page = site.client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert "expired" in html
    response = site.client.post(
        "/confirm/resend", data={"csrf_token": csrf_from(html), "handle": hidden(html, "handle")}
    )
    assert response.status_code == 200
    site.mailbox.clear()
    fresh = site.confirm_link("late@example.net")
    assert "Your signature counts" in fresh.get_data(as_text=True)
    assert site.count(slug) == 1


def test_tampered_link_is_refused_clearly(site):
    slug = site.letter()
    site.sign(slug, "tamper@example.net")
    site.deliver()
    path = site.mailbox.last_to("tamper@example.net").link().removeprefix("http://undersigned.test")
    bad = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    for candidate in [bad, "/c/nonsense", "/c/" + "x" * 5000]:
        response = site.client.get(candidate)
        assert response.status_code == 400
        assert "not valid" in response.get_data(as_text=True)
    assert site.count(slug) == 0


def test_closed_letter_stops_signing_and_shows_final_count(site):
    slug = site.letter()
    site.sign(slug, "early@example.net")
    site.confirm_link("early@example.net")
    petition_id = _petition_id(site, slug)
    response = site.post_form(f"/letters/{petition_id}", f"/letters/{petition_id}/close", {})
    assert response.status_code == 302
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "This letter is closed" in page
    assert f'href="/p/{slug}/sign"' not in page
    # A sign page kept in a bookmark says the letter is closed, and offers no form.
    form = site.client.get(f"/p/{slug}/sign")
    assert form.status_code == 410
    assert "This letter is closed" in form.get_data(as_text=True)
    assert 'name="email"' not in form.get_data(as_text=True)
    assert site.count(slug) == 1


def test_the_letter_page_links_to_its_own_sign_page(site, app):
    slug = site.letter()
    page = app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    assert f'href="/p/{slug}/sign"' in page
    form = app.test_client().get(f"/p/{slug}/sign").get_data(as_text=True)
    assert 'name="csrf_token"' in form and "Before you sign" in form
    assert app.test_client().get("/p/no-such-letter/sign").status_code == 404


def _petition_id(site, slug):
    from petitions.models import Petition

    with new_session(site.app, write=False) as session:
        return session.scalars(select(Petition.id).where(Petition.slug == slug)).one()


def test_email_is_queued_not_sent_in_the_request(site, app):
    slug = site.letter()
    site.mailbox.clear()
    site.sign(slug, "queued@example.net")
    assert site.mailbox.to("queued@example.net") == []
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) >= 1
        assert session.scalars(select(Signature)).one().state == SignatureState.PENDING
    site.deliver()
    assert len(site.mailbox.to("queued@example.net")) == 1


def test_shared_check_email_page_gives_each_signer_their_own_handle_and_token(site, app):
    slug = site.letter()
    signers = []
    for number in range(3):
        signer = app.test_client()
        page = site.sign(slug, f"pat{number}@example.net", client=signer)
        assert page.status_code == 200
        signers.append((signer, page.get_data(as_text=True)))
    assert len({hidden(page, "handle") for _, page in signers}) == 3
    assert len({csrf_from(page) for _, page in signers}) == 3
    site.deliver()
    for number, (signer, page) in enumerate(signers):
        code = site.mailbox.last_to(f"pat{number}@example.net").code()
        response = signer.post(
            "/confirm/code",
            data={"csrf_token": csrf_from(page), "handle": hidden(page, "handle"), "code": code},
        )
        assert "Your signature counts" in response.get_data(as_text=True)
    # The organizer is logged in, so their view of the letter is never a shared one.
    assert site.count(slug) == 3


def test_shared_confirmed_page_gives_each_signer_their_own_withdrawal_code(site, app):
    slug = site.letter()
    shown = []
    for number in range(3):
        signer = app.test_client()
        site.sign(slug, f"wes{number}@example.net", client=signer)
        page = site.confirm_link(f"wes{number}@example.net", client=signer)
        assert "Your signature counts" in page.get_data(as_text=True)
        code = re.search(r'id="withdraw-code">([A-Z0-9-]+)<', page.get_data(as_text=True))
        assert code
        shown.append(code.group(1))
    assert len(set(shown)) == 3
    assert site.count(slug) == 3
    # Each code withdraws its own signature.
    for number, code in enumerate(shown):
        withdrawn = site.post_form("/withdraw", "/withdraw", {"code": code})
        assert withdrawn.status_code == 200, withdrawn.get_data(as_text=True)
        assert site.count(slug) == 2 - number


def test_a_sign_form_sent_after_the_letter_closed_is_refused(site, app):
    site.organizer()
    petition_id = site.draft()
    slug = site.publish(petition_id)
    signer = app.test_client()
    fields = sign_fields(signer.get(f"/p/{slug}/sign").get_data(as_text=True))
    details = {"name": "Sam", "affiliation": "current", "display": "counted"}
    early = signer.post(f"/p/{slug}/sign", data={**fields, **details, "email": "early@example.net"})
    assert "Check your email" in early.get_data(as_text=True)
    closed = site.post_form(f"/letters/{petition_id}", f"/letters/{petition_id}/close", {})
    assert closed.status_code == 302
    # The form was open in the signer's tab; it is sent after the letter closed.
    late = signer.post(f"/p/{slug}/sign", data={**fields, **details, "email": "late@example.net"})
    assert late.status_code == 400
    assert "closed" in late.get_data(as_text=True)
    site.deliver()
    assert site.mailbox.to("late@example.net") == []
