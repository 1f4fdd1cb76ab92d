"""Concurrency: exact counts and one signature per address, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from petitions.db import new_session
from petitions.models import Signature, Token
from tests.conftest import csrf_from, hidden, sign_fields


def _run_together(jobs) -> list:
    barrier = threading.Barrier(len(jobs), timeout=60)
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int, job) -> None:
        try:
            prepared = job[0]()
            barrier.wait()
            results[index] = job[1](prepared)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(i, job), daemon=True) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


@pytest.mark.config(RATELIMIT_ENABLED=False)  # one client here stands for many people
def test_twenty_concurrent_confirmations_count_exactly(site, app):
    slug = site.letter()
    addresses = [f"worker{n}@example.net" for n in range(20)]
    for address in addresses:
        site.sign(slug, address)
    site.deliver()
    paths = [
        site.mailbox.last_to(a).link().removeprefix("http://undersigned.test") for a in addresses
    ]

    def job(path):
        client = app.test_client()

        def prepare():
            return csrf_from(client.get(path).get_data(as_text=True))

        def act(token):
            return client.post(path, data={"csrf_token": token}).status_code

        return prepare, act

    statuses = _run_together([job(p) for p in paths])
    assert statuses == [200] * 20
    assert site.count(slug) == 20
    result = app.test_cli_runner().invoke(args=["recount"])
    assert "Nothing to repair" in result.output


def test_ten_concurrent_signs_with_one_address_make_one_signature(site, app):
    slug = site.letter()

    def job(n):
        client = app.test_client()

        def prepare():
            return sign_fields(client.get(f"/p/{slug}/sign").get_data(as_text=True))

        def act(fields):
            data = {
                **fields,
                "name": f"Racer {n}",
                "email": "Racer+x@Example.net" if n % 2 else "racer@example.net",
                "affiliation": "current",
                "display": "counted",
            }
            return client.post(f"/p/{slug}/sign", data=data).status_code

        return prepare, act

    statuses = _run_together([job(n) for n in range(10)])
    assert statuses == [200] * 10
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
    # Whichever email arrives, it confirms the one signature.
    site.confirm_link("racer@example.net")
    assert site.count(slug) == 1


def test_one_link_clicked_twice_at_once_counts_once(site, app):
    slug = site.letter()
    site.sign(slug, "twice@example.net")
    site.deliver()
    path = site.mailbox.last_to("twice@example.net").link().removeprefix("http://undersigned.test")

    def job():
        client = app.test_client()

        def prepare():
            return csrf_from(client.get(path).get_data(as_text=True))

        def act(token):
            return client.post(path, data={"csrf_token": token}).get_data(as_text=True)

        return prepare, act

    pages = _run_together([job() for _ in range(6)])
    assert sum("Your signature counts" in page for page in pages) == 1
    assert sum("Already confirmed" in page for page in pages) == 5
    assert site.count(slug) == 1
    result = app.test_cli_runner().invoke(args=["recount"])
    assert "Nothing to repair" in result.output


def test_parallel_wrong_codes_get_no_more_tries_than_the_limit(site, app):
    slug = site.letter()
    page = site.sign(slug, "guessed@example.net").get_data(as_text=True)
    handle = hidden(page, "handle")
    site.deliver()
    right = site.mailbox.last_to("guessed@example.net").code()
    wrong = "0000-0000" if right.replace("-", "") != "00000000" else "1111-1111"
    limit = app.config["CODE_MAX_ATTEMPTS"]

    def job():
        client = app.test_client()

        def prepare():
            html = client.get(f"/p/{slug}/sign").get_data(as_text=True)
            return csrf_from(html)

        def act(token):
            data = {"csrf_token": token, "handle": handle, "code": wrong}
            return client.post("/confirm/code", data=data).status_code

        return prepare, act

    _run_together([job() for _ in range(limit * 3)])
    with new_session(app, write=False) as session:
        attempts = session.scalar(select(Token.code_attempts).where(Token.handle == handle))
    assert attempts == limit
    # The right code comes too late: the code died at the limit.
    late = site.client.post(
        "/confirm/code", data={"csrf_token": csrf_from(page), "handle": handle, "code": right}
    )
    assert "Too many wrong codes" in late.get_data(as_text=True)
    assert site.count(slug) == 0
