"""Review before listing, through HTTP: a new letter is signable by its link at once but out of
the index, feed and API list until enough verified employees sign or an admin approves;
reports only queue a letter; a takedown's reason reaches the committee, which may appeal once,
and every admin action is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from petitions.db import new_session
from petitions.models import AuditEntry, Petition
from tests.committee_site import person, post
from tests.conftest import csrf_from

EMPLOYERS = "microsoft.com Microsoft"
TITLE = "Drop the ICE contract"


def _everywhere(client, slug: str) -> dict[str, bool]:
    """Where the letter shows up: the index, the feed, the API list."""
    return {
        "index": f"/p/{slug}" in client.get("/").get_data(as_text=True),
        "feed": f"/p/{slug}" in client.get("/feed.atom").get_data(as_text=True),
        "api": slug in client.get("/api/v1/petitions").get_data(as_text=True),
    }


def _signed(site, app, slug: str, email: str) -> None:
    site.sign(slug, email, client=app.test_client())
    assert site.confirm_link(email, app.test_client()).status_code == 200


def _admin(site, app):
    client = person(site, app, "admin@example.org", "Ada Admin")
    result = app.test_cli_runner().invoke(args=["create-admin", "admin@example.org"])
    assert "is now a site admin" in result.output
    return client


def _petition_id(app, slug: str) -> int:
    with new_session(app, write=False) as session:
        return session.scalars(select(Petition.id).where(Petition.slug == slug)).one()


@pytest.mark.config(LISTING_THRESHOLD=2)
def test_an_unlisted_letter_is_signable_by_link_and_listed_at_the_threshold(site, app):
    slug = site.letter(employers=EMPLOYERS)
    visitor = app.test_client()
    assert _everywhere(visitor, slug) == {"index": False, "feed": False, "api": False}
    page = visitor.get(f"/p/{slug}")
    assert page.status_code == 200 and page.headers["X-Robots-Tag"] == "noindex"
    assert "not listed yet" in page.get_data(as_text=True)
    assert visitor.get(f"/api/v1/petitions/{slug}").status_code == 200  # by its address

    # Supporters count, but not towards listing; verified employees do.
    _signed(site, app, slug, "friend@example.net")
    _signed(site, app, slug, "ann@microsoft.com")
    assert site.count(slug) == 2
    assert _everywhere(visitor, slug) == {"index": False, "feed": False, "api": False}
    owner_page = site.client.get(f"/letters/{_petition_id(app, slug)}").get_data(as_text=True)
    assert "Not listed yet" in owner_page and "(1 so far)" in owner_page

    _signed(site, app, slug, "bob@eu.microsoft.com")
    assert _everywhere(visitor, slug) == {"index": True, "feed": True, "api": True}
    assert "not listed yet" not in visitor.get(f"/p/{slug}").get_data(as_text=True)


@pytest.mark.config(LISTING_THRESHOLD=5)
def test_an_admin_approval_lists_a_letter_before_the_threshold(site, app):
    slug = site.letter(employers=EMPLOYERS)
    petition_id = _petition_id(app, slug)
    admin = _admin(site, app)
    dashboard = admin.get("/admin/").get_data(as_text=True)
    assert "Waiting to be listed" in dashboard and TITLE in dashboard
    page = f"/admin/letters/{petition_id}"
    assert "0 of 5 verified employee signatures" in admin.get(page).get_data(as_text=True)
    assert post(site, admin, page, f"{page}/approve-listing").status_code == 302
    assert _everywhere(app.test_client(), slug) == {"index": True, "feed": True, "api": True}
    assert "approve_listing" in admin.get("/admin/audit").get_data(as_text=True)
    log = site.client.get(f"/letters/{petition_id}/committee/log").get_data(as_text=True)
    assert "Approved for listing" in log
    # Organizers cannot approve their own letter.
    assert post(site, site.client, "/letters/", f"{page}/approve-listing").status_code == 404


@pytest.mark.config(RATELIMIT_ENABLED=False)  # one client here stands for many people
def test_a_hundred_reports_leave_a_letter_visible_and_queued(site, app):
    slug = site.letter()
    petition_id = _petition_id(app, slug)
    admin = _admin(site, app)
    site.mailbox.clear()
    reporter = app.test_client()
    token = csrf_from(reporter.get(f"/p/{slug}/report").get_data(as_text=True))
    for number in range(100):
        response = reporter.post(
            f"/p/{slug}/report",
            data={"csrf_token": token, "kind": "abusive", "message": f"Report {number}"},
        )
        assert response.status_code == 200
    assert reporter.get(f"/p/{slug}").status_code == 200
    assert _everywhere(reporter, slug) == {"index": True, "feed": True, "api": True}
    assert "100 open reports" in admin.get("/admin/").get_data(as_text=True)
    assert "Report 99" in admin.get(f"/admin/letters/{petition_id}").get_data(as_text=True)
    site.deliver()
    # The committee and the admin are told once, when the letter enters the queue.
    assert len(site.mailbox.to("olivia@example.org")) == 1
    assert len(site.mailbox.to("admin@example.org")) == 1


def test_a_takedown_is_explained_appealed_once_and_answered_on_the_record(site, app):
    slug = site.letter()
    petition_id = _petition_id(app, slug)
    admin = _admin(site, app)
    page = f"/admin/letters/{petition_id}"
    assert post(site, admin, page, f"{page}/hide", reason="not a reason").status_code == 400
    assert post(site, admin, page, f"{page}/hide").status_code == 400
    assert app.test_client().get(f"/p/{slug}").status_code == 200
    assert post(site, admin, page, f"{page}/hide", reason="duplicate").status_code == 302
    assert app.test_client().get(f"/p/{slug}").status_code == 404
    site.deliver()
    told = site.mailbox.last_to("olivia@example.org")
    assert told.subject == "A letter you organize was hidden"
    assert "It duplicates another letter" in told.text

    letter_page = f"/letters/{petition_id}"
    html = site.client.get(letter_page).get_data(as_text=True)
    assert "It duplicates another letter" in html and "Send appeal" in html
    appeal = {"message": "It is the only letter from our team."}
    assert (
        post(site, site.client, letter_page, f"{letter_page}/appeal", **appeal).status_code == 302
    )
    again = post(site, site.client, letter_page, f"{letter_page}/appeal", message="Once more")
    assert again.status_code == 302
    assert "heard once" in site.client.get(letter_page).get_data(as_text=True)

    dashboard = admin.get("/admin/").get_data(as_text=True)
    assert "Appeals" in dashboard and "appealed" in dashboard and TITLE in dashboard
    review = admin.get(page).get_data(as_text=True)
    assert "It is the only letter from our team." in review and "Once more" not in review
    answer = {"answer": "Checked: it is not a duplicate.", "outcome": "reinstate"}
    assert post(site, admin, page, "/admin/takedowns/1/answer", **answer).status_code == 302
    assert app.test_client().get(f"/p/{slug}").status_code == 200
    assert "Checked: it is not a duplicate." in site.client.get(letter_page).get_data(as_text=True)
    site.deliver()
    assert "not a duplicate" in site.mailbox.last_to("olivia@example.org").text
    assert "Checked" not in admin.get("/admin/").get_data(as_text=True).split("Reported")[0]

    with new_session(app, write=False) as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["hide_letter", "answer_appeal"]
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "duplicate" in audit and "reinstated" in audit
