"""Organizer accounts: register, confirm, log in and out."""

from __future__ import annotations

from sqlalchemy import select

from petitions.db import new_session
from petitions.models import User
from tests.conftest import PASSWORD, csrf_from


def test_register_confirm_login_logout(site, client):
    site.register("new@example.org")
    # Not confirmed yet: login is refused with a way to get a fresh link.
    response = site.login("new@example.org")
    assert response.status_code == 403
    assert "confirm your address" in response.get_data(as_text=True)

    site.confirm_account("new@example.org")
    response = site.login("new@example.org")
    assert response.status_code == 302
    assert client.get("/letters/").status_code == 200

    assert client.get("/logout").status_code == 405  # GET never logs out
    page = client.get("/letters/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_from(page)}).status_code == 302
    assert client.get("/letters/").status_code == 302


def test_password_is_hashed_with_argon2id(site, app):
    site.register("hash@example.org")
    with new_session(app, write=False) as session:
        user = session.scalars(select(User)).one()
    assert user.password_hash.startswith("$argon2id$")
    assert "m=65536,t=3,p=4" in user.password_hash
    assert PASSWORD not in user.password_hash


def test_registering_a_taken_address_reveals_nothing(site):
    site.register("taken@example.org")
    site.confirm_account("taken@example.org")
    first = site.client.get("/register")
    html = first.get_data(as_text=True)
    response = site.client.post(
        "/register",
        data={
            "csrf_token": csrf_from(html),
            "display_name": "Impostor",
            "email": "taken@example.org",
            "password": "another passphrase",
            "confirm": "another passphrase",
        },
    )
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    site.deliver()
    assert "already has one" in site.mailbox.last_to("taken@example.org").text


def test_wrong_password_is_a_form_error(site):
    site.organizer("me@example.org")
    other = site.app.test_client()
    page = other.get("/login").get_data(as_text=True)
    response = other.post(
        "/login",
        data={"csrf_token": csrf_from(page), "email": "me@example.org", "password": "nope nope"},
    )
    assert response.status_code == 400
    assert "do not match" in response.get_data(as_text=True)


def test_next_only_accepts_local_paths(site):
    site.register("next@example.org")
    site.confirm_account("next@example.org")
    for target, expected in [
        ("/letters/new", "/letters/new"),
        ("//evil.example", "/letters/"),
        ("https://evil.example/", "/letters/"),
        ("/\\evil.example", "/letters/"),
    ]:
        client = site.app.test_client()
        page = client.get("/login").get_data(as_text=True)
        response = client.post(
            f"/login?next={target}",
            data={"csrf_token": csrf_from(page), "email": "next@example.org", "password": PASSWORD},
        )
        assert response.headers["Location"] == expected
