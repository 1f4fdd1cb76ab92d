"""Commands (recount, purge, db upgrade) and the health check."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from config import TestingConfig
from petitions import create_app
from petitions.db import new_session
from petitions.models import PetitionCounter, Signature, Token


def test_recount_repairs_drift_and_says_what(site, app):
    slug = site.letter()
    for n in range(3):
        site.sign(slug, f"count{n}@example.net")
        site.confirm_link(f"count{n}@example.net")
    with new_session(app) as session:
        session.execute(update(PetitionCounter).values(value=PetitionCounter.value + 5))
        session.commit()
    assert site.count(slug) > 3
    result = app.test_cli_runner().invoke(args=["recount"])
    assert result.exit_code == 0
    assert "repaired" in result.output and "total" in result.output and "-> 3" in result.output
    assert site.count(slug) == 3
    again = app.test_cli_runner().invoke(args=["recount"])
    assert "Nothing to repair" in again.output


def test_purge_deletes_expired_pending_signatures_only(site, app):
    slug = site.letter()
    site.sign(slug, "kept@example.net")
    site.confirm_link("kept@example.net")
    site.sign(slug, "stale@example.net")
    site.sign(slug, "fresh@example.net")
    with new_session(app) as session:
        stale = session.scalars(
            select(Signature).where(Signature.email == "stale@example.net")
        ).one()
        for token in session.scalars(select(Token).where(Token.signature_id == stale.id)):
            token.expires_at = token.created_at - timedelta(seconds=1)
        session.commit()
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0
    assert "Deleted 1 expired pending signatures" in result.output
    with new_session(app, write=False) as session:
        emails = set(session.scalars(select(Signature.email)))
        assert emails == {None, "fresh@example.net"}
        assert session.scalar(select(func.count()).select_from(Signature)) == 2
    assert site.count(slug) == 1


def test_db_upgrade_command_is_idempotent(app):
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "Database at heads." in result.output


def test_healthz_and_readyz_when_the_database_answers(client):
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "database": "ok"}
        assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_503_while_the_database_is_unreachable():
    """A load balancer takes the server out (readyz); the server itself is alive (healthz)."""
    config = TestingConfig()
    config.DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    client = create_app(config).test_client()
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "database": "unavailable"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable", "database": "unavailable"}
    assert ready.headers["Retry-After"] == "5"
