"""Bench databases and their data: a fresh schema, a letter seeded in bulk, ready-made work.

Seeding writes rows directly with SQL, so a million verified signatures take seconds, not a
day of HTTP. The rows are what the app itself would hold: confirmed signatures with a unique
address hash each, and the letter's `total` and `supporters` counters set to match, so that
`flask --app wsgi recount` finds nothing to repair. Pending signatures for the confirm
scenario and mail for the worker are made with the app's own token and mail functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from flask import Flask
from sqlalchemy import Engine, bindparam, event, insert, make_url, text

from config import Config
from petitions import create_app
from petitions import tokens as token_service
from petitions.db import UTCDateTime, make_engine, new_session, utcnow
from petitions.hashing import hash_address
from petitions.mail import queue_email
from petitions.models import Signature, TokenPurpose

#: the employer whose staff sign in every scenario; seeded signers are supporters
EMPLOYER_DOMAIN = "example.com"
SLUG = "bench-letter"
LETTER_BODY = """\
We are engineers, designers, researchers and support staff at Example Corp.

We are writing to ask that Example Corp **not renew** its contract to supply face
recognition to police departments, and that it publish the terms of any such contract.

1. End the current contract when its term ends.
2. Publish an ethics review for any contract touching surveillance.
3. Let employees transfer off such projects without penalty.

We love building things that help people. We ask to keep it that way.
"""


@dataclass(frozen=True)
class Letter:
    """The seeded letter."""

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
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    name = parsed.database
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to recreate a database named {name!r}")
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def postgres_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    try:
        with psycopg.connect(admin, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def server_version(engine: Engine) -> str:
    """The database server's version."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return str(connection.execute(text("SHOW server_version")).scalar())
        return str(connection.execute(text("SELECT sqlite_version()")).scalar())


def bench_engine(url: str) -> Engine:
    """The app's own engine settings, plus SHA-256 as an SQL function on SQLite for seeding."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        def add_sha256(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.create_function(
                "bench_sha256",
                1,
                lambda v: hashlib.sha256(v.encode()).hexdigest(),
                deterministic=True,
            )

        event.listen(engine, "connect", add_sha256)
    return engine


def _now_param() -> object:
    return bindparam("now", utcnow(), type_=UTCDateTime())


def seed_letter(engine: Engine, confirmed: int, slug: str = SLUG) -> Letter:
    """An organizer, an open letter with one employer domain, and `confirmed` verified supporters.

    Address hashes are SHA-256 of a seed label: 64 random-looking hex characters like the real
    keyed hashes, so the unique index grows the way it does in production. A quarter of the
    signers are named and a quarter anonymous (the rest counted only), so the page's list of
    signers is full; they confirmed one second apart, the newest a second ago.
    """
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        digest = "encode(sha256(('bench-seed:' || g.i)::bytea), 'hex')"
        numbers = "generate_series(1, :n) AS g(i)"
        moment = "CAST(:now AS timestamptz) - (:n - g.i + 1) * interval '1 second'"
    else:
        digest = "bench_sha256('bench-seed:' || g.i)"
        numbers = (
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)"
            " SELECT i FROM s) AS g"
        )
        moment = "datetime(:now, '-' || (:n - g.i + 1) || ' seconds')"
    display = "CASE g.i % 4 WHEN 0 THEN 'named' WHEN 1 THEN 'anonymous' ELSE 'counted' END"
    name = "CASE g.i % 4 WHEN 0 THEN 'Seeded Signer ' || g.i END"
    with engine.begin() as connection:
        user_id = connection.execute(
            text(
                "INSERT INTO users (email, display_name, password_hash, email_confirmed_at,"
                " session_version, is_admin, created_at)"
                " VALUES (:email, 'Bench Organizer', '!', :now, 1, false, :now)"
                " RETURNING id"
            ).bindparams(_now_param()),
            {"email": f"organizer-{slug}@bench.example"},
        ).scalar_one()
        petition_id = connection.execute(
            text(
                "INSERT INTO petitions (organizer_id, title, addressed_to, body_markdown, goal,"
                " slug, state, allow_supporters, reveal_threshold, created_at, updated_at,"
                " published_at) VALUES (:user, 'Drop the face recognition contract',"
                " 'Jane Doe, CEO, Example Corp', :body, 2000000, :slug, 'open', true, 10,"
                " :now, :now, :now) RETURNING id"
            ).bindparams(_now_param()),
            {"user": user_id, "body": LETTER_BODY, "slug": slug},
        ).scalar_one()
        employer_id = connection.execute(
            text(
                "INSERT INTO employer_domains (petition_id, domain, company_name)"
                " VALUES (:petition, :domain, 'Example Corp') RETURNING id"
            ),
            {"petition": petition_id, "domain": EMPLOYER_DOMAIN},
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO signatures (petition_id, state, address_hash, email_domain,"
                " affiliation, display, name, created_at, confirmed_at)"
                f" SELECT :petition, 'confirmed', {digest}, 'supporter.example', 'current',"
                f" {display}, {name}, {moment}, {moment} FROM {numbers}"
            ).bindparams(_now_param()),
            {"petition": petition_id, "n": confirmed},
        )
        if confirmed:
            connection.execute(
                text(
                    "INSERT INTO petition_counters (petition_id, bucket, shard, value)"
                    " VALUES (:petition, 'total', 0, :n), (:petition, 'supporters', 0, :n)"
                ),
                {"petition": petition_id, "n": confirmed},
            )
    if postgres:
        # What autovacuum would have done by the time a letter has a million signatures.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    return Letter(petition_id=petition_id, employer_id=employer_id, slug=slug, seeded=confirmed)


def in_process_app(env: dict[str, str]) -> Flask:
    """The app, built in this process with the same settings the servers get from `env`."""
    config = Config()
    for key in ("SECRET_KEY", "ADDRESS_HASH_KEY", "DATABASE_URL", "PUBLIC_URL", "SMTP_HOST"):
        setattr(config, key, env[key])
    config.SMTP_PORT = int(env["SMTP_PORT"])
    return create_app(config)


def make_pending(app: Flask, letter: Letter, count: int, tag: str) -> list[str]:
    """`count` pending employee signatures, each with its own live confirmation token.

    The signature rows are what `signing.sign` stores; the tokens come from the app's own
    `tokens.issue`. Returns the link token of each, as the emailed link would carry it.
    """
    links: list[str] = []
    now = utcnow()
    with app.app_context(), new_session(app) as session:
        for start in range(0, count, 2000):
            rows = []
            for number in range(start, min(start + 2000, count)):
                email = f"c-{tag}-{number}@{EMPLOYER_DOMAIN}"
                rows.append(
                    {
                        "petition_id": letter.petition_id,
                        "state": "pending",
                        "address_hash": hash_address(email),
                        "email": email,
                        "email_domain": EMPLOYER_DOMAIN,
                        "employer_id": letter.employer_id,
                        "affiliation": "current",
                        "display": "counted",
                        "created_at": now,
                    }
                )
            ids = session.scalars(
                insert(Signature).returning(Signature.id, sort_by_parameter_order=True), rows
            ).all()
            for signature_id in ids:
                issued = token_service.issue(
                    session,
                    TokenPurpose.CONFIRM_SIGNATURE,
                    now,
                    signature_id=signature_id,
                    with_code=True,
                )
                links.append(issued.link_token)
            session.commit()
    return links


def queue_mail(app: Flask, count: int, tag: str) -> None:
    """Put `count` confirmation emails in the outbox with the app's own `queue_email`.

    They are queued as a request queues them: template name and context only, unrendered.
    """
    with app.app_context(), new_session(app) as session:
        for number in range(count):
            queue_email(
                session,
                f"w-{tag}-{number}@{EMPLOYER_DOMAIN}",
                "confirm_signature",
                url=f"{app.config['PUBLIC_URL']}/c/bench-mail-{number}",
                code="ABCD-EFGH",
                max_age_days=7,
            )
            if number % 1000 == 999:
                session.commit()
        session.commit()


def queued_mail(engine: Engine) -> int:
    """Messages still waiting in the outbox."""
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM outbox WHERE status = 'queued'")
        ).scalar_one()


@dataclass(frozen=True)
class Tally:
    """A letter's numbers: confirmed signature rows and what its counters say."""

    confirmed_rows: int
    counter_total: int
    used_confirm_tokens: int


def tally(engine: Engine, letter: Letter) -> Tally:
    """Count the letter's confirmed rows, its counter total, and spent confirmation tokens.

    All three from one snapshot: on PostgreSQL, READ COMMITTED would let a confirmation that
    commits between two of the queries show in one count and not the other.
    """
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM signatures WHERE petition_id = :p AND state = 'confirmed'"),
            {"p": letter.petition_id},
        ).scalar_one()
        total = connection.execute(
            text(
                "SELECT coalesce(sum(value), 0) FROM petition_counters"
                " WHERE petition_id = :p AND bucket = 'total'"
            ),
            {"p": letter.petition_id},
        ).scalar_one()
        used = connection.execute(
            text(
                "SELECT count(*) FROM tokens"
                " WHERE purpose = 'confirm_signature' AND used_at IS NOT NULL"
            )
        ).scalar_one()
    return Tally(confirmed_rows=int(rows), counter_total=int(total), used_confirm_tokens=int(used))
