"""Delivery through the front door: targets, the pack (read back as text), the recipient link,
responses, the deadline, the outcome under the two-person rule, corrections, and the timeline
in the page, the API and Atom."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import jsonschema_rs
import pytest
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from petitions.db import new_session, utcnow
from petitions.delivery import timeline
from petitions.models import Petition, Signature
from tests.conftest import PASSWORD, Site, csrf_from, require_weasyprint

ATOM = "{http://www.w3.org/2005/Atom}"
EMPLOYERS = "microsoft.com Microsoft\ngithub.com GitHub"

require_weasyprint()  # the pack's PDF


def letter(site: Site, **fields: object) -> tuple[int, str]:
    """A published letter with two employers, by the organizer olivia@example.org."""
    site.organizer()
    petition_id = site.draft(employers=EMPLOYERS, **fields)
    slug = site.publish(petition_id)
    with new_session(site.app) as session:  # published a month ago, so it can have been delivered
        month_ago = utcnow() - timedelta(days=30)
        session.execute(
            update(Petition).where(Petition.id == petition_id).values(published_at=month_ago)
        )
        session.commit()
    return petition_id, slug


def signed(site: Site, slug: str, email: str, name: str, **extra: object) -> None:
    response = site.sign(slug, email, name, **extra)
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    assert site.confirm_link(email).status_code in (200, 302)


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def post(client: FlaskClient, petition_id: int, action: str, data: dict[str, object]):
    base = f"/letters/{petition_id}/delivery"
    token = csrf_from(page(client, base))
    return client.post(f"{base}{action}", data={"csrf_token": token, **data})


def add_target(client: FlaskClient, petition_id: int, **fields: str) -> int:
    data = {
        "target-name": "Satya Nadella",
        "target-role": "CEO",
        "target-organisation": "Microsoft",
    }
    data.update({f"target-{key}": value for key, value in fields.items()})
    assert post(client, petition_id, "/targets", data).status_code == 302
    html = page(client, f"/letters/{petition_id}/delivery")
    return int(re.findall(r'<option[^>]*value="(\d+)"', html.split('id="delivery-target"')[1])[-1])


def deliver(client: FlaskClient, petition_id: int, target_id: int, **fields: object) -> str:
    """Record a delivery; returns the recipient link shown once."""
    data = {
        "delivery-target": target_id,
        "delivery-delivered_on": (utcnow().date() - timedelta(days=12)).isoformat(),
        "delivery-channel": "in_person",
        "delivery-note": "Handed over at the all-hands.",
        "delivery-with_link": "y",
    }
    data.update({f"delivery-{key}": value for key, value in fields.items()})
    response = post(client, petition_id, "/record", data)
    assert response.status_code == 200, response.get_data(as_text=True)
    found = re.search(r'id="recipient-link"[^>]*value="([^"]+)"', response.get_data(as_text=True))
    assert found
    return found.group(1).removeprefix("http://undersigned.test")


def api_timeline(client: FlaskClient, slug: str) -> list[dict[str, object]]:
    return client.get(f"/api/v1/petitions/{slug}").get_json()["timeline"]


def test_pack_holds_named_signers_and_counts_and_nothing_private(site: Site) -> None:
    petition_id, slug = letter(site)
    signed(site, slug, "ada@microsoft.com", "Ada Lovelace", job_title="Principal Engineer")
    signed(site, slug, "grace@github.com", "Grace Hopper", affiliation="former")
    signed(site, slug, "bob@microsoft.com", '=HYPERLINK("http://x")')
    signed(site, slug, "quiet@microsoft.com", "Quiet Person", display="anonymous")
    signed(site, slug, "later@github.com", "Later Person", display="threshold")
    signed(site, slug, "sam@example.net", "Sam Supporter")
    target_id = add_target(site.client, petition_id)
    deliver(site.client, petition_id, target_id)

    html = page(site.client, f"/letters/{petition_id}/delivery")
    base = re.search(r'href="(/letters/\d+/delivery/\d+/)pack.pdf"', html).group(1)
    pdf = site.client.get(base + "pack.pdf")
    assert pdf.mimetype == "application/pdf"
    words = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    flat = " ".join(words.split())
    for name in ("Ada Lovelace", "Grace Hopper", "Sam Supporter", "Principal Engineer"):
        assert name in flat
    assert "Quiet Person" not in flat and "Later Person" not in flat
    assert "GitHub 1 1 0 2" in flat  # current, former, contractors, total
    assert "Microsoft 3 0 0 3" in flat
    assert "6 verified signatures" in flat
    named = flat.index("Signed by name")
    assert named < flat.index("Grace Hopper") < flat.index("Ada Lovelace", named)
    assert flat.index("Ada Lovelace", named) < flat.index("Sam Supporter", named)

    first = site.client.get(base + "signers.csv")
    second = site.client.get(base + "signers.csv")
    assert first.data == second.data
    rows = list(csv.reader(io.StringIO(first.data.decode())))
    assert rows[0] == ["name", "company", "affiliation", "job_title", "team"]
    assert [r[:3] for r in rows[1:]] == [
        ["Grace Hopper", "GitHub", "former"],
        ['\'=HYPERLINK("http://x")', "Microsoft", "current"],
        ["Ada Lovelace", "Microsoft", "current"],
        ["Sam Supporter", "", "supporter"],
    ]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)

    manifest = site.client.get(base + "manifest.json")
    assert manifest.data == site.client.get(base + "manifest.json").data
    data = json.loads(manifest.data)
    assert data["signers_csv_sha256"] == hashlib.sha256(first.data).hexdigest()
    assert data["counts"]["total"] == 6 and data["counts"]["supporters"] == 1
    sha = hashlib.sha256(manifest.data).hexdigest()
    delivered = [e for e in api_timeline(site.client, slug) if e["kind"] == "delivered"]
    assert delivered[0]["pack_sha256"] == sha
    assert sha in page(site.client, f"/p/{slug}")

    with new_session(site.app, write=False) as session:
        private = session.execute(select(Signature.id, Signature.address_hash)).all()
    everything = flat + first.data.decode() + manifest.data.decode()
    for signature_id, address_hash in private:
        assert address_hash not in everything
        assert f'"id": {signature_id}' not in manifest.data.decode()
    assert "@" not in everything.replace("'=HYPERLINK", "")
    assert not re.search(r"\d\d:\d\d", everything)


def test_formula_cells_are_neutralised(site: Site) -> None:
    from petitions.delivery import pack

    assert [pack.neutralise(v) for v in ("=1+1", "+1", "-1", "@SUM", "\tx", "Ada", "")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM",
        "'\tx",
        "Ada",
        "",
    ]
    snapshot = pack.Snapshot(
        "T",
        "A",
        "u",
        "x",
        "h",
        "X",
        date(2026, 5, 3),
        1,
        0,
        signers=[pack.NamedSigner("@evil", "", "supporter", "=cmd", "+team")],
    )
    text_csv = pack.signers_csv(snapshot)
    assert text_csv == pack.signers_csv(snapshot)
    assert text_csv.splitlines()[1] == "'@evil,,supporter,'=cmd,'+team"
    assert pack.manifest_json(snapshot, text_csv) == pack.manifest_json(snapshot, text_csv)


def test_recipient_link_get_records_nothing_post_records_once(site: Site) -> None:
    petition_id, slug = letter(site)
    link = deliver(site.client, petition_id, add_target(site.client, petition_id))
    stranger = site.app.test_client()
    for _ in range(2):
        html = page(stranger, link)
        assert "Confirm receipt" in html
        assert stranger.get(link + "/pack.pdf").status_code == 200
    assert "receipt" not in [e["kind"] for e in api_timeline(site.client, slug)]
    assert "no response yet, 12 days" in page(site.client, f"/p/{slug}")

    token = csrf_from(page(stranger, link))
    assert stranger.post(link + "/receipt", data={"csrf_token": token}).status_code == 302
    assert stranger.post(link + "/receipt", data={"csrf_token": token}).status_code == 302
    assert stranger.post(link + "/receipt", data={}).status_code == 400
    kinds = [e["kind"] for e in api_timeline(site.client, slug)]
    assert kinds.count("receipt") == 1
    assert "Receipt was recorded" in page(stranger, link)
    assert "receipt confirmed" in page(site.client, f"/p/{slug}")


def test_responses_are_labelled_by_who_recorded_them(site: Site) -> None:
    petition_id, slug = letter(site)
    link = deliver(site.client, petition_id, add_target(site.client, petition_id))
    recipient = site.app.test_client()
    token = csrf_from(page(recipient, link))
    answer = {"csrf_token": token, "responder": "Satya Nadella, CEO", "text": "We hear you."}
    assert recipient.post(link + "/response", data=answer).status_code == 302
    assert recipient.post(link + "/response", data=answer).status_code == 409
    delivery_id = int(
        re.search(r"/delivery/(\d+)/", page(site.client, f"/letters/{petition_id}/delivery")).group(
            1
        )
    )
    response = post(
        site.client,
        petition_id,
        "/responses",
        {
            "response-delivery": delivery_id,
            "response-responder": "Brad Smith, President",
            "response-responded_on": utcnow().date().isoformat(),
            "response-text": "Summary: a blog post declining the request.",
            "response-link": "https://blogs.example.com/answer",
        },
    )
    assert response.status_code == 302
    html = page(site.client, f"/p/{slug}")
    assert "We hear you." in html and "Posted by the recipient" in html
    assert "Summary: a blog post declining" in html and "Recorded by the organizers" in html
    assert "answered on" in html and 'id="verified-count"' in html
    entries = [e for e in api_timeline(site.client, slug) if e["kind"] == "response"]
    assert [e["recorded_by"] for e in entries] == ["recipient", "organizers"]
    # A response through the link also confirms receipt.
    assert [e["kind"] for e in api_timeline(site.client, slug)].count("receipt") == 1


def test_link_dies_when_revoked_or_after_90_days(site: Site) -> None:
    petition_id, _slug = letter(site)
    target_id = add_target(site.client, petition_id)
    link = deliver(site.client, petition_id, target_id)
    assert site.client.get(link).status_code == 200
    html = page(site.client, f"/letters/{petition_id}/delivery")
    delivery_id = re.search(r"/delivery/(\d+)/revoke", html).group(1)
    assert post(site.client, petition_id, f"/{delivery_id}/revoke", {}).status_code == 302
    gone = site.client.get(link)
    assert gone.status_code == 404 and "withdrew this link" in gone.get_data(as_text=True)
    assert site.client.get(link + "/manifest.json").status_code == 404
    assert site.client.get("/r/not-a-real-token").status_code == 404

    fresh = deliver(site.client, petition_id, target_id)
    with new_session(site.app) as session:
        session.execute(
            text("UPDATE deliveries SET link_expires_at = :t WHERE link_revoked_at IS NULL"),
            {"t": utcnow() - timedelta(seconds=1)},
        )
        session.commit()
    expired = site.client.get(fresh)
    assert expired.status_code == 404 and "expired" in expired.get_data(as_text=True)


def test_deadline_entry_appears_when_the_clock_passes_it(site: Site) -> None:
    petition_id, slug = letter(site)
    today = utcnow().date()
    deliver(
        site.client,
        petition_id,
        add_target(site.client, petition_id),
        delivered_on=(today - timedelta(days=14)).isoformat(),
        response_requested_by=today.isoformat(),
    )
    with new_session(site.app) as session:
        assert timeline.record_passed_deadlines(session, utcnow()) == 0
        session.commit()
    assert "deadline_passed" not in [e["kind"] for e in api_timeline(site.client, slug)]
    with new_session(site.app) as session:
        later = utcnow() + timedelta(days=1)
        assert timeline.record_passed_deadlines(session, later) == 1
        assert timeline.record_passed_deadlines(session, later) == 0
        session.commit()
    entries = [e for e in api_timeline(site.client, slug) if e["kind"] == "deadline_passed"]
    assert len(entries) == 1
    assert entries[0]["title"].startswith("No response 14 days after delivery")
    assert entries[0]["recorded_by"] == "undersigned"
    assert "No response 14 days after delivery" in page(site.client, f"/p/{slug}")

    # The worker does it by itself: a date already past is noted by `worker --drain`.
    board = add_target(site.client, petition_id, name="The board")
    deliver(site.client, petition_id, board, delivered_on=(today - timedelta(days=3)).isoformat())
    html = page(site.client, f"/letters/{petition_id}/delivery")
    delivery_id = re.findall(r"/delivery/(\d+)/deadline", html)[-1]
    data = {f"d{delivery_id}-response_requested_by": (today - timedelta(days=1)).isoformat()}
    assert post(site.client, petition_id, f"/{delivery_id}/deadline", data).status_code == 302
    result = site.app.test_cli_runner().invoke(args=["worker", "--drain"])
    assert result.exit_code == 0, result.output
    titles = [e["title"] for e in api_timeline(site.client, slug) if e["kind"] == "deadline_passed"]
    assert titles == [
        "No response 2 days after delivery to The board, CEO, Microsoft",
        "No response 14 days after delivery to Satya Nadella, CEO, Microsoft",
    ]


def join(site: Site, petition_id: int, email: str, role: str) -> FlaskClient:
    """Invite `email` with `role`, and have them register, confirm and accept in their client."""
    committee = f"/letters/{petition_id}/committee"
    response = site.post_form(committee, f"{committee}/invite", {"email": email, "role": role})
    assert response.status_code == 302, response.get_data(as_text=True)
    site.deliver()
    invited = site.mailbox.last_to(email).text
    found = re.search(r"http://undersigned\.test(/\S*invitations/\S+)", invited)
    assert found, invited
    invitation = found.group(1)
    other = site.app.test_client()
    fields = {
        "display_name": "Mo Member",
        "email": email,
        "password": PASSWORD,
        "confirm": PASSWORD,
    }
    assert site.post_form("/register", "/register", fields, other).status_code == 200
    site.deliver()
    confirm = site.mailbox.last_to(email).link().removeprefix("http://undersigned.test")
    assert site.post_form(confirm, confirm, {}, other).status_code == 302
    assert site.login(email, other).status_code == 302
    assert site.post_form(invitation, invitation, {}, other).status_code == 302
    return other


def test_outcome_needs_the_second_member_when_the_rule_is_on(site: Site) -> None:
    petition_id, slug = letter(site)
    second = join(site, petition_id, "mo@example.org", "organizer")
    committee = f"/letters/{petition_id}/committee"
    assert site.post_form(committee, f"{committee}/rule", {"enabled": "y"}).status_code == 302
    response = post(
        site.client,
        petition_id,
        "/outcome",
        {"outcome-outcome": "won", "outcome-note": "Contract dropped."},
    )
    assert response.status_code == 302
    assert "outcome" not in [e["kind"] for e in api_timeline(site.client, slug)]
    assert "waits for a second member" in page(site.client, f"/letters/{petition_id}/delivery")
    letter_page = page(second, f"/letters/{petition_id}")
    action = re.search(rf"/letters/{petition_id}/actions/(\d+)/approve", letter_page).group(0)
    own = site.post_form(f"/letters/{petition_id}", action, {})
    assert own.status_code == 302
    assert "outcome" not in [e["kind"] for e in api_timeline(site.client, slug)]
    assert site.post_form(f"/letters/{petition_id}", action, {}, second).status_code == 302
    outcomes = [e for e in api_timeline(site.client, slug) if e["kind"] == "outcome"]
    assert [(e["outcome"], e["text"]) for e in outcomes] == [("won", "Contract dropped.")]
    assert "Outcome: <strong>Won</strong>" in page(site.client, f"/p/{slug}")


def test_outcome_at_once_without_the_rule(site: Site) -> None:
    petition_id, slug = letter(site)
    data = {"outcome-outcome": "partly_won", "outcome-note": ""}
    assert post(site.client, petition_id, "/outcome", data).status_code == 302
    assert [e["outcome"] for e in api_timeline(site.client, slug) if e["kind"] == "outcome"] == [
        "partly_won"
    ]
    assert (
        post(site.client, petition_id, "/outcome", {"outcome-outcome": "lost"}).status_code == 400
    )


def test_a_viewer_cannot_record_anything(site: Site) -> None:
    petition_id, slug = letter(site)
    target_id = add_target(site.client, petition_id)
    deliver(site.client, petition_id, target_id)
    viewer = join(site, petition_id, "vic@example.org", "viewer")
    html = page(viewer, f"/letters/{petition_id}/delivery")
    assert "only owners and organizers can record" in html
    delivery_id = re.search(r"/delivery/(\d+)/pack.pdf", html).group(1)
    token = csrf_from(html)
    before = api_timeline(site.client, slug)
    for action, data in [
        ("/targets", {"target-name": "Someone"}),
        (f"/targets/{target_id}/remove", {}),
        ("/record", {"delivery-target": target_id, "delivery-delivered_on": "2026-05-03"}),
        (f"/{delivery_id}/link", {}),
        (f"/{delivery_id}/revoke", {}),
        (f"/{delivery_id}/deadline", {}),
        ("/responses", {"response-text": "x"}),
        ("/outcome", {"outcome-outcome": "won"}),
        ("/corrections", {"correction-text": "x"}),
    ]:
        response = viewer.post(
            f"/letters/{petition_id}/delivery{action}", data={"csrf_token": token, **data}
        )
        assert response.status_code == 403, action
    assert api_timeline(site.client, slug) == before
    stranger = site.app.test_client()
    site.login("vic@example.org", stranger)
    outsider = site.app.test_client()
    assert outsider.get(f"/letters/{petition_id}/delivery").status_code == 302  # to log in


def test_correction_keeps_the_original_and_api_and_atom_agree(site: Site) -> None:
    petition_id, slug = letter(site)
    deliver(
        site.client, petition_id, add_target(site.client, petition_id), note="Handed to the CFO."
    )
    html = page(site.client, f"/letters/{petition_id}/delivery")
    entry_id = re.search(r'id="correction-entry"[^>]*>\s*<option[^>]*value="(\d+)"', html).group(1)
    response = post(
        site.client,
        petition_id,
        "/corrections",
        {"correction-entry": entry_id, "correction-text": "It was handed to the CEO."},
    )
    assert response.status_code == 302
    events = api_timeline(site.client, slug)
    original = next(e for e in events if e["kind"] == "delivered")
    correction = next(e for e in events if e["kind"] == "correction")
    assert original["text"] == "Handed to the CFO."
    assert correction["corrects"] == original["id"] and original["corrected_by"] == [
        correction["id"]
    ]
    public = page(site.client, f"/p/{slug}")
    assert "Handed to the CFO." in public and "It was handed to the CEO." in public
    document = site.client.get("/api/v1/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/Petition", "components": document["components"]}
    jsonschema_rs.Draft202012Validator(schema).validate(
        site.client.get(f"/api/v1/petitions/{slug}").get_json()
    )

    # The database itself refuses to change or remove an entry.
    for statement in ("UPDATE timeline_entries SET title = 'x'", "DELETE FROM timeline_entries"):
        with new_session(site.app) as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
    assert api_timeline(site.client, slug) == events

    with new_session(site.app, write=False) as session:
        petition = session.scalars(select(Petition).where(Petition.slug == slug)).one()
        session.expunge(petition)
    feed = site.client.get(f"/p/{slug}/timeline.atom")
    assert feed.mimetype == "application/atom+xml"
    root = ET.fromstring(feed.data)
    atom_ids = [e.find(f"{ATOM}id").text.rsplit("/", 1)[1] for e in root.iter(f"{ATOM}entry")]
    atom_titles = [e.find(f"{ATOM}title").text for e in root.iter(f"{ATOM}entry")]
    assert atom_ids == [e["id"] for e in reversed(events)]
    assert atom_titles == [e["title"] for e in reversed(events)]
    assert original["pack_sha256"] in feed.get_data(as_text=True)

    # The site's feed carries the written entries too, under the same Atom ids.
    site_feed = ET.fromstring(site.client.get("/feed.atom").data)
    site_ids = {e.find(f"{ATOM}id").text for e in site_feed.iter(f"{ATOM}entry")}
    letter_ids = {e.find(f"{ATOM}id").text for e in root.iter(f"{ATOM}entry")}
    written = {i for i in letter_ids if "/timeline/entry-" in i}
    assert len(written) == 2 and written <= site_ids


def test_delivery_email_goes_through_the_outbox(site: Site) -> None:
    petition_id, _slug = letter(site)
    signed(site, _slug, "ada@microsoft.com", "Ada Lovelace")
    target_id = add_target(site.client, petition_id, email="satya@microsoft.com")
    deliver(site.client, petition_id, target_id, channel="email", send_email="y")
    site.deliver()
    message = site.mailbox.last_to("satya@microsoft.com")
    assert "Ada" not in message.text and "signed by 1 verified person" in " ".join(
        message.text.split()
    )
    path = re.search(r"http://undersigned\.test(/r/\S+)", message.text).group(1)
    assert site.app.test_client().get(path).status_code == 200


def test_the_public_letter_page_is_the_same_for_every_reader(site: Site) -> None:
    petition_id, slug = letter(site)
    deliver(site.client, petition_id, add_target(site.client, petition_id))
    first = site.app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    second = site.app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    strip = re.compile(r'<p class="muted small as-of-line">.*?</p>', re.DOTALL)
    assert strip.sub("", first) == strip.sub("", second)
    assert "Delivered to Satya Nadella, CEO, Microsoft on" in first
    assert "/r/" not in first


def test_bad_input_gets_a_clear_4xx(site: Site) -> None:
    petition_id, slug = letter(site)
    target_id = add_target(site.client, petition_id)
    link = deliver(site.client, petition_id, target_id)
    tomorrow = (utcnow().date() + timedelta(days=1)).isoformat()
    cases = [
        ("/record", {"delivery-target": target_id, "delivery-delivered_on": "3 May"}, 400),
        ("/record", {"delivery-target": 999, "delivery-delivered_on": "2026-05-03"}, 400),
        (
            "/record",
            {
                "delivery-target": target_id,
                "delivery-delivered_on": tomorrow,
                "delivery-channel": "email",
            },
            409,
        ),
        (
            "/record",
            {
                "delivery-target": target_id,
                "delivery-delivered_on": "2020-01-01",
                "delivery-channel": "email",
            },
            409,
        ),
        ("/outcome", {"outcome-outcome": "victory"}, 400),
        ("/corrections", {"correction-entry": 999, "correction-text": "x"}, 400),
        ("/targets", {"target-name": "", "target-email": "not an address"}, 400),
        ("/999/revoke", {}, 404),
    ]
    for action, data, status in cases:
        response = post(site.client, petition_id, action, data)
        assert response.status_code == status, (action, response.status_code)
        assert "<html" in response.get_data(as_text=True)
    assert site.client.get(f"/letters/{petition_id}/delivery/999/pack.pdf").status_code == 404
    assert site.client.get(f"/letters/{petition_id}/delivery/1/secret.txt").status_code == 404
    assert site.client.get("/letters/999/delivery").status_code == 404

    recipient = site.app.test_client()
    token = csrf_from(page(recipient, link))
    for data in (
        {"text": ""},
        {"text": "Fine.", "link": "javascript:alert(1)"},
        {"text": "Fine.", "link": "ftp://example.com/x"},
    ):
        response = recipient.post(link + "/response", data={"csrf_token": token, **data})
        assert response.status_code == 400, data
    assert recipient.post("/r/garbage/receipt", data={"csrf_token": token}).status_code == 404
    assert "response" not in [e["kind"] for e in api_timeline(site.client, slug)]


def test_delivery_routes_refuse_strangers_and_posts_without_csrf(site: Site) -> None:
    petition_id, _slug = letter(site)
    target_id = add_target(site.client, petition_id)
    link = deliver(site.client, petition_id, target_id)
    token = link.removeprefix("/r/")
    values = {"petition_id": petition_id, "target_id": target_id, "delivery_id": 1}
    values |= {"name": "manifest.json", "token": token}
    visitor = site.app.test_client()
    other = site.app.test_client()
    site.organizer("bea@example.org", client=other)
    with new_session(site.app, write=False) as session:
        before = {t: session.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}
    walked = 0
    for rule in site.app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in {"delivery", "recipient"}:
            continue
        url = rule.build({arg: values[arg] for arg in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            walked += 1
            if method == "POST":
                refused = site.client.post(url, data={})
                assert refused.status_code == 400, url
                assert "This form has expired" in refused.get_data(as_text=True)
            if rule.endpoint.startswith("delivery."):
                visitor_csrf = csrf_from(page(visitor, "/login"))
                answer = visitor.open(url, method=method, data={"csrf_token": visitor_csrf})
                assert answer.status_code == 302 and "/login" in answer.headers["Location"]
                csrf = csrf_from(page(other, "/letters/"))
                answer = other.open(url, method=method, data={"csrf_token": csrf})
                assert answer.status_code == 404, url
    assert walked >= 15
    with new_session(site.app, write=False) as session:
        after = {t: session.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}
    assert after == before
    assert "Confirm receipt" in page(visitor, link)


TABLES = ("delivery_targets", "deliveries", "delivery_responses", "timeline_entries")
