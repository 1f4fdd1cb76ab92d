"""Ordinary signatures are taken before Flask (`petitions.quicksign`), with Flask's answer,
Flask's checks and Flask's limits; everything else still goes through Flask."""

from __future__ import annotations

import itertools
import re
import uuid

import pytest
import redis
from flask import Flask
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from petitions.db import new_session, utcnow
from petitions.models import Petition, PetitionState, Signature
from petitions.security import SharedLimitBudget, limiter
from petitions.signing.forms import SignForm, plain_sign_request
from tests.conftest import REDIS_URL, csrf_from, hidden, require_redis, sign_fields

pytestmark = pytest.mark.config(READ_CACHE_SECONDS=60.0)

DETAILS = {"name": "Sam Signer", "affiliation": "current", "display": "counted"}


class FlaskCalls:
    """Counts the sign POSTs (or the confirmation POSTs) that reached Flask."""

    def __init__(self, app: Flask, confirmations: bool = False) -> None:
        self.quick = app.extensions["quicksign"]
        self.inner = self.quick.app
        self.count = 0
        self.confirmations = confirmations
        self.quick.app = self

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        counted = path.startswith("/c/") if self.confirmations else path.endswith("/sign")
        if environ["REQUEST_METHOD"] == "POST" and counted:
            self.count += 1
        return self.inner(environ, start_response)


def _signer(app: Flask, slug: str):
    """A fresh visitor with the letter open: their client and the form's hidden fields."""
    client = app.test_client()
    return client, sign_fields(client.get(f"/p/{slug}").get_data(as_text=True))


def _sign(client, slug: str, fields: dict[str, str], email: str, **extra: str):
    data = {**fields, **DETAILS, "email": email, **extra}
    return client.post(f"/p/{slug}/sign", data=data)


def _teach(app: Flask, slug: str) -> None:
    """Two signatures through Flask, so that its answer is learned for the ones after."""
    for number in range(2):
        client, fields = _signer(app, slug)
        _sign(client, slug, fields, f"teach{number}@example.net")


def _signatures(app: Flask) -> int:
    with new_session(app, write=False) as session:
        return session.scalar(select(func.count()).select_from(Signature)) or 0


def test_ordinary_signatures_skip_flask_and_get_flasks_answer(site, app):
    slug = site.letter()
    calls = FlaskCalls(app)
    answers = []
    for number in range(5):
        client, fields = _signer(app, slug)
        answer = _sign(client, slug, fields, f"quick{number}@example.net")
        assert answer.status_code == 200
        answers.append((client, answer))
    # Flask answered until one of its answers could be learned; the rest were taken before it.
    assert calls.count <= 2
    assert _signatures(app) == 5
    learned, quick = answers[1][1], answers[-1][1]
    assert [name for name, _ in quick.headers] == [name for name, _ in learned.headers]
    assert "Set-Cookie" not in quick.headers
    pages = [answer.get_data(as_text=True) for _, answer in answers]
    assert len({hidden(page, "handle") for page in pages}) == 5
    assert len({csrf_from(page) for page in pages}) == 5
    # Every signer's emailed code works with the handle and token on their own page.
    site.deliver()
    for number, (client, answer) in enumerate(answers):
        page = answer.get_data(as_text=True)
        code = site.mailbox.last_to(f"quick{number}@example.net").code()
        confirmed = client.post(
            "/confirm/code",
            data={"csrf_token": csrf_from(page), "handle": hidden(page, "handle"), "code": code},
        )
        assert "Your signature counts" in confirmed.get_data(as_text=True)
    assert site.count(slug) == 5


def test_an_address_that_signed_before_gets_the_same_answer_and_no_second_row(site, app):
    slug = site.letter()
    _teach(app, slug)
    calls = FlaskCalls(app)
    client, fields = _signer(app, slug)
    first = _sign(client, slug, fields, "twice@example.net")
    site.deliver()
    assert "Your signature counts" in site.confirm_link("twice@example.net").get_data(as_text=True)
    site.mailbox.clear()
    # Confirming emptied this process's caches: the letter's signing rules are read again
    # here, not by Flask.
    assert app.extensions["microcache"].pages.get(("signing rules", slug)) is None
    calls.count = 0
    again = _sign(client, slug, fields, "twice@example.net")
    assert calls.count == 0
    assert app.extensions["microcache"].pages.get(("signing rules", slug)) is not None
    assert again.status_code == first.status_code == 200
    assert [name for name, _ in again.headers] == [name for name, _ in first.headers]
    assert hidden(again.get_data(as_text=True), "handle") != hidden(
        first.get_data(as_text=True), "handle"
    )
    assert _signatures(app) == 3
    site.deliver()
    note = site.mailbox.last_to("twice@example.net")
    assert "already" in note.text.lower()


def test_what_flask_must_judge_goes_to_flask(site, app):
    slug = site.letter(employers="example.com Example Corp", allow_supporters="")
    for number in range(2):
        client, fields = _signer(app, slug)
        assert _sign(client, slug, fields, f"teach{number}@example.com").status_code == 200
    calls = FlaskCalls(app)
    client, fields = _signer(app, slug)
    refused = [
        _sign(client, slug, {**fields, "csrf_token": "forged"}, "a@example.com"),
        _sign(client, slug, fields, "not an address"),
        _sign(client, slug, fields, "someone@elsewhere.org"),  # not a listed employer
        _sign(client, slug, fields, "b@example.com", display="named", name=""),
        _sign(client, slug, fields, "c@example.com", website="http://spam.example"),
    ]
    assert [answer.status_code for answer in refused] == [400] * 5
    assert calls.count == 5
    assert "only from addresses at @example.com" in refused[2].get_data(as_text=True)
    # A visitor whose session holds more than a CSRF secret (here, a logged-in organizer).
    site_fields = sign_fields(site.client.get(f"/p/{slug}").get_data(as_text=True))
    assert _sign(site.client, slug, site_fields, "olivia@example.com").status_code == 200
    assert calls.count == 6
    assert _signatures(app) == 3


def test_rules_read_here_when_not_kept_and_a_closed_letter_goes_to_flask(site, app):
    slug = site.letter()
    _teach(app, slug)
    cache = app.extensions["microcache"]
    calls = FlaskCalls(app)
    client, fields = _signer(app, slug)
    cache.forget()
    assert _sign(client, slug, fields, "kept@example.net").status_code == 200
    assert calls.count == 0
    # Closed behind this process's back: the rules read afresh say so, and Flask answers.
    with new_session(app, write=True) as session:
        letter = session.scalars(select(Petition).where(Petition.slug == slug)).one()
        letter.state, letter.closed_at = PetitionState.CLOSED, utcnow()
        session.commit()
    cache.forget()
    closed = _sign(client, slug, fields, "late@example.net")
    assert calls.count == 1
    assert "closed" in closed.get_data(as_text=True)
    assert _signatures(app) == 3


@pytest.mark.config(READ_CACHE_SECONDS=60.0, RATELIMIT_ENABLED=True)
def test_signatures_before_flask_count_against_flasks_limit(site, app):
    slug = site.letter()
    calls = FlaskCalls(app)
    client, fields = _signer(app, slug)
    answers = [_sign(client, slug, fields, f"burst{n}@example.net") for n in range(12)]
    assert [a.status_code for a in answers] == [200] * 10 + [429] * 2
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in answers[:10]]
    assert remaining == list(range(9, -1, -1))
    assert calls.count < 12  # some of them were taken before Flask
    assert _signatures(app) == 10


#: a key prefix no earlier run left counters under, in a Redis shared between runs
_PREFIX = f"quick-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    "storage",
    [
        pytest.param(
            uri,
            marks=pytest.mark.config(
                READ_CACHE_SECONDS=60.0,
                RATELIMIT_ENABLED=True,
                RATELIMIT_STORAGE_URI=uri,
                RATELIMIT_KEY_PREFIX=_PREFIX,
            ),
        )
        for uri in ("inprocess://", "memory://", REDIS_URL)
    ],
)
def test_a_charge_before_flask_leaves_the_counters_as_flask_limiters_strategy_would(app, storage):
    """The fixed-window charge builds each key once and works the storage itself: its
    headers, and the counters it leaves, are the ones the strategy's own calls read, in each
    storage a deployment can choose (production's Redis included)."""
    if storage == REDIS_URL:
        require_redis()
    try:
        with app.app_context():
            strategy = limiter.limiter
            assert type(strategy) is FixedWindowRateLimiter  # the quick path is under test
            budget = SharedLimitBudget(app, "3 per minute;5 per hour", "probe")
            minute, hour = budget.items
            args = [*budget.prefix, "203.0.113.9", "probe"]
            limit_name, remaining_name, reset_name, _retry_name = budget.names
            for left in (2, 1, 0):
                headers = dict(budget.charge({"REMOTE_ADDR": "203.0.113.9"}) or [])
                reset, remaining = strategy.get_window_stats(minute, *args)
                assert headers[limit_name] == "3"
                assert int(headers[remaining_name]) == remaining == left
                assert int(headers[reset_name]) == int(reset + 1)
            assert budget.charge({"REMOTE_ADDR": "203.0.113.9"}) is None  # the minute is spent
            assert not strategy.test(minute, *args)
            # the refused charge hit nothing: the hour counted three
            assert strategy.get_window_stats(hour, *args).remaining == 2
            other = dict(budget.charge({"REMOTE_ADDR": "203.0.113.10"}) or [])
            assert other[remaining_name] == "2"  # another address has counters of its own
    finally:
        if storage == REDIS_URL:
            connection = redis.Redis.from_url(REDIS_URL)
            for key in connection.scan_iter(f"*{_PREFIX}*"):
                connection.delete(key)


def _anonymous_count(app: Flask, slug: str) -> int:
    html = app.test_client().get(f"/p/{slug}").get_data(as_text=True)
    match = re.search(r'id="verified-count">([\d,]+)<', html)
    assert match
    return int(match.group(1).replace(",", ""))


def test_ordinary_confirmations_skip_flask_and_get_flasks_answer(site, app):
    slug = site.letter()
    signers = []
    for number in range(5):
        client, fields = _signer(app, slug)
        wants = {"wants_updates": "y", "updates_email": f"home{number}@example.org"}
        _sign(client, slug, fields, f"conf{number}@example.net", **(wants if number == 4 else {}))
        signers.append(client)
    site.deliver()
    calls = FlaskCalls(app, confirmations=True)
    pages, links = [], []
    for number, client in enumerate(signers):
        before = _anonymous_count(app, slug)
        path = site.mailbox.last_to(f"conf{number}@example.net").link()
        path = path.removeprefix("http://undersigned.test")
        links.append((client, path))
        token = csrf_from(client.get(path).get_data(as_text=True))
        answer = client.post(path, data={"csrf_token": token})
        assert answer.status_code == 200
        assert "Your signature counts" in answer.get_data(as_text=True)
        pages.append(answer)
        # The count anyone reads in this process moves at once: the caches were emptied.
        assert _anonymous_count(app, slug) == before + 1
    assert calls.count <= 2
    assert [name for name, _ in pages[-1].headers] == [name for name, _ in pages[1].headers]
    assert pages[-1].headers["Cache-Control"] == "no-store"
    codes = [
        re.search(r'id="withdraw-code">([A-Z0-9-]+)<', page.get_data(as_text=True)).group(1)
        for page in pages
    ]
    assert len(set(codes)) == 5
    # A link used once is refused the second time, by Flask.
    client, path = links[-1]
    assert "already confirmed" in client.get(path).get_data(as_text=True).lower()
    token = csrf_from(client.get(f"/p/{slug}").get_data(as_text=True))
    again = client.post(path, data={"csrf_token": token})
    assert "already confirmed" in again.get_data(as_text=True).lower()
    assert site.count(slug) == 5
    # The signer who asked for updates got the "signed" email, with the letter's title.
    site.deliver()
    signed = site.mailbox.last_to("home4@example.org")
    assert "Drop the ICE contract" in signed.text
    # Each withdrawal code withdraws its own signature.
    withdrawn = site.post_form("/withdraw", "/withdraw", {"code": codes[2]})
    assert withdrawn.status_code == 200
    assert site.count(slug) == 4


def test_a_quick_confirmation_reads_and_writes_on_one_connection(site, app):
    from sqlalchemy import event

    slug = site.letter()
    clients = []
    for number in range(6):
        client, fields = _signer(app, slug)
        # Half of them ask for updates: their confirmation also queues an email, which on
        # PostgreSQL takes a transaction instead of one statement on its own.
        wants = {"wants_updates": "y", "updates_email": f"home{number}@example.org"}
        _sign(client, slug, fields, f"one{number}@example.net", **(wants if number % 2 else {}))
        clients.append(client)
    site.deliver()
    calls = FlaskCalls(app, confirmations=True)
    pool = app.extensions["db_engine"].pool
    checkouts: list[int] = []

    def checkout(*_args) -> None:
        checkouts.append(1)

    event.listen(pool, "checkout", checkout)
    quick = []
    try:
        for number, client in enumerate(clients):
            path = site.mailbox.last_to(f"one{number}@example.net").link()
            path = path.removeprefix("http://undersigned.test")
            token = csrf_from(client.get(path).get_data(as_text=True))
            before, checkouts[:] = calls.count, []
            answer = client.post(path, data={"csrf_token": token})
            assert "Your signature counts" in answer.get_data(as_text=True)
            if calls.count == before:
                quick.append((number % 2, len(checkouts)))
    finally:
        event.remove(pool, "checkout", checkout)
    assert {wanted for wanted, _ in quick} == {0, 1}
    # One connection, kept from the first quick confirmation on: no checkout after that.
    assert sum(used for _, used in quick) <= 1
    assert site.count(slug) == 6
    # The signers who asked for updates got the "signed" email; the others got nothing more.
    site.deliver()
    for number in range(6):
        assert len(site.mailbox.to(f"home{number}@example.org")) == number % 2


def test_a_confirmation_with_a_bad_token_or_extra_fields_goes_to_flask(site, app):
    slug = site.letter()
    client, fields = _signer(app, slug)
    _sign(client, slug, fields, "odd@example.net")
    site.deliver()
    path = site.mailbox.last_to("odd@example.net").link().removeprefix("http://undersigned.test")
    calls = FlaskCalls(app, confirmations=True)
    token = csrf_from(client.get(path).get_data(as_text=True))
    forged = client.post(path, data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.post(path[:-3] + "abc", data={"csrf_token": token}).status_code == 400
    assert calls.count == 2
    assert site.count(slug) == 0
    assert "Your signature counts" in client.post(path, data={"csrf_token": token}).get_data(
        as_text=True
    )
    assert site.count(slug) == 1


def test_over_https_the_referer_is_checked_as_flask_wtf_does(site, app):
    slug = site.letter()
    https = "https://localhost"
    client = app.test_client()
    page = client.get(f"/p/{slug}", base_url=https).get_data(as_text=True)
    fields = sign_fields(page)
    for number in range(3):  # Flask's answers, then answers taken before Flask
        data = {**fields, **DETAILS, "email": f"tls{number}@example.net"}
        refused = client.post(f"/p/{slug}/sign", data=data, base_url=https)
        assert refused.status_code == 400  # no Referer over HTTPS
        for referer in ("https://evil.example/", "https://localhost:8443/", "https://[x/"):
            forged = client.post(
                f"/p/{slug}/sign", data=data, base_url=https, headers={"Referer": referer}
            )
            assert forged.status_code == 400, referer
        signed = client.post(
            f"/p/{slug}/sign", data=data, base_url=https, headers={"Referer": f"{https}/p/{slug}"}
        )
        assert signed.status_code == 200
    assert _signatures(app) == 3
    site.deliver()
    path = site.mailbox.last_to("tls2@example.net").link().removeprefix("http://undersigned.test")
    landing = client.get(path, base_url=https)
    # The token's URL stays on the site, but is sent along with the Confirm button's POST.
    assert landing.headers["Referrer-Policy"] == "same-origin"
    token = csrf_from(landing.get_data(as_text=True))
    assert client.post(path, data={"csrf_token": token}, base_url=https).status_code == 400
    confirmed = client.post(
        path, data={"csrf_token": token}, base_url=https, headers={"Referer": f"{https}{path}"}
    )
    assert "Your signature counts" in confirmed.get_data(as_text=True)


FORMS = [
    {**DETAILS, "email": "plain@example.net"},
    {**DETAILS, "email": "  Mixed.Case@Example.NET  ", "submit": "Sign"},
    {**DETAILS, "email": "x@mailinator.com"},  # disposable
    {**DETAILS, "email": "two@@example.net"},
    {**DETAILS, "email": ""},
    {**DETAILS, "email": "a" * 250 + "@example.net"},
    {**DETAILS, "email": "ctl\x01@example.net"},
    {**DETAILS, "email": "ok@example.net", "name": "x" * 101},
    {**DETAILS, "email": "ok@example.net", "name": "Tab\tbed", "job_title": " Engineer "},
    {**DETAILS, "email": "ok@example.net", "team": "bell\x07"},
    {**DETAILS, "email": "ok@example.net", "display": "named", "name": "  "},
    {**DETAILS, "email": "ok@example.net", "display": "threshold", "name": "Ana"},
    {**DETAILS, "email": "ok@example.net", "display": "nobody"},
    {**DETAILS, "email": "ok@example.net", "affiliation": ""},
    {"email": "ok@example.net", "display": "counted"},
    {**DETAILS, "email": "ok@example.net", "wants_updates": "y"},
    {**DETAILS, "email": "ok@example.net", "wants_updates": "y", "updates_email": "me@home.org"},
    {**DETAILS, "email": "ok@example.net", "wants_updates": "false", "updates_email": "bad"},
    {**DETAILS, "email": "ok@example.net", "updates_email": "me@mailinator.com"},
    {**DETAILS, "email": "ok@example.net", "wants_updates": "", "updates_email": "me@home.org"},
    {**DETAILS, "email": "ok@example.net", "website": "filled"},
    {**DETAILS, "email": "ok@example.net", "unexpected": "field"},
]


@pytest.mark.parametrize("stamp", ["fresh", "forged"])
def test_plain_checks_accept_only_what_the_sign_form_accepts_with_the_same_values(app, stamp):
    with app.test_request_context():
        from petitions.fields import form_started

        started = form_started() if stamp == "fresh" else "forged"
    for raw in FORMS:
        data = {**raw, "started": started}
        with app.test_request_context(method="POST", data=data):
            form = SignForm(formdata=MultiDict(data), meta={"csrf": False})
            valid = form.validate()
            plain = plain_sign_request(data)
        if plain is None:
            # Flask will judge it; the form must refuse it, except for the fields the plain
            # checks do not know (which the form ignores).
            assert not valid or "unexpected" in data, data
            continue
        assert valid, (data, form.errors)
        assert plain.email == form.email.data
        assert plain.name == (form.name.data or "")
        assert (plain.job_title or None) == (form.job_title.data or None)
        assert (plain.team or None) == (form.team.data or None)
        assert plain.affiliation.value == form.affiliation.data
        assert plain.display.value == form.display.data
        wanted = form.updates_email.data if form.wants_updates.data else None
        assert plain.updates_email == wanted
    # The corpus holds forms of both kinds.
    with app.test_request_context():
        accepted = [plain_sign_request({**raw, "started": started}) for raw in FORMS]
    assert any(accepted) == (stamp == "fresh")
    assert not all(itertools.chain(accepted))


def test_the_hot_statements_run_on_the_driver_not_through_sqlalchemy(site, app):
    from petitions import mail
    from petitions import tokens as token_service
    from petitions.signing import service as signing

    slug = site.letter()
    client, fields = _signer(app, slug)
    _sign(client, slug, fields, "driver@example.net")
    assert "Your signature counts" in site.confirm_link("driver@example.net").get_data(as_text=True)
    dialect = app.extensions["db_engine"].dialect.name
    if dialect == "postgresql":
        used = [signing._SIGN_AT_ONCE, signing._confirm_at_once(2)]
    else:
        used = [
            signing._NEW_SIGNATURE,
            token_service._INSERT,
            mail._QUEUE,
            signing._CONFIRM,
            signing._SPEND_CONFIRM_TOKENS,
        ]
    used.append(signing._PENDING_BY["nonce_hash"])
    for statement in used:
        prepared = [value for (name, _), value in statement._prepared.items() if name == dialect]
        assert prepared and all(value is not False for value in prepared), statement.statement


def test_a_row_read_on_the_driver_is_the_row_sqlalchemy_reads(site, app):
    from petitions.models import Token, TokenPurpose
    from petitions.signing import service as signing

    slug = site.letter()
    site.sign(slug, "row@example.net")
    with new_session(app, write=False) as session:
        token = session.scalars(
            select(Token).where(Token.purpose == TokenPurpose.CONFIRM_SIGNATURE)
        ).one()
        connection = session.connection()
        for by, key in (("nonce_hash", token.nonce_hash), ("handle", token.handle)):
            fast = signing._PENDING_BY[by](connection, {"key": key})
            slow = connection.execute(signing._PENDING_BY[by].statement, {"key": key}).one()
            assert fast._fields == tuple(slow._fields)
            assert tuple(fast) == tuple(slow)
            assert fast.expires_at.tzinfo is not None and fast.slug == slug
        assert signing._PENDING_BY["handle"](connection, {"key": "no-such-handle"}) is None


def test_an_address_that_signed_before_costs_the_same_writes_as_a_new_one(site, app, monkeypatch):
    """The time of the answer must not tell a new signer from one who signed before: each
    takes the SQLite writer lock once, and on PostgreSQL each is one statement."""
    from petitions import db

    slug = site.letter()
    client, fields = _signer(app, slug)
    _sign(client, slug, fields, "before@example.net")
    _sign(client, slug, fields, "confirmed@example.net")
    site.deliver()
    assert "Your signature counts" in site.confirm_link("confirmed@example.net").get_data(
        as_text=True
    )
    for number in range(2):  # fill the caches the confirmation emptied, learn the answer
        other, other_fields = _signer(app, slug)
        _sign(other, slug, other_fields, f"refill{number}@example.net")
    calls = FlaskCalls(app)
    events: list[str] = []
    queue_for_writes = db.QueuedWriterConnection.queue_for_writes
    rollback = db.CoreWrites.rollback

    def queued(connection):
        events.append("lock")
        return queue_for_writes(connection)

    def rolled_back(writes):
        events.append("rollback")
        return rollback(writes)

    monkeypatch.setattr(db.QueuedWriterConnection, "queue_for_writes", queued)
    monkeypatch.setattr(db.CoreWrites, "rollback", rolled_back)
    seen = []
    for address in ("new@example.net", "before@example.net", "confirmed@example.net"):
        events.clear()
        answer = _sign(client, slug, fields, address)
        assert answer.status_code == 200
        seen.append(list(events))
    assert calls.count == 0
    assert seen[0] == seen[1] == seen[2], seen
    assert "rollback" not in seen[0]
    site.deliver()
    assert "already" in site.mailbox.last_to("confirmed@example.net").text.lower()
    assert site.mailbox.last_to("before@example.net").code()
    assert _signatures(app) == 5


@pytest.mark.config(READ_CACHE_SECONDS=60.0, RATELIMIT_ENABLED=True)
def test_a_signature_handed_to_flask_after_it_was_counted_is_counted_once(site, app, monkeypatch):
    from petitions import quicksign
    from petitions.signing import service as signing

    slug = site.letter()
    client, fields = _signer(app, slug)
    for number in range(2):  # Flask's answers, one of them learned
        _sign(client, slug, fields, f"early{number}@example.net")
    real_sign, failures = signing.sign, []

    def failing_once(*args, **kwargs):
        if not failures:
            failures.append(True)
            raise RuntimeError("the database went away")
        return real_sign(*args, **kwargs)

    monkeypatch.setattr(quicksign.signing, "sign", failing_once)
    calls = FlaskCalls(app)
    handed = _sign(client, slug, fields, "handed@example.net")
    assert handed.status_code == 200 and failures and calls.count == 1
    after = _sign(client, slug, fields, "after@example.net")
    assert calls.count == 1  # taken before Flask again
    # 2 early + 1 handed to Flask + this one: 4 of 10 used, whoever answered.
    assert after.headers["X-RateLimit-Remaining"] == "6"
    assert _signatures(app) == 4


def test_a_kept_connection_the_server_closed_costs_one_signature_a_trip_through_flask(site, app):
    if app.extensions["db_engine"].dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: a SQLite connection is not closed by a server")
    import psycopg

    slug = site.letter()
    _teach(app, slug)
    quick = app.extensions["quicksign"]
    calls = FlaskCalls(app)
    client, fields = _signer(app, slug)
    assert _sign(client, slug, fields, "before@example.net").status_code == 200
    assert calls.count == 0
    kept = quick._connections[False]._kept
    pid = kept.connection.driver_connection.info.backend_pid
    url = app.config["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The signature that meets the dead connection is answered by Flask, and stored once.
    client, fields = _signer(app, slug)
    answer = _sign(client, slug, fields, "during@example.net")
    assert answer.status_code == 200 and "Check your email" in answer.get_data(as_text=True)
    assert calls.count == 1
    # The next one is taken before Flask again, on a new connection.
    client, fields = _signer(app, slug)
    assert _sign(client, slug, fields, "after@example.net").status_code == 200
    assert calls.count == 1
    assert quick._connections[False]._kept.connection.driver_connection.info.backend_pid != pid
    assert _signatures(app) == 5
