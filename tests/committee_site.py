"""Helpers for the committee and review tests: more accounts, each in its own browser-like
client, and the invitation link as a person reads it from their mailbox."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from petitions.db import new_session
from petitions.models import CommitteeMember, Invitation, User
from tests.conftest import PASSWORD, Site, csrf_from

BASE = "http://undersigned.test"


def person(site: Site, app: Flask, email: str, name: str) -> FlaskClient:
    """Register, confirm and log in an account in a client of its own."""
    client = app.test_client()
    data = {"display_name": name, "email": email, "password": PASSWORD, "confirm": PASSWORD}
    assert site.post_form("/register", "/register", data, client).status_code == 200
    site.deliver()
    path = site.mailbox.last_to(email).link().removeprefix(BASE)
    assert site.post_form(path, path, {}, client).status_code == 302
    assert site.login(email, client).status_code == 302
    return client


def post(site: Site, client: FlaskClient, page: str, action: str, **data: object):
    """POST a form found on `page` as `client`."""
    return site.post_form(page, action, data, client)


def invite(site: Site, owner: FlaskClient, petition_id: int, email: str, role: str = "organizer"):
    """The owner sends an invitation; returns the link's path from the invitee's mailbox."""
    page = f"/letters/{petition_id}/committee"
    response = post(site, owner, page, f"{page}/invite", email=email, role=role)
    assert response.status_code == 302, response.get_data(as_text=True)
    site.deliver()
    return site.mailbox.last_to(email).link().removeprefix(BASE)


def accept(site: Site, client: FlaskClient, link: str):
    """Open the invitation link and press Accept."""
    html = client.get(link).get_data(as_text=True)
    return client.post(link, data={"csrf_token": csrf_from(html)})


def role_of(app: Flask, petition_id: int, email: str) -> str | None:
    """The account's role on the letter's committee, None when not a member."""
    with new_session(app, write=False) as session:
        return session.scalar(
            select(CommitteeMember.role)
            .join(User, User.id == CommitteeMember.user_id)
            .where(CommitteeMember.petition_id == petition_id, User.email == email)
        )


def age_invitations(app: Flask, petition_id: int) -> None:
    """Let a week pass for the letter's invitations: they expire."""
    from datetime import timedelta

    from petitions.db import utcnow

    with new_session(app) as session:
        session.execute(
            update(Invitation)
            .where(Invitation.petition_id == petition_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def committee_of_two(site: Site, app: Flask) -> tuple[int, FlaskClient]:
    """Olivia's draft with Bea as organizer; returns the letter and Bea's client."""
    site.organizer()
    petition_id = site.draft()
    bea = person(site, app, "bea@example.org", "Bea Organizer")
    assert (
        accept(site, bea, invite(site, site.client, petition_id, "bea@example.org")).status_code
        == 302
    )
    return petition_id, bea
