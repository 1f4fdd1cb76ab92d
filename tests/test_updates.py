"""Updates to signers who asked for them (issue 27), through HTTP and a real SMTP server, on
SQLite and PostgreSQL: double opt-in, an update that matches its preview, the limits, one-click
and link unsubscribe, work addresses refused, no address for organizers or in a dump,
retention, and a 550 that deletes only its subscriber."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from petitions.db import new_session, utcnow
from petitions.delivery import timeline
from petitions.mail import worker as mail_worker
from petitions.models import OutboxMessage, Outcome, Petition, TimelineKind
from petitions.models.outbox import OutboxStatus
from petitions.models.subscriber import Subscriber
from petitions.models.update import Update, UpdateState
from petitions.updates.sending import work as send_updates
from tests.committee_site import accept, invite, person
from tests.conftest import csrf_from
from tests.test_subscribers import _dump, _worker_drain

EMPLOYERS = "example.com Example Corp"
PERSONAL = "robin.home@home.example"
OTHER = "kim.private@elsewhere.example"
CONFIRM_LINK = re.compile(r"https?://\S+/account/updates/confirm/[A-Za-z0-9._\-]+")
UNSUBSCRIBE_LINK = re.compile(r"https?://\S+/account/updates/unsubscribe/[A-Za-z0-9._\-]+")


def _path(link: str) -> str:
    return link.removeprefix("http://undersigned.test")


def _petition_id(app, slug: str) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(Petition.id).where(Petition.slug == slug))


def _subscribers(app) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(func.count()).select_from(Subscriber))


def _subscribe(site, slug: str, address: str) -> None:
    """Ask for updates on the page linked from the letter, then confirm from the email."""
    visitor = site.app.test_client()
    page = f"/p/{slug}/updates"
    answer = site.post_form(page, page, {"email": address}, client=visitor)
    assert answer.status_code == 200
    assert "Check your email" in answer.get_data(as_text=True)
    _worker_drain(site.app)
    mail = site.mailbox.last_to(address)
    assert "Confirm updates" in mail.subject
    link = _path(CONFIRM_LINK.search(mail.text).group(0))
    assert "Confirm updates" in visitor.get(link).get_data(as_text=True)
    done = site.post_form(link, link, {}, client=visitor)
    assert "Updates confirmed" in done.get_data(as_text=True)


def _write(site, petition_id: int, subject: str, body: str, send: bool = True):
    page = f"/letters/{petition_id}/updates"
    data = {"subject": subject, "body": body, "send" if send else "preview": "y"}
    return site.post_form(page, page, data)


def _days_pass(app, days: int) -> None:
    """Move every update `days` into the past, oldest first (the one-a-day key stays unique)."""
    with new_session(app) as session:
        for row in session.scalars(select(Update).order_by(Update.sent_on)):
            row.sent_on -= timedelta(days=days)
            row.created_at -= timedelta(days=days)
            session.flush()
        session.commit()


@pytest.fixture
def letter(site, app):
    """A published letter of Example Corp, its organizer logged in on `site.client`."""
    slug = site.letter("Publish the pay bands", employers=EMPLOYERS)
    return slug, _petition_id(app, slug)


def test_an_update_reaches_the_confirmed_address_as_previewed_and_one_click_ends_it(
    site, app, letter
):
    slug, petition_id = letter
    page = app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    assert f'href="/p/{slug}/updates"' in page
    assert "deleted 90 days after the letter closes or its outcome is recorded" in page
    visitor = app.test_client()
    page = f"/p/{slug}/updates"
    site.post_form(page, page, {"email": PERSONAL}, client=visitor)
    # Not confirmed yet: nobody counts it, and an update now would not reach it.
    assert 'id="subscriber-count">0<' in site.client.get(f"/letters/{petition_id}/updates").text
    _worker_drain(app)
    link = _path(CONFIRM_LINK.search(site.mailbox.last_to(PERSONAL).text).group(0))
    site.post_form(link, link, {}, client=visitor)
    manage = site.client.get(f"/letters/{petition_id}/updates").get_data(as_text=True)
    assert 'id="subscriber-count">1<' in manage

    body = "We **delivered** the letter.\n\n- 300 signatures\n- [Our notes](https://example.org/n)"
    preview = _write(site, petition_id, "Delivered today", body, send=False)
    assert preview.status_code == 200
    shown = preview.get_data(as_text=True)
    preview_text = html.unescape(re.search(r'id="preview-text">(.*?)</pre>', shown, re.S).group(1))
    assert "<strong>delivered</strong>" in shown  # the public post, rendered
    site.mailbox.clear()
    sent = _write(site, petition_id, "Delivered today", body)
    assert sent.status_code == 302
    _worker_drain(app)
    _worker_drain(app)  # the next pass counts what the first one delivered
    mail = site.mailbox.last_to(PERSONAL)
    assert mail.subject == "Delivered today (Publish the pay bands)"
    unsubscribe = mail.message["List-Unsubscribe"].strip("<>")
    assert UNSUBSCRIBE_LINK.fullmatch(unsubscribe)
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    expected = preview_text.replace("(your own unsubscribe link)", unsubscribe)
    assert mail.text.replace("\r\n", "\n").strip() == expected.strip()
    assert "<strong>delivered</strong>" in mail.html
    assert unsubscribe in mail.text
    manage = site.client.get(f"/letters/{petition_id}/updates").get_data(as_text=True)
    assert re.search(r'class="delivered">1<', manage)
    assert PERSONAL not in manage
    public = app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    assert "Update: Delivered today" in public and "<strong>delivered</strong>" in public
    assert "Delivered today" in app.test_client().get(f"/p/{slug}/timeline.atom").text
    # Nothing of the address stays in the database once the mail went.
    assert PERSONAL.casefold() not in _dump(app)

    # The mail client's one-click POST (RFC 8058): no session, no CSRF token.
    answer = app.test_client().post(_path(unsubscribe), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert _subscribers(app) == 0
    _days_pass(app, 2)
    site.mailbox.clear()
    assert _write(site, petition_id, "Second news", "More.").status_code == 302
    _worker_drain(app)
    _worker_drain(app)
    assert site.mailbox.to(PERSONAL) == []


def test_the_unsubscribe_link_works_without_login_and_a_bare_post_is_refused(site, app, letter):
    slug, petition_id = letter
    _subscribe(site, slug, PERSONAL)
    _write(site, petition_id, "News", "Some news.")
    _worker_drain(app)
    link = _path(UNSUBSCRIBE_LINK.search(site.mailbox.last_to(PERSONAL).text).group(0))
    stranger = app.test_client()
    # A POST with neither the one-click body nor a CSRF token changes nothing.
    refused = stranger.post(link, data={})
    assert refused.status_code == 400
    assert _subscribers(app) == 1
    assert "Unsubscribe" in stranger.get(link).get_data(as_text=True)
    done = site.post_form(link, link, {}, client=stranger)
    assert "Unsubscribed" in done.get_data(as_text=True)
    assert _subscribers(app) == 0
    assert "gets no updates" in stranger.get(link).get_data(as_text=True)
    bad = stranger.get("/account/updates/unsubscribe/forged-token")
    assert bad.status_code == 400 and "not valid" in bad.get_data(as_text=True)


def test_one_update_a_day_and_a_fourth_in_a_week_refused(site, app, letter):
    _slug, petition_id = letter
    assert _write(site, petition_id, "One", "First.").status_code == 302
    again = _write(site, petition_id, "Two", "Too soon.")
    assert again.status_code == 400
    assert "One update a day" in again.get_data(as_text=True)
    _days_pass(app, 2)
    assert _write(site, petition_id, "Two", "Second.").status_code == 302
    _days_pass(app, 2)
    assert _write(site, petition_id, "Three", "Third.").status_code == 302
    _days_pass(app, 1)
    fourth = _write(site, petition_id, "Four", "Fourth.")
    assert fourth.status_code == 400
    assert "At most 3 updates a week" in fourth.get_data(as_text=True)
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Update)) == 3
    _days_pass(app, 2)  # the first is now 7 days old
    assert _write(site, petition_id, "Four", "Fourth, a week on.").status_code == 302


def test_a_work_address_of_the_letter_is_refused_for_updates(site, app, letter):
    slug, _petition_id = letter
    for address in ("robin@example.com", "robin@mail.example.com"):
        page = f"/p/{slug}/updates"
        answer = site.post_form(page, page, {"email": address}, client=app.test_client())
        assert answer.status_code == 400
        assert "work address of a company this letter names" in answer.get_data(as_text=True)
        signed = site.sign(
            slug,
            "robin.worker@example.com",
            client=app.test_client(),
            wants_updates="y",
            updates_email=address,
        )
        assert signed.status_code == 400
        assert "work address of a company this letter names" in signed.get_data(as_text=True)
    assert _subscribers(app) == 0


def test_a_signer_confirms_updates_from_the_signed_email_before_any_update(site, app, letter):
    slug, petition_id = letter
    client = app.test_client()
    site.sign(
        slug, "robin.worker@example.com", client=client, wants_updates="y", updates_email=PERSONAL
    )
    site.confirm_link("robin.worker@example.com", client=client)
    _worker_drain(app)
    signed = site.mailbox.last_to(PERSONAL)
    assert "You signed" in signed.subject
    # Sent before confirming, an update does not reach the address.
    _write(site, petition_id, "Early news", "Not for you yet.")
    _worker_drain(app)
    assert [m.subject for m in site.mailbox.to(PERSONAL)] == [signed.subject]
    link = _path(CONFIRM_LINK.search(signed.text).group(0))
    site.post_form(link, link, {}, client=client)
    _days_pass(app, 1)
    _write(site, petition_id, "Later news", "For you.")
    _worker_drain(app)
    assert site.mailbox.last_to(PERSONAL).subject.startswith("Later news")


def test_a_550_for_one_subscriber_deletes_only_that_subscriber(site, app, letter, mailbox):
    slug, petition_id = letter
    _subscribe(site, slug, PERSONAL)
    _subscribe(site, slug, OTHER)
    mailbox.reject_only = {OTHER: 550}
    _write(site, petition_id, "News", "Some news.")
    _worker_drain(app)
    _worker_drain(app)
    assert mailbox.last_to(PERSONAL).subject.startswith("News")
    assert mailbox.to(OTHER) == [m for m in mailbox.to(OTHER) if "Confirm" in m.subject]
    assert _subscribers(app) == 1
    manage = site.client.get(f"/letters/{petition_id}/updates").get_data(as_text=True)
    assert 'id="subscriber-count">1<' in manage and 'class="delivered">1<' in manage
    assert OTHER.casefold() not in _dump(app)


def _close(app, petition_id: int, days_ago: int) -> None:
    with new_session(app) as session:
        session.execute(
            update(Petition)
            .where(Petition.id == petition_id)
            .values(state="closed", closed_at=utcnow() - timedelta(days=days_ago))
        )
        session.commit()


def _purge(app) -> str:
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("closed_days", "outcome_days", "kept", "by"),
    [
        (89, None, True, "purge"),
        (91, None, False, "purge"),
        (120, 89, True, "worker"),
        (200, 91, False, "worker"),
    ],
)
def test_retention_deletes_subscribers_90_days_after_closing_or_outcome_whichever_later(
    site, app, letter, closed_days, outcome_days, kept, by
):
    slug, petition_id = letter
    _subscribe(site, slug, PERSONAL)
    _close(app, petition_id, closed_days)
    if outcome_days is not None:
        with new_session(app) as session:
            timeline.append(
                session,
                petition_id,
                TimelineKind.OUTCOME,
                utcnow().date(),
                "Outcome: Won",
                timeline.ORGANIZERS,
                outcome=Outcome.WON,
                created_at=utcnow() - timedelta(days=outcome_days),
            )
            session.commit()
    if by == "purge":
        assert f"Deleted {0 if kept else 1} subscribers" in _purge(app)
    else:
        _worker_drain(app)
    assert _subscribers(app) == (1 if kept else 0)


def test_organizer_pages_never_show_an_address_and_strangers_get_404(site, app, letter):
    slug, petition_id = letter
    _subscribe(site, slug, PERSONAL)
    for response in (
        site.client.get(f"/letters/{petition_id}/updates"),
        _write(site, petition_id, "News", "Some news.", send=False),
        _write(site, petition_id, "News", "Some news."),
        site.client.get(f"/letters/{petition_id}"),
        site.client.get(f"/letters/{petition_id}/updates"),
    ):
        assert PERSONAL not in response.get_data(as_text=True)
        assert "home.example" not in response.get_data(as_text=True)
    stranger = app.test_client()
    site.organizer("someone.else@example.org", client=stranger)
    assert stranger.get(f"/letters/{petition_id}/updates").status_code == 404
    page = f"/letters/{petition_id}/updates"
    html_page = site.client.get(page).get_data(as_text=True)
    post = stranger.post(page, data={"csrf_token": csrf_from(html_page), "subject": "x"})
    assert post.status_code in (400, 404)


def test_a_viewer_sees_the_counts_but_may_not_write(site, app, letter):
    _slug, petition_id = letter
    vic = person(site, app, "vic@example.org", "Vic Viewer")
    accept(site, vic, invite(site, site.client, petition_id, "vic@example.org", role="viewer"))
    page = f"/letters/{petition_id}/updates"
    shown = vic.get(page).get_data(as_text=True)
    assert 'id="subscriber-count">0<' in shown and "Write an update" not in shown
    data = {"csrf_token": csrf_from(shown), "subject": "Hijack", "body": "x", "send": "y"}
    assert vic.post(page, data=data).status_code == 403
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Update)) == 0


def test_every_updates_post_without_a_csrf_token_is_refused(site, app, letter):
    slug, petition_id = letter
    values = {"slug": slug, "petition_id": petition_id, "token": "not-a-token"}
    posts = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("updates.") and "POST" in rule.methods:
            url = rule.build({arg: values[arg] for arg in rule.arguments})[1]
            answer = site.client.post(url, data={})
            assert answer.status_code == 400, rule.endpoint
            assert "This form has expired" in answer.get_data(as_text=True), rule.endpoint
            posts += 1
    assert posts == 4
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Update)) == 0


def test_no_subscribing_once_the_retention_ended(site, app, letter):
    slug, petition_id = letter
    _close(app, petition_id, 91)
    page = f"/p/{slug}/updates"
    answer = site.post_form(page, page, {"email": PERSONAL}, client=app.test_client())
    assert answer.status_code == 400
    assert "no longer sends updates" in answer.get_data(as_text=True)
    assert _subscribers(app) == 0


def _chore(app) -> None:
    """One pass of the worker's updates chore."""
    with app.app_context(), new_session(app) as session:
        send_updates(session, utcnow())
        session.commit()


def _in_outbox(app) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.template == "update")
        )


@pytest.mark.config(UPDATES_BATCH_SIZE=2)
def test_the_worker_queues_one_batch_at_a_time(site, app, letter, mailbox):
    slug, petition_id = letter
    addresses = [f"reader{n}@home{n}.example" for n in range(5)]
    for address in addresses:
        _subscribe(site, slug, address)
    mailbox.clear()
    _write(site, petition_id, "News", "Some news.")
    _chore(app)
    assert _in_outbox(app) == 2
    _chore(app)  # the batch has not left: nothing more is opened
    assert _in_outbox(app) == 2
    for _ in range(4):
        with app.app_context():
            mail_worker.drain(app)
        _chore(app)
        assert _in_outbox(app) <= 2
    assert sorted(m.to for m in mailbox.messages) == sorted(addresses)
    with new_session(app, write=False) as session:
        sent = session.scalars(select(Update)).one()
        assert (sent.state, sent.queued_count, sent.delivered_count) == (UpdateState.SENT, 5, 5)


def test_asking_again_the_same_day_sends_no_second_email(site, app, letter, mailbox):
    slug, _petition_id = letter
    page = f"/p/{slug}/updates"
    for _ in range(3):
        answer = site.post_form(page, page, {"email": PERSONAL}, client=app.test_client())
        assert "Check your email" in answer.get_data(as_text=True)
    _worker_drain(app)
    assert len(mailbox.to(PERSONAL)) == 1
    assert _subscribers(app) == 1
