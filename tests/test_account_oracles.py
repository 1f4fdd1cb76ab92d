"""Whether an address has an organizer account shows neither in the answer nor in the work
done: registering, asking for a reset and asking for a fresh link run the same statements
and answer the same whatever the address's state (issue 22)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, csrf_from
from tests.test_signer_oracles import _shape, _statements


def _post(app, page: str, action: str, data: dict[str, str]):
    """A fresh browser GETs `page` and POSTs `data` to `action`; the answer and the SQL sent
    during the POST."""
    client = app.test_client()
    token = csrf_from(client.get(page).get_data(as_text=True))
    answers = []
    sent = _statements(
        app, lambda: answers.append(client.post(action, data={"csrf_token": token, **data}))
    )
    return answers[0], sent


def _compare(app, page: str, action: str, by_state: dict[str, dict[str, str]]) -> None:
    results = {state: _post(app, page, action, data) for state, data in by_state.items()}
    first_answer, first_sql = next(iter(results.values()))
    # The page names the address typed (all the same length here); it is blanked.
    blank = lambda shape, email: (shape[0], shape[1].replace(email, ""), shape[2])  # noqa: E731
    emails = {state: data["email"] for state, data in by_state.items()}
    first_email = next(iter(emails.values()))
    for state, (answer, sent) in results.items():
        assert answer.status_code == 200, (state, answer.get_data(as_text=True))
        assert sent == first_sql, state
        assert blank(_shape(answer), emails[state]) == blank(_shape(first_answer), first_email)


@pytest.mark.config(RATELIMIT_ENABLED=False)  # one client here stands for many people
def test_register_reset_and_resend_do_the_same_whatever_the_account(site, app):
    site.organizer("known00@example.org")  # confirmed
    site.register("waiting@example.org")  # registered, never confirmed
    register = {"display_name": "Someone", "password": PASSWORD, "confirm": PASSWORD}
    _compare(
        app,
        "/register",
        "/register",
        {
            "new": {"email": "fresh00@example.org", **register},
            "taken": {"email": "known00@example.org", **register},
        },
    )
    states = {
        "none": {"email": "nobody0@example.org"},
        "confirmed": {"email": "known00@example.org"},
        "waiting": {"email": "waiting@example.org"},
    }
    _compare(app, "/account/reset", "/account/reset", states)
    _compare(app, "/account/reset", "/account/resend", states)
    site.deliver()
    # Each owner learns the truth in their own mailbox only.
    note = site.mailbox.last_to("nobody0@example.org")
    assert note.subject == "About your request at Undersigned"
    assert "already has one" in site.mailbox.to("known00@example.org")[-3].text
    assert site.mailbox.last_to("waiting@example.org").link()
