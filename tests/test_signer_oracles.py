"""Nobody learns who signed from an answer: every answer that can follow a sign form is the
same, byte for byte and header for header, whatever the address's history and whatever became
of the signature behind a code form someone kept open (issue 22)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import event, select, update

from petitions.db import get_engine, new_session
from petitions.models import Petition, Signature, Token
from tests.conftest import csrf_from, hidden

WRONG = "0000-0000"
#: values that differ on every answer by design (fresh secrets), blanked before comparing
SECRETS = re.compile(r'(name="(?:csrf_token|handle)"[^>]*value=")[^"]*(")')
COOKIE = re.compile(r"=([^;]*)")

#: each test signs again and again from one client, as many people would
pytestmark = pytest.mark.config(RATELIMIT_ENABLED=False)


def _shape(response) -> tuple:
    """What a stranger can compare of an answer: status, body (its fresh secrets blanked),
    length, and every header but the date."""
    body = SECRETS.sub(r"\1\2", response.get_data(as_text=True))
    headers = sorted(
        # Each browser's session cookie holds its own CSRF secret: its length must match.
        (
            name,
            COOKIE.sub(lambda m: f"={len(m.group(1))}", value) if name == "Set-Cookie" else value,
        )
        for name, value in response.headers.items()
        if name != "Date"
    )
    return response.status_code, body, headers


def _code(client, page: str, code: str):
    return client.post(
        "/confirm/code",
        data={"csrf_token": csrf_from(page), "handle": hidden(page, "handle"), "code": code},
    )


def _resend(client, page: str):
    return client.post(
        "/confirm/resend",
        data={"csrf_token": csrf_from(page), "handle": hidden(page, "handle")},
    )


def _withdraw(site, confirmed_page) -> None:
    code = re.search(r'id="withdraw-code">([^<]+)<', confirmed_page.get_data(as_text=True))
    response = site.post_form("/withdraw", "/withdraw", {"code": code.group(1)})
    assert "Your signature is withdrawn" in response.get_data(as_text=True)


def _expire_and_purge(site) -> None:
    with new_session(site.app) as session:
        session.execute(update(Token).values(expires_at=Token.created_at))
        session.commit()
    assert site.app.test_cli_runner().invoke(args=["purge"]).exit_code == 0


def _states(site, slug: str) -> dict[str, str]:
    """One address in each history: never seen, pending, counted, withdrawn, purged."""
    site.sign(slug, "pending@example.com")
    site.sign(slug, "counted@example.com")
    site.confirm_link("counted@example.com")
    site.sign(slug, "withdrawn@example.com")
    _withdraw(site, site.confirm_link("withdrawn@example.com"))
    return {
        "new": "new@example.com",
        "pending": "pending@example.com",
        "counted": "counted@example.com",
        "withdrawn": "withdrawn@example.com",
    }


def test_the_check_email_page_is_the_same_whatever_the_address_history(site, app):
    slug = site.letter()
    addresses = _states(site, slug)
    site.sign(slug, "purged@example.com")
    _expire_and_purge(site)
    addresses["purged"] = "purged@example.com"
    shapes = {}
    for state, address in addresses.items():
        response = site.sign(slug, address, client=app.test_client())
        assert response.status_code == 200
        assert "Check your email" in response.get_data(as_text=True)
        shapes[state] = _shape(response)
    assert all(shape == shapes["new"] for shape in shapes.values()), shapes.keys()
    headers = dict(shapes["new"][2])
    assert "ETag" not in headers and headers["Cache-Control"] == "no-store"


def _code_journey(site, slug: str, address: str) -> list[tuple]:
    """Sign in a fresh browser, type wrong codes past the limit, ask for a fresh email from
    the lockout page, and type a wrong code into the new form: every answer's shape."""
    client = site.app.test_client()
    page = site.sign(slug, address, client=client).get_data(as_text=True)
    answers = []
    limit = site.app.config["CODE_MAX_ATTEMPTS"]
    for _ in range(limit + 1):
        answer = _code(client, page, WRONG)
        answers.append(_shape(answer))
    locked = answer.get_data(as_text=True)
    assert "Too many wrong codes" in locked and "Send me a fresh email" in locked
    fresh = _resend(client, locked)
    assert fresh.status_code == 200
    answers.append(_shape(fresh))
    answers.append(_shape(_code(client, fresh.get_data(as_text=True), WRONG)))
    return answers


def test_a_decoy_counts_tries_locks_and_resends_exactly_like_a_real_signature(site):
    slug = site.letter()
    addresses = _states(site, slug)
    journeys = {state: _code_journey(site, slug, address) for state, address in addresses.items()}
    assert "4 more tries" in journeys["new"][0][1]
    assert "Too many wrong codes" in journeys["new"][-3][1]
    for state, journey in journeys.items():
        assert journey == journeys["new"], state


def _confirm_by_owner(site, slug, address):
    site.confirm_link(address, client=site.app.test_client())


def _withdraw_by_owner(site, slug, address):
    owner = site.app.test_client()
    _withdraw(site, site.confirm_link(address, client=owner))


def _sign_again_by_owner(site, slug, address):
    site.sign(slug, address, client=site.app.test_client())


def _close_letter(site, slug, address):
    with new_session(site.app, write=False) as session:
        petition_id = session.scalars(select(Petition.id).where(Petition.slug == slug)).one()
    response = site.post_form(f"/letters/{petition_id}", f"/letters/{petition_id}/close", {})
    assert response.status_code == 302


EVENTS: dict[str, Callable] = {
    "confirmed by link": _confirm_by_owner,
    "confirmed, then withdrawn": _withdraw_by_owner,
    "signed again": _sign_again_by_owner,
    "letter closed": _close_letter,
    "every link expired and purged": lambda site, _slug, _address: _expire_and_purge(site),
}


@pytest.mark.parametrize("event_name", EVENTS)
def test_a_kept_code_form_answers_the_same_whatever_became_of_its_signature(site, event_name):
    """A code form opened with a colleague's address, kept, and tried again after the
    colleague acted: the same answers as a form whose signature nothing happened to, and as
    one opened with an address that already counted (a decoy)."""
    slug = site.letter()
    site.sign(slug, "counted@example.com")
    site.confirm_link("counted@example.com")
    forms = {}
    for name, address in [("acted", "colleague@example.com"), ("idle", "idle@example.com")]:
        client = site.app.test_client()
        forms[name] = (client, site.sign(slug, address, client=client).get_data(as_text=True))
    decoy = site.app.test_client()
    forms["decoy"] = (decoy, site.sign(slug, "counted@example.com", client=decoy).get_data(True))
    first = {name: _shape(_code(client, page, WRONG)) for name, (client, page) in forms.items()}
    site.deliver()
    EVENTS[event_name](site, slug, "colleague@example.com")
    answers = {name: [first[name]] for name in forms}
    for name, (client, page) in forms.items():
        for _ in range(site.app.config["CODE_MAX_ATTEMPTS"]):
            answer = _code(client, page, WRONG)
            answers[name].append(_shape(answer))
        answers[name].append(_shape(_resend(client, answer.get_data(as_text=True))))
    assert answers["acted"] == answers["idle"] == answers["decoy"]
    purged = event_name == "every link expired and purged"
    assert ("Check the email" if purged else "3 more tries") in answers["acted"][1][1]


def _statements(app, action: Callable[[], object]) -> list[str]:
    """The SQL the database was sent while `action` ran (its parameters left out)."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:
        sent.append(statement)

    engine = get_engine(app)
    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


def test_signing_and_resending_run_the_same_statements_whatever_the_state(site, app):
    slug = site.letter()
    addresses = _states(site, slug)
    sign_sql, resend_sql, code_sql = {}, {}, {}
    for state, address in addresses.items():
        client = app.test_client()
        form = client.get(f"/p/{slug}/sign").get_data(as_text=True)
        fields = {"csrf_token": csrf_from(form), "started": hidden(form, "started")}
        data = {**fields, "email": address, "name": "Sam", "affiliation": "current"}
        data["display"] = "counted"
        page = []
        sign_sql[state] = _statements(
            app, lambda: page.append(client.post(f"/p/{slug}/sign", data=data))
        )
        html = page[0].get_data(as_text=True)
        code_sql[state] = _statements(app, lambda: _code(client, html, WRONG))
        resend_sql[state] = _statements(app, lambda: _resend(client, html))
    for state in addresses:
        assert sign_sql[state] == sign_sql["new"], state
        assert code_sql[state] == code_sql["new"], state
        assert resend_sql[state] == resend_sql["new"], state
    assert any(s.lstrip().upper().startswith("INSERT INTO OUTBOX") for s in resend_sql["new"])


def test_signing_changes_no_public_answer(site, app):
    """A pending signature is invisible: no count, ETag or length moves when someone signs
    with a new address or one that already counts."""
    slug = site.letter()
    site.sign(slug, "counted@example.com")
    site.confirm_link("counted@example.com")
    reader = app.test_client()
    # When the counts were read (the page, to the microsecond; the API) is blanked.
    as_of = re.compile(rb"<time class=\"as-of\"[^<]*</time>|\"updated_at\":\"[^\"]*\"")

    def public() -> list[tuple]:
        answers = []
        for page in [f"/api/v1/petitions/{slug}", f"/p/{slug}/badge.svg"]:
            r = reader.get(page)
            length = r.headers["Content-Length"]
            answers.append((r.status_code, r.headers["ETag"], length, as_of.sub(b"", r.data)))
        r = reader.get(f"/p/{slug}")
        answers.append((r.status_code, r.headers["Content-Length"], as_of.sub(b"", r.data)))
        return answers

    before = public()
    site.sign(slug, "counted@example.com", client=app.test_client())
    site.sign(slug, "someone.new@example.com", client=app.test_client())
    assert public() == before


def test_a_used_confirmation_link_names_no_letter(site):
    """The link sits in a mailbox the employer may read: once used, it says "already
    confirmed" and nothing about which letter."""
    slug = site.letter("Cancel the drone contract")
    site.sign(slug, "owner@example.com")
    site.confirm_link("owner@example.com")
    path = site.mailbox.last_to("owner@example.com").link().removeprefix("http://undersigned.test")
    for response in (site.client.get(path), site.post_form(path, path, {})):
        html = response.get_data(as_text=True)
        assert "Already confirmed" in html
        assert "drone" not in html and slug not in html


def test_a_stranger_who_signs_again_with_a_pending_address_learns_and_changes_nothing(site):
    """Someone types a pending colleague's address with their own details: when the colleague
    confirms with their own code, no stranger's name goes public and no "signed" email goes
    to the stranger's mailbox; the colleague is counted only, and told why."""
    slug = site.letter("Cancel the drone contract")
    colleague = site.app.test_client()
    page = site.sign(
        slug, "vic@example.com", name="Vic Tim", client=colleague, display="named"
    ).get_data(as_text=True)
    site.deliver()
    code = site.mailbox.last_to("vic@example.com").code()
    site.sign(
        slug,
        "vic@example.com",
        name="Planted Name",
        client=site.app.test_client(),
        display="named",
        wants_updates="y",
        updates_email="stranger@home.example",
    )
    confirmed = _code(colleague, page, code).get_data(as_text=True)
    assert "Your signature counts" in confirmed and "counted only" in confirmed
    site.deliver()
    assert site.mailbox.to("stranger@home.example") == []
    letter = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "Planted Name" not in letter and "Vic Tim" not in letter
    assert site.count(slug) == 1


def test_a_fresh_email_keeps_the_signers_own_details(site):
    slug = site.letter()
    client = site.app.test_client()
    page = site.sign(slug, "kept@example.com", name="Kept Person", client=client)
    fresh = _resend(client, page.get_data(as_text=True)).get_data(as_text=True)
    site.deliver()
    code = site.mailbox.last_to("kept@example.com").code()
    confirmed = _code(client, fresh, code).get_data(as_text=True)
    assert "Your signature counts" in confirmed and "counted only" not in confirmed
    with new_session(site.app, write=False) as session:
        signature = session.scalars(select(Signature)).one()
    assert (signature.display, signature.name) == ("named", "Kept Person")
