"""Command-line tools: `flask --app wsgi <command>`."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from flask import Flask, current_app

from petitions.db import checkpoint_sqlite, get_engine, new_session, utcnow

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(app: Flask):  # type: ignore[no-untyped-def]
    """Alembic's configuration for this app's database."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = app.extensions["db_engine"]
    return config


def upgrade_database(app: Flask, revision: str = "heads") -> None:
    """Create or upgrade the schema to `revision`."""
    from alembic import command

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    command.upgrade(alembic_config(app), revision)


def register_commands(app: Flask) -> None:
    """Attach the commands to `flask`."""
    from petitions.mail.cli import register_mail_commands

    register_mail_commands(app)

    @app.cli.group("db")
    def db_group() -> None:
        """Database schema commands."""

    @db_group.command("upgrade")
    @click.argument("revision", default="heads")
    def db_upgrade(revision: str) -> None:
        """Create or upgrade the schema (Alembic)."""
        upgrade_database(current_app, revision)
        click.echo(f"Database at {revision}.")

    @db_group.command("downgrade")
    @click.argument("revision")
    def db_downgrade(revision: str) -> None:
        """Step the schema back to REVISION."""
        from alembic import command

        command.downgrade(alembic_config(current_app), revision)
        click.echo(f"Database at {revision}.")

    @app.cli.command("recount")
    def recount() -> None:
        """Check every letter's counts against its signatures and repair drift."""
        from petitions.tallies.counts import recount as do_recount

        with new_session(current_app) as session:
            fixes = do_recount(session)
            session.commit()
        if not fixes:
            click.echo("All counts match the signatures. Nothing to repair.")
        for line in fixes:
            click.echo(f"repaired {line}")

    @app.cli.command("purge")
    def purge() -> None:
        """Delete pending signatures whose tokens expired, address and all, and subscribers
        to updates past their letter's retention."""
        from petitions.signing.service import purge_expired
        from petitions.updates.sending import purge_subscribers

        with new_session(current_app) as session:
            signatures, tokens = purge_expired(session, utcnow())
            subscribers = purge_subscribers(session, utcnow())
            session.commit()
        checkpoint_sqlite(get_engine(current_app))
        click.echo(f"Deleted {signatures} expired pending signatures and {tokens} expired tokens.")
        click.echo(f"Deleted {subscribers} subscribers past their letter's retention.")

    @app.cli.command("create-admin")
    @click.argument("email")
    def create_admin(email: str) -> None:
        """Make the confirmed organizer account EMAIL a site admin."""
        from petitions.moderation.service import make_admin

        with new_session(current_app) as session:
            user = make_admin(session, email)
            session.commit()
        if user is None:
            raise click.ClickException(
                f"No confirmed account uses {email}. Register and confirm it first, then run this."
            )
        click.echo(f"{user.email} is now a site admin.")

    @app.cli.command("seed-demo")
    def seed_demo() -> None:
        """Create a demo organizer and a published demo letter (idempotent)."""
        from petitions.letters.demo import seed

        with new_session(current_app) as session:
            message = seed(session, utcnow())
            session.commit()
        click.echo(message)

    @app.cli.command("snapshot")
    def snapshot() -> None:
        """Record the count history now (the mail worker also does, every minute)."""
        from petitions.tallies.history import record

        with new_session(current_app) as session:
            written = record(session, utcnow())
            session.commit()
        click.echo(f"Recorded {written} count {'record' if written == 1 else 'records'}.")
