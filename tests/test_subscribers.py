"""The personal-address store: a copy of either database, taken after someone signed with a
personal address for updates, holds neither that address nor anything tying it to their
employer, and without UPDATES_KEY nothing in it opens (issue 22)."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from config import Config
from petitions import create_app
from petitions.cli import upgrade_database
from petitions.db import checkpoint_sqlite, get_engine, new_session
from petitions.models import Petition, Signature
from petitions.models.subscriber import Subscriber
from petitions.signing import subscribers
from tests.conftest import csrf_from, hidden, make_config

PERSONAL = "pat.private@home.example"
WORK = "pat.worker@example.com"
EMPLOYERS = "example.com Example Corp"


def _dump(app) -> str:
    """The database as a thief would copy it: the SQLite files' bytes (with -wal), or
    pg_dump's output; case folded."""
    engine = get_engine(app)
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        files = [path, *(path.with_name(path.name + s) for s in ("-wal", "-journal"))]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        return raw.decode("latin-1").casefold()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", url], capture_output=True, check=True, text=True
    )
    return dump.stdout.casefold()


def _worker_drain(app) -> None:
    """`flask worker --drain`: the worker's chores once (the subscriber move among them),
    then the mail that is due."""
    result = app.test_cli_runner().invoke(args=["worker", "--drain"])
    assert result.exit_code == 0, result.output


def _sign_with_updates(site, slug: str) -> str:
    """Sign in a fresh browser with a personal address for updates, confirm by code; the
    withdrawal code shown."""
    client = site.app.test_client()
    page = site.sign(
        slug,
        WORK,
        client=client,
        display="counted",
        wants_updates="y",
        updates_email=PERSONAL,
    ).get_data(as_text=True)
    _worker_drain(site.app)
    code = site.mailbox.last_to(WORK).code()
    confirmed = client.post(
        "/confirm/code",
        data={"csrf_token": csrf_from(page), "handle": hidden(page, "handle"), "code": code},
    ).get_data(as_text=True)
    assert "Your signature counts" in confirmed
    return re.search(r'id="withdraw-code">([^<]+)<', confirmed).group(1)


def test_a_copy_of_the_database_holds_no_personal_address_and_no_link_to_it(site, app):
    slug = site.letter("Stop the badge tracking", employers=EMPLOYERS)
    _sign_with_updates(site, slug)
    with new_session(app, write=False) as session:
        waiting = session.scalars(select(Signature)).one()
        assert waiting.updates_sealed is not None  # sealed, waiting for the worker's move
        assert session.scalars(select(Subscriber)).all() == []
    _worker_drain(app)  # moves it and sends the "signed" email
    _worker_drain(app)  # the next pass folds SQLite's write-ahead log into the file
    signed = site.mailbox.last_to(PERSONAL)
    assert signed.subject == 'You signed "Stop the badge tracking"'
    withdraw_code = re.search(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}", signed.text).group(0)

    stored = _dump(app)
    for secret in (PERSONAL, "pat.private", WORK, "pat.worker"):
        assert secret not in stored, secret
        assert secret.encode().hex() not in stored, secret
    assert "example.com" in stored  # the dump is readable: the employer's domain is in it

    with new_session(app, write=False) as session:
        signature = session.scalars(select(Signature)).one()
        assert (signature.updates_sealed, signature.withdrawal_sealed) == (None, None)
        subscriber = session.scalars(select(Subscriber)).one()
        columns = {c["name"] for c in inspect(session.get_bind()).get_columns("subscribers")}
        foreign = inspect(session.get_bind()).get_foreign_keys("subscribers")
    # Nothing in the row can be matched to a signature: a random id, the day, the letter.
    assert columns == {
        "id",
        "petition_id",
        "address_hash",
        "address_sealed",
        "created_on",
        "confirmed_on",
    }
    assert [fk["referred_table"] for fk in foreign] == ["petitions"]
    assert re.fullmatch(r"[0-9a-f]{32}", subscriber.id) and subscriber.id != str(signature.id)
    assert type(subscriber.created_on) is date
    # No other row names it (on SQLite its table's unique index holds a second copy).
    copies = 2 if get_engine(app).dialect.name == "sqlite" else 1
    for value in (subscriber.id, subscriber.address_hash):
        assert stored.count(value) == copies, value
    with app.app_context(), new_session(app, write=False) as session:
        opened = subscribers.addresses(session, subscriber.petition_id, confirmed_only=False)
        assert list(opened) == [PERSONAL]
    # The emailed withdrawal code works.
    response = site.post_form("/withdraw", "/withdraw", {"code": withdraw_code})
    assert "Your signature is withdrawn" in response.get_data(as_text=True)


def test_without_the_key_nothing_opens(site, app, database_url, mailbox):
    slug = site.letter("Stop the badge tracking", employers=EMPLOYERS)
    _sign_with_updates(site, slug)
    _worker_drain(app)
    other = create_app(make_config(database_url, mailbox.port, UPDATES_KEY="another key"))
    try:
        with new_session(app, write=False) as session:
            row = session.scalars(select(Subscriber)).one()
        with other.app_context():
            with pytest.raises(subscribers.SealBroken):
                subscribers.open_sealed(
                    row.address_sealed, f"subscriber:{row.id}:{row.petition_id}"
                )
            # Nor does a hash computed without the key match the stored one.
            assert subscribers.subscriber_hash(row.petition_id, PERSONAL) != row.address_hash
        with app.app_context():
            bound = f"subscriber:{row.id}:{row.petition_id}"
            assert subscribers.open_sealed(row.address_sealed, bound) == PERSONAL
            # A sealed address copied onto another row or letter does not open there either.
            with pytest.raises(subscribers.SealBroken):
                subscribers.open_sealed(row.address_sealed, f"subscriber:x:{row.petition_id}")
            assert subscribers.subscriber_hash(row.petition_id, PERSONAL) == row.address_hash
    finally:
        get_engine(other).dispose()


def test_the_store_adds_once_confirms_and_unsubscribes_by_hash(site, app):
    slug = site.letter()
    with app.app_context(), new_session(app) as session:
        petition_id = session.scalars(select(Petition.id).where(Petition.slug == slug)).one()
        today = date(2026, 12, 4)
        subscribers.add(session, petition_id, "Someone+news@Home.example", today)
        subscribers.add(session, petition_id, "someone@home.example", today)
        session.commit()
        assert subscribers.count(session, petition_id) == 1
        name = subscribers.subscriber_hash(petition_id, "someone@home.example")
        assert list(subscribers.addresses(session, petition_id)) == []  # not confirmed yet
        assert subscribers.confirm(session, name, today)
        assert list(subscribers.addresses(session, petition_id)) == ["Someone+news@Home.example"]
        assert subscribers.unsubscribe(session, name)
        assert not subscribers.unsubscribe(session, name)
        session.commit()
        assert subscribers.count(session, petition_id) == 0


def test_production_refuses_to_start_without_updates_key():
    config = Config()
    config.SECRET_KEY, config.ADDRESS_HASH_KEY, config.UPDATES_KEY = "s", "h", None
    config.DATABASE_URL = "sqlite://"
    with pytest.raises(RuntimeError, match="UPDATES_KEY"):
        create_app(config)


@pytest.mark.skipif(
    bool(__import__("os").environ.get("TEST_DATABASE_URL")), reason="a SQLite file of its own"
)
def test_the_migration_seals_todays_addresses_and_drops_the_column(tmp_path, mailbox):
    path = tmp_path / "old.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}", mailbox.port))
    upgrade_database(app, "0006_committee")
    engine = get_engine(app)
    with engine.begin() as conn:
        _insert(conn, "petitions", slug="old-letter", state="open")
        for state, work, personal in [
            ("confirmed", None, "kept.confirmed@home.example"),
            ("pending", "pending.worker@example.com", "kept.pending@home.example"),
        ]:
            _insert(
                conn,
                "signatures",
                petition_id=1,
                state=state,
                address_hash=state,
                email=work,
                updates_email=personal,
            )
    with app.app_context():
        upgrade_database(app, "0007_subscribers")
        with new_session(app) as session:
            names = {c["name"] for c in inspect(session.get_bind()).get_columns("signatures")}
            assert "updates_email" not in names
            assert list(subscribers.addresses(session, 1, confirmed_only=False)) == [
                "kept.confirmed@home.example"
            ]
            sealed = session.execute(
                text("SELECT updates_sealed FROM signatures WHERE state = 'pending'")
            ).scalar_one()
            assert subscribers.open_sealed(sealed, "signature:1") == "kept.pending@home.example"
    checkpoint_sqlite(engine)
    engine.dispose()
    raw = path.read_bytes().decode("latin-1")
    assert "kept.confirmed" not in raw and "kept.pending" not in raw


def _insert(conn, table: str, **values: object) -> None:
    """A row with `values` and a plain value in every other required column."""
    for column in conn.execute(text(f"PRAGMA table_info({table})")).mappings():
        if column["notnull"] and column["name"] not in values and not column["pk"]:
            kind = column["type"].upper()
            if "INT" in kind or "BOOL" in kind:
                values[column["name"]] = 0
            elif "DATE" in kind or "TIME" in kind:
                values[column["name"]] = "2026-01-01 00:00:00"
            else:
                values[column["name"]] = "x"
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)


def test_no_request_ever_opens_an_address(app):
    with app.app_context():
        sealed = subscribers.seal_for_signature(1, PERSONAL)
        assert subscribers.open_sealed(sealed, "signature:1") == PERSONAL
    with app.test_request_context("/"), pytest.raises(RuntimeError, match="worker only"):
        subscribers.open_sealed(sealed, "signature:1")


def test_the_safety_page_says_what_is_kept_of_a_personal_address(client):
    page = client.get("/safety").get_data(as_text=True)
    assert "only encrypted" in page
    assert "Nothing in that list points to your signature, your employer" in page
    assert "A personal address in readable form" in page
