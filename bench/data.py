"""Bench databases and their rows: a fresh schema, letters seeded in bulk, confirmation links.

Rows are written with the app's models on a plain SQLAlchemy session, so a million verified
signatures take seconds, not a day of HTTP; the counters are set to match, so that
`flask --app wsgi recount` finds nothing to repair. Every import of the app is in this
module, and the only ones past the models are `tokens.issue` and `hashing` (confirm links).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy import func, insert, make_url, select, text
from sqlalchemy.orm import Session

from config import Config
from petitions import create_app, hashing, tokens
from petitions.db import new_session, utcnow
from petitions.models import (
    CommitteeMember,
    EmployerDomain,
    OutboxMessage,
    Petition,
    PetitionCounter,
    Signature,
    Token,
    TokenPurpose,
    User,
)

#: the employer whose staff sign in every scenario; seeded signers are supporters
EMPLOYER_DOMAIN = "example.com"
LETTER_BODY = (
    "We are engineers, designers and support staff at Example Corp. We ask that Example Corp"
    " **not renew** its contract to supply face recognition to police departments.\n\n"
    "1. End the contract when its term ends.\n2. Publish the terms of any such contract.\n"
)


@dataclass(frozen=True)
class Letter:
    """A seeded letter."""

    petition_id: int
    employer_id: int
    slug: str
    seeded: int


def recreate_database(url: str) -> None:
    """Start from nothing: delete the SQLite file, or drop and create the PostgreSQL database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    name = parsed.database
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to recreate a database named {name!r}")
    with psycopg.connect(_admin_url(url), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _admin_url(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


def postgres_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(_admin_url(url), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def in_process_app(env: dict[str, str]) -> Flask:
    """The app, built in this process with the settings the servers get from `env`."""
    config = Config()
    for key in ("SECRET_KEY", "ADDRESS_HASH_KEY", "UPDATES_KEY", "DATABASE_URL", "PUBLIC_URL"):
        setattr(config, key, env[key])
    config.SMTP_HOST, config.SMTP_PORT = env["SMTP_HOST"], int(env["SMTP_PORT"])
    return create_app(config)


def seed_letter(app: Flask, slug: str, confirmed: int) -> Letter:
    """An organizer, an open letter with one employer domain, and `confirmed` verified
    supporters: a quarter named, a quarter anonymous, confirmed a second apart."""
    now = utcnow()
    with new_session(app) as session:
        organizer = User(
            email=f"organizer-{slug}@bench.example",
            display_name="Bench Organizer",
            password_hash="!",
            email_confirmed_at=now,
        )
        session.add(organizer)
        session.flush()
        letter = Petition(
            title="Drop the face recognition contract",
            addressed_to="Jane Doe, CEO, Example Corp",
            body_markdown=LETTER_BODY,
            goal=2_000_000,
            slug=slug,
            state="open",
            published_at=now,
            listing_approved_at=now,  # listed, as a letter past review is
        )
        session.add(letter)
        session.flush()
        session.add(
            CommitteeMember(
                petition_id=letter.id, user_id=organizer.id, role="owner", shown_on_letter=True
            )
        )
        employer = EmployerDomain(
            petition_id=letter.id, domain=EMPLOYER_DOMAIN, company_name="Example Corp"
        )
        session.add(employer)
        session.flush()
        displays = ("named", "anonymous", "counted", "counted")
        for start in range(0, confirmed, 20_000):
            rows = [
                {
                    "petition_id": letter.id,
                    "state": "confirmed",
                    # 64 random-looking hex digits, as the keyed hashes, so the index grows alike
                    "address_hash": hashlib.sha256(f"{slug}:{n}".encode()).hexdigest(),
                    "email_domain": "supporter.example",
                    "affiliation": "current",
                    "display": displays[n % 4],
                    "name": f"Seeded Signer {n}" if n % 4 == 0 else None,
                    "created_at": now - timedelta(seconds=confirmed - n),
                    "confirmed_at": now - timedelta(seconds=confirmed - n),
                }
                for n in range(start, min(start + 20_000, confirmed))
            ]
            session.execute(insert(Signature.__table__), rows)  # Core: no ORM per row
        for bucket in ("total", "supporters"):
            session.add(
                PetitionCounter(petition_id=letter.id, bucket=bucket, shard=0, value=confirmed)
            )
        session.commit()
        seeded = Letter(letter.id, employer.id, slug, confirmed)
        # What autovacuum, or the worker's checkpoint chore, would have done by now.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE"))
            session.commit()
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        with contextlib.closing(sqlite3.connect(url.database or "")) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seeded


def make_pending(app: Flask, letter: Letter, count: int, tag: str) -> list[str]:
    """`count` pending employee signatures, each with a live confirmation token issued by the
    app's own `tokens.issue`; returns each link's token, as the emailed link carries it."""
    links: list[str] = []
    now = utcnow()
    with app.app_context(), new_session(app) as session:
        for start in range(0, count, 2000):
            signatures = [
                Signature(
                    petition_id=letter.petition_id,
                    state="pending",
                    address_hash=hashing.hash_address(f"c-{tag}-{n}@{EMPLOYER_DOMAIN}"),
                    email=f"c-{tag}-{n}@{EMPLOYER_DOMAIN}",
                    email_domain=EMPLOYER_DOMAIN,
                    employer_id=letter.employer_id,
                    affiliation="current",
                    display="counted",
                    created_at=now,
                )
                for n in range(start, min(start + 2000, count))
            ]
            session.add_all(signatures)
            session.flush()
            for signature in signatures:
                issued = tokens.issue(
                    session,
                    TokenPurpose.CONFIRM_SIGNATURE,
                    now,
                    signature_id=signature.id,
                    with_code=True,
                )
                links.append(issued.link_token)
            session.commit()
    return links


def queued_mail(app: Flask) -> int:
    """Messages still waiting in the outbox."""
    return _count(app, OutboxMessage.id, OutboxMessage.status == "queued")


def pending_signatures(app: Flask, email_like: str) -> int:
    """Pending signatures whose address matches an SQL LIKE pattern."""
    return _count(app, Signature.id, Signature.state == "pending", Signature.email.like(email_like))


def _count(app: Flask | Session, column: Any, *where: Any) -> int:
    """Rows with `column` matching `where`, on a session of its own or the one given."""
    query = select(func.count(column)).where(*where)
    if isinstance(app, Session):
        return int(app.scalar(query) or 0)
    with new_session(app, write=False) as session:
        return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class Tally:
    """A letter's numbers: confirmed signature rows, its counter total, spent confirm links."""

    confirmed_rows: int
    counter_total: int
    used_confirm_tokens: int


def tally(app: Flask, letter: Letter) -> Tally:
    """The three numbers from one snapshot (REPEATABLE READ on PostgreSQL)."""
    with new_session(app, write=False) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        rows = _count(
            session,
            Signature.id,
            Signature.petition_id == letter.petition_id,
            Signature.state == "confirmed",
        )
        total = session.scalar(
            select(func.coalesce(func.sum(PetitionCounter.value), 0)).where(
                PetitionCounter.petition_id == letter.petition_id,
                PetitionCounter.bucket == "total",
            )
        )
        used = _count(
            session,
            Token.id,
            Token.purpose == TokenPurpose.CONFIRM_SIGNATURE,
            Token.used_at.is_not(None),
        )
    return Tally(rows, int(total or 0), used)
