"""Migration 0006_committee on a database with letters in it: each letter's organizer becomes
its owner, letters already published stay listed, and rebuilding `petitions` (SQLite's batch
mode) deletes nothing that refers to it; the downgrade gives the letter back to its owner."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from petitions.cli import alembic_config, upgrade_database
from petitions.db import get_engine

BEFORE = "0006"


def _rows(app, sql: str) -> list[tuple]:
    with get_engine(app).connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_each_organizer_becomes_the_owner_and_no_row_is_lost(app):
    command.downgrade(alembic_config(app), BEFORE)
    try:
        with get_engine(app).begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, display_name, password_hash, session_version,"
                    " is_admin, created_at) VALUES (7, 'olivia@example.org', 'Olivia', '!', 1,"
                    " false, CURRENT_TIMESTAMP)"
                )
            )
            for number, state in [(1, "open"), (2, "draft")]:
                connection.execute(
                    text(
                        "INSERT INTO petitions (id, organizer_id, title, addressed_to,"
                        " body_markdown, state, slug, allow_supporters, reveal_threshold,"
                        " created_at, updated_at, published_at) VALUES (:id, 7, 'Letter',"
                        " 'CEO', 'Body', :state, :slug, true, 10, CURRENT_TIMESTAMP,"
                        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"id": number, "state": state, "slug": f"letter-{number}"},
                )
            connection.execute(
                text(
                    "INSERT INTO employer_domains (petition_id, domain, company_name)"
                    " VALUES (1, 'example.com', 'Example')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO reports (petition_id, kind, message, created_at)"
                    " VALUES (1, 'abusive', 'kept', CURRENT_TIMESTAMP)"
                )
            )
        upgrade_database(app)
        assert _rows(
            app, "SELECT petition_id, user_id, role FROM committee_members ORDER BY petition_id"
        ) == [(1, 7, "owner"), (2, 7, "owner")]
        assert _rows(app, "SELECT domain FROM employer_domains") == [("example.com",)]
        assert _rows(app, "SELECT message FROM reports") == [("kept",)]
        listed = _rows(
            app, "SELECT id FROM petitions WHERE listing_approved_at IS NOT NULL ORDER BY id"
        )
        assert listed == [(1,)]

        command.downgrade(alembic_config(app), BEFORE)
        assert _rows(app, "SELECT id, organizer_id FROM petitions ORDER BY id") == [(1, 7), (2, 7)]
        assert _rows(app, "SELECT message FROM reports") == [("kept",)]
    finally:
        upgrade_database(app)
