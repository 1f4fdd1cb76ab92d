"""Organizers draft, preview, edit, publish and close letters; drafts stay private."""

from __future__ import annotations

import threading

from sqlalchemy import select

from petitions.db import new_session, utcnow
from petitions.letters import service as letters
from petitions.models import Petition, User
from tests.conftest import csrf_from


def test_draft_is_private_until_published(site, app):
    site.organizer("owner@example.org")
    petition_id = site.draft("Stop selling Rekognition to police")
    page = site.client.get(f"/letters/{petition_id}")
    assert page.status_code == 200
    assert "This is a draft" in page.get_data(as_text=True)

    intruder = app.test_client()
    site.organizer("intruder@example.org", client=intruder)
    for path in [f"/letters/{petition_id}", f"/letters/{petition_id}/edit"]:
        assert intruder.get(path).status_code == 404
    html = intruder.get("/letters/").get_data(as_text=True)
    post = intruder.post(f"/letters/{petition_id}/publish", data={"csrf_token": csrf_from(html)})
    assert post.status_code == 404

    anonymous = app.test_client()
    response = anonymous.get(f"/letters/{petition_id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "Rekognition" not in anonymous.get("/").get_data(as_text=True)

    slug = site.publish(petition_id)
    assert slug == "stop-selling-rekognition-to-police"
    public = anonymous.get(f"/p/{slug}")
    assert public.status_code == 200
    assert "Stop selling Rekognition to police" in public.get_data(as_text=True)
    assert "Rekognition" in anonymous.get("/").get_data(as_text=True)


def test_preview_renders_markdown_safely_without_saving(site, app):
    site.organizer()
    data = {
        "title": "Preview me",
        "addressed_to": "The Board",
        "body_markdown": "**Bold** <script>alert(1)</script> [x](javascript:alert(1))",
        "goal": "",
        "reveal_threshold": "10",
        "preview": "Preview",
    }
    response = site.post_form("/letters/new", "/letters/new", data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<strong>Bold</strong>" in html
    assert "<script>alert(1)</script>" not in html
    assert 'href="javascript' not in html
    with new_session(app, write=False) as session:
        assert session.scalars(select(Petition)).first() is None


def test_same_titles_get_distinct_slugs(site):
    site.organizer()
    slugs = [site.publish(site.draft("Cancel Project Maven")) for _ in range(3)]
    assert slugs == ["cancel-project-maven", "cancel-project-maven-2", "cancel-project-maven-3"]


def test_concurrent_publication_with_one_title(site, app):
    site.organizer()
    ids = [site.draft("Same title") for _ in range(4)]
    barrier = threading.Barrier(4, timeout=60)
    errors = []

    def publish(petition_id):
        try:
            barrier.wait()
            with app.test_request_context(), new_session(app) as session:
                petition = session.get(Petition, petition_id)
                letters.publish(session, petition, utcnow())
                session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,), daemon=True) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with new_session(app, write=False) as session:
        slugs = sorted(session.scalars(select(Petition.slug)))
    assert slugs == ["same-title", "same-title-2", "same-title-3", "same-title-4"]


def test_edit_draft_then_text_is_fixed_after_publication(site):
    site.organizer()
    petition_id = site.draft("Original")
    edit = f"/letters/{petition_id}/edit"
    data = {
        "title": "Edited",
        "addressed_to": "CEO",
        "body_markdown": "New text",
        "goal": "5",
        "reveal_threshold": "10",
        "allow_supporters": "y",
    }
    assert site.post_form(edit, edit, data).status_code == 302
    assert "Edited" in site.client.get(f"/letters/{petition_id}").get_data(as_text=True)
    site.publish(petition_id)
    changed = site.post_form(edit, edit, {**data, "body_markdown": "Sneaky change"})
    assert changed.status_code == 409
    assert "text and signing rules are fixed" in changed.get_data(as_text=True)
    goal_only = site.post_form(edit, edit, {**data, "goal": "50"})
    assert goal_only.status_code == 302


def test_empty_and_oversized_letter_fields_are_form_errors(site, app):
    site.organizer()
    response = site.post_form(
        "/letters/new",
        "/letters/new",
        {"title": "", "addressed_to": "x" * 500, "body_markdown": ""},
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This field is required." in html
    assert "Field cannot be longer than 200 characters." in html
    response = site.post_form(
        "/letters/new",
        "/letters/new",
        {
            "title": "T",
            "addressed_to": "A",
            "body_markdown": "B",
            "goal": "-3",
            "reveal_threshold": "10",
        },
    )
    assert response.status_code == 400
    with new_session(app, write=False) as session:
        assert session.scalars(select(Petition)).first() is None
        assert session.scalars(select(User)).first() is not None
