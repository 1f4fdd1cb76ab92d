"""A letter's committee through HTTP: invitations (accepted, expired, revoked, reused, resent,
opened by the wrong account), roles, leaving and removal, the two-person rule, the log, and
members seeing nothing about signers beyond the public page."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from petitions.db import new_session, utcnow
from petitions.models import CommitteeLogEntry, PendingAction, Petition
from tests.committee_site import (
    accept,
    age_invitations,
    committee_of_two,
    invite,
    person,
    post,
    role_of,
)


def _state(app, petition_id: int) -> str:
    with new_session(app, write=False) as session:
        return str(session.get(Petition, petition_id).state)


def test_an_invitation_is_accepted_once_by_the_invited_address(site, app):
    site.organizer()
    petition_id = site.draft()
    link = invite(site, site.client, petition_id, "Bea@Example.org", role="viewer")
    message = site.mailbox.last_to("bea@example.org")
    assert "Drop the ICE contract" not in message.text  # a work mailbox may be read
    assert "Olivia" not in message.text

    anonymous = app.test_client()
    page = anonymous.get(link).get_data(as_text=True)
    assert "log in with the address this invitation was sent to" in page
    assert "Drop the ICE contract" not in page

    bea = person(site, app, "bea@example.org", "Bea Viewer")
    page = bea.get(link).get_data(as_text=True)
    assert "Drop the ICE contract" in page and "as viewer" in page
    assert accept(site, bea, link).status_code == 302
    assert role_of(app, petition_id, "bea@example.org") == "viewer"
    assert bea.get(f"/letters/{petition_id}").status_code == 200

    # Reused: the link is spent, for its owner and for anyone else.
    again = accept(site, bea, link)
    assert again.status_code == 409 and "already used" in again.get_data(as_text=True)
    log = site.client.get(f"/letters/{petition_id}/committee/log").get_data(as_text=True)
    assert "Invited bea@example.org as viewer." in log and "Joined as viewer." in log


def test_an_invitation_never_says_whether_the_address_has_an_account(site, app):
    site.organizer()
    petition_id = site.draft()
    person(site, app, "has-account@example.org", "Has Account")
    site.mailbox.clear()
    pages, flashes = [], []
    for email in ["has-account@example.org", "no-account@example.org"]:
        page = f"/letters/{petition_id}/committee"
        response = post(site, site.client, page, f"{page}/invite", email=email, role="organizer")
        assert response.status_code == 302
        flashes.append(site.client.get(page).get_data(as_text=True).count("Invitation sent to"))
        site.deliver()
        message = site.mailbox.last_to(email)
        pages.append(app.test_client().get(message.link().removeprefix("http://undersigned.test")))
        assert message.subject == "An invitation on Undersigned"
    assert flashes == [1, 1]
    assert [p.status_code for p in pages] == [200, 200]
    links = [m.link().removeprefix("http://undersigned.test") for m in site.mailbox.messages]
    bodies = [
        page.get_data(as_text=True).replace(quote(link, safe=""), "").replace(link, "")
        for page, link in zip(pages, links, strict=True)
    ]
    assert bodies[0] == bodies[1]
    texts = [m.text.replace(m.link(), "") for m in site.mailbox.messages]
    assert texts[0] == texts[1]


def test_expired_revoked_and_wrong_account_invitations_are_refused(site, app):
    site.organizer()
    petition_id = site.draft()
    cleo = person(site, app, "cleo@example.org", "Cleo")
    dan = person(site, app, "dan@example.org", "Dan")

    # Opened by the wrong account.
    link = invite(site, site.client, petition_id, "cleo@example.org")
    page = dan.get(link).get_data(as_text=True)
    assert "for another address" in page and "Drop the ICE contract" not in page
    wrong = accept(site, dan, link)
    assert wrong.status_code == 409 and "sent to another address" in wrong.get_data(as_text=True)
    assert role_of(app, petition_id, "dan@example.org") is None

    # Revoked.
    page = f"/letters/{petition_id}/committee"
    html = site.client.get(page).get_data(as_text=True)
    assert "cleo@example.org as organizer" in html
    with new_session(app, write=False) as session:
        from petitions.models import Invitation

        invitation_id = session.scalars(select(Invitation.id)).one()
    post(site, site.client, page, f"{page}/invitations/{invitation_id}/revoke")
    assert cleo.get(link).status_code == 410
    assert "withdrawn" in accept(site, cleo, link).get_data(as_text=True)
    assert role_of(app, petition_id, "cleo@example.org") is None

    # Expired, then resent: the new link works and the old one never does.
    link = invite(site, site.client, petition_id, "cleo@example.org")
    age_invitations(app, petition_id)
    expired = cleo.get(link)
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert "expired" in site.client.get(page).get_data(as_text=True)
    with new_session(app, write=False) as session:
        invitation_id = session.scalars(
            select(Invitation.id).where(Invitation.revoked_at.is_(None))
        ).one()
    post(site, site.client, page, f"{page}/invitations/{invitation_id}/resend")
    site.deliver()
    fresh = site.mailbox.last_to("cleo@example.org").link().removeprefix("http://undersigned.test")
    assert fresh != link
    assert accept(site, cleo, link).status_code == 409
    assert accept(site, cleo, fresh).status_code == 302
    assert role_of(app, petition_id, "cleo@example.org") == "organizer"

    # A link that was never issued.
    assert cleo.get("/account/invitations/not-a-real-token").status_code == 410


def test_a_removed_member_is_refused_on_the_very_next_request(site, app):
    petition_id, bea = committee_of_two(site, app)
    assert bea.get(f"/letters/{petition_id}").status_code == 200
    with new_session(app, write=False) as session:
        from petitions.models import CommitteeMember, User

        bea_member = session.scalars(
            select(CommitteeMember.id)
            .join(User, User.id == CommitteeMember.user_id)
            .where(User.email == "bea@example.org")
        ).one()
    page = f"/letters/{petition_id}/committee"
    assert post(site, site.client, page, f"{page}/members/{bea_member}/remove").status_code == 302
    assert bea.get(f"/letters/{petition_id}").status_code == 404
    assert bea.get(page).status_code == 404
    assert "Drop the ICE contract" not in bea.get("/letters/").get_data(as_text=True)
    token_page = bea.get("/letters/").get_data(as_text=True)
    assert post(site, bea, "/letters/", f"/letters/{petition_id}/edit").status_code == 404
    assert "Removed Bea Organizer" in site.client.get(f"{page}/log").get_data(as_text=True)
    assert token_page


def test_the_last_owner_cannot_leave_or_step_down(site, app):
    petition_id, _ = committee_of_two(site, app)
    page = f"/letters/{petition_id}/committee"
    response = post(site, site.client, page, f"{page}/leave")
    assert response.status_code == 302
    assert "needs an owner" in site.client.get(page).get_data(as_text=True)
    assert role_of(app, petition_id, "olivia@example.org") == "owner"
    with new_session(app, write=False) as session:
        from petitions.models import CommitteeMember, User

        ids = dict(
            session.execute(
                select(User.email, CommitteeMember.id).join(
                    User, User.id == CommitteeMember.user_id
                )
            ).all()
        )
    own = ids["olivia@example.org"]
    post(site, site.client, page, f"{page}/members/{own}/role", **{f"member-{own}-role": "viewer"})
    assert role_of(app, petition_id, "olivia@example.org") == "owner"

    # With a second owner, the first may go; the organizer may leave at any time.
    bea_id = ids["bea@example.org"]
    post(
        site,
        site.client,
        page,
        f"{page}/members/{bea_id}/role",
        **{f"member-{bea_id}-role": "owner"},
    )
    assert role_of(app, petition_id, "bea@example.org") == "owner"
    assert post(site, site.client, page, f"{page}/leave").headers["Location"] == "/letters/"
    assert role_of(app, petition_id, "olivia@example.org") is None
    assert site.client.get(f"/letters/{petition_id}").status_code == 404


def test_a_viewer_sees_but_every_post_is_refused(site, app):
    site.organizer()
    petition_id = site.draft()
    vic = person(site, app, "vic@example.org", "Vic Viewer")
    accept(site, vic, invite(site, site.client, petition_id, "vic@example.org", role="viewer"))
    show = vic.get(f"/letters/{petition_id}")
    assert show.status_code == 200
    assert f'action="/letters/{petition_id}/publish"' not in show.get_data(as_text=True)
    assert vic.get(f"/letters/{petition_id}/edit").status_code == 403
    base = f"/letters/{petition_id}"
    refused = [
        (f"{base}/publish", {}),
        (f"{base}/close", {}),
        (
            f"{base}/edit",
            {
                "title": "Hijacked",
                "addressed_to": "x",
                "body_markdown": "y",
                "reveal_threshold": "10",
            },
        ),
        (f"{base}/appeal", {"message": "please"}),
        (f"{base}/actions/1/approve", {}),
        (f"{base}/committee/invite", {"email": "evil@example.org", "role": "owner"}),
        (f"{base}/committee/rule", {"enabled": "y"}),
        (f"{base}/committee/members/1/remove", {}),
        (f"{base}/committee/members/1/role", {"member-1-role": "viewer"}),
    ]
    for action, data in refused:
        assert post(site, vic, base, action, **data).status_code == 403, action
    assert _state(app, petition_id) == "draft"
    assert role_of(app, petition_id, "olivia@example.org") == "owner"
    # What a viewer may do: their own visibility, and leaving.
    assert post(site, vic, base, f"{base}/committee/shown", shown="y").status_code == 302
    assert post(site, vic, base, f"{base}/committee/leave").status_code == 302
    assert role_of(app, petition_id, "vic@example.org") is None


def test_with_the_two_person_rule_publishing_waits_for_a_second_member(site, app):
    petition_id, bea = committee_of_two(site, app)
    base = f"/letters/{petition_id}"
    assert post(site, site.client, base, f"{base}/committee/rule", enabled="y").status_code == 302
    with new_session(app, write=False) as session:
        assert session.get(Petition, petition_id).two_person_rule

    # An action that cannot happen now is refused when proposed.
    post(site, site.client, base, f"{base}/close")
    assert "Only an open letter can be closed." in site.client.get(base).get_data(as_text=True)
    post(site, site.client, base, f"{base}/publish")
    assert _state(app, petition_id) == "draft"
    page = site.client.get(base).get_data(as_text=True)
    assert "waits for another member" in page and "Publish the letter" in page
    with new_session(app, write=False) as session:
        action_id = session.scalars(select(PendingAction.id)).one()
    # The proposer cannot approve their own action.
    assert f"actions/{action_id}/approve" not in page
    post(site, site.client, base, f"{base}/actions/{action_id}/approve")
    assert _state(app, petition_id) == "draft"
    assert "Another member must approve" in site.client.get(base).get_data(as_text=True)

    # An edit waits too, and Bea approves the publication.
    assert post(site, bea, base, f"{base}/actions/{action_id}/approve").status_code == 302
    assert _state(app, petition_id) == "open"
    log = site.client.get(f"{base}/committee/log").get_data(as_text=True)
    assert f"Proposed: Publish the letter (action {action_id}), waiting" in log
    assert "Bea Organizer" in log

    # Closing: Bea proposes, the action expires after 7 days unapproved.
    post(site, bea, base, f"{base}/close")
    with new_session(app) as session:
        close_id = session.scalars(
            select(PendingAction.id).where(PendingAction.kind == "close")
        ).one()
        session.execute(
            update(PendingAction)
            .where(PendingAction.id == close_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    post(site, site.client, base, f"{base}/actions/{close_id}/approve")
    assert _state(app, petition_id) == "open"
    assert "expired" in site.client.get(base).get_data(as_text=True)

    # Turning the rule off is itself held until another owner approves.
    post(site, site.client, base, f"{base}/committee/rule")
    with new_session(app, write=False) as session:
        assert session.get(Petition, petition_id).two_person_rule
        off_id = session.scalars(
            select(PendingAction.id).where(PendingAction.kind == "rule_off")
        ).one()
    assert post(site, bea, base, f"{base}/actions/{off_id}/approve").status_code == 403


def test_the_committee_log_is_append_only(site, app):
    committee_of_two(site, app)
    with new_session(app) as session:
        assert session.scalars(select(CommitteeLogEntry)).all()
        for statement in ["UPDATE committee_log SET detail = 'x'", "DELETE FROM committee_log"]:
            with pytest.raises(DBAPIError):
                session.execute(text(statement))
            session.rollback()


def test_a_member_appears_on_the_letter_only_by_choice(site, app):
    petition_id, bea = committee_of_two(site, app)
    slug = site.publish(petition_id)
    public = app.test_client()
    assert "Organized by" not in public.get(f"/p/{slug}").get_data(as_text=True)
    base = f"/letters/{petition_id}"
    post(site, bea, base, f"{base}/committee/shown", shown="y")
    html = public.get(f"/p/{slug}").get_data(as_text=True)
    assert "Organized by Bea Organizer" in html and "Olivia" not in html
    assert "bea@example.org" not in html
    post(site, bea, base, f"{base}/committee/shown")
    assert "Organized by" not in public.get(f"/p/{slug}").get_data(as_text=True)


def test_no_committee_page_shows_more_about_signers_than_the_public_page(site, app):
    petition_id, bea = committee_of_two(site, app)
    slug = site.publish(petition_id)
    signers = [
        ("quiet-q7@example.net", "Quinn Hidden", "counted"),
        ("nora-n7@example.net", "Nora Named", "named"),
    ]
    for email, name, display in signers:
        site.sign(slug, email, name=name, client=app.test_client(), display=display)
        site.confirm_link(email, app.test_client())
    public = app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    assert "Nora Named" in public and "Quinn Hidden" not in public
    base = f"/letters/{petition_id}"
    pages = ["/letters/", base, f"{base}/edit", f"{base}/committee", f"{base}/committee/log"]
    for client in (site.client, bea):
        for page in pages:
            html = client.get(page).get_data(as_text=True)
            assert "Quinn Hidden" not in html, page
            for email, _, _ in signers:
                assert email not in html and email.split("@")[0] not in html, page


def test_bad_committee_input_gets_a_clear_4xx_in_the_site_look(site, app):
    site.organizer()
    petition_id = site.draft()
    page = f"/letters/{petition_id}/committee"
    bad = post(site, site.client, page, f"{page}/invite", email="not an address", role="owner")
    assert bad.status_code == 400 and "does not look right" in bad.get_data(as_text=True)
    odd_role = post(site, site.client, page, f"{page}/invite", email="x@example.org", role="king")
    assert odd_role.status_code == 400
    for action in [
        f"/letters/{petition_id}/actions/999/approve",
        f"{page}/invitations/999/resend",
        f"{page}/members/999/remove",
    ]:
        response = post(site, site.client, page, action)
        assert response.status_code == 404, action
        assert 'class="site-header"' in response.get_data(as_text=True)
    no_token = site.client.post(f"{page}/leave")
    assert no_token.status_code == 400 and 'class="site-header"' in no_token.get_data(as_text=True)
    assert role_of(app, petition_id, "olivia@example.org") == "owner"
    assert site.client.get("/letters/999/committee").status_code == 404


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_invitations_are_rate_limited_like_sign_ups(site, app):
    site.organizer()
    petition_id = site.draft()
    page = f"/letters/{petition_id}/committee"
    answers = [
        post(site, site.client, page, f"{page}/invite", email=f"p{n}@example.org", role="viewer")
        for n in range(11)
    ]
    assert [a.status_code for a in answers] == [302] * 10 + [429]
