"""Profile the benchmark's requests in one process, without gunicorn or wrk.

    .venv/bin/python -m bench.profile [--db sqlite|postgres] [--n 2000] [--only NAME]
                                      [--pyinstrument] [--read-cache SECONDS]

Seeds a letter as the benchmark does, then sends each scenario's request through Flask's test
client `--n` times and prints the mean time per request next to a Flask hello world sent the
same way. Reads carry no cookies, as wrk sends them (`page-cookie` is a returning visitor).
The numbers are for comparing one change with the next on the same machine, not targets.
`--read-cache 0` turns the per-process read cache off, to measure what a miss costs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from bench import data
from bench.hello import app as hello_app
from bench.scenarios import SignFormFields
from bench.suite import DEFAULT_PG


def _env(database_url: str) -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ADDRESS_HASH_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "25",
    }


def _timed(name: str, n: int, call: Callable[[int], Any], profiler: str | None) -> float:
    for i in range(min(200, n)):  # warm caches and pools
        call(-1 - i)
    if profiler == "pyinstrument":
        from pyinstrument import Profiler  # optional, installed by hand

        profile = Profiler(interval=0.0002)
        profile.start()
    started = time.perf_counter()
    for i in range(n):
        call(i)
    elapsed = time.perf_counter() - started
    if profiler == "pyinstrument":
        profile.stop()
        print(profile.output_text(unicode=False, color=False, show_all=False))
    return elapsed / n * 1e6


def main(argv: list[str] | None = None) -> None:
    """Seed, send each request `--n` times, print microseconds per request."""
    parser = argparse.ArgumentParser(prog="bench/profile.py", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--only")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--read-cache", type=float, help="READ_CACHE_SECONDS (default: config)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="undersigned-profile-"))
    if args.db == "sqlite":
        url = f"sqlite:///{work / 'bench.sqlite3'}"
    else:
        url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)
        data.recreate_database(url)
    env = _env(url)
    os.environ.update(env)
    from bench.procs import flask_command, run_command

    run_command(flask_command("db", "upgrade"), {**os.environ, **env}, timeout=120)
    engine = data.bench_engine(url)
    letter = data.seed_letter(engine, args.size)
    app = data.in_process_app(env)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    app.config["SIGN_MIN_SECONDS"] = 0
    app.config["RATELIMIT_ENABLED"] = True
    if args.read_cache is not None:
        cache = app.extensions["microcache"]
        cache.seconds = cache.answers.seconds = cache.pages.seconds = args.read_cache
    client: FlaskClient = app.test_client()
    page = client.get(f"/p/{letter.slug}")
    form = SignFormFields()
    form.feed(page.get_data(as_text=True))
    links = data.make_pending(app, letter, args.n + 400, "prof")
    link_iter = iter(links)
    counter = itertools.count()
    hello = hello_app.test_client()
    profiler = "pyinstrument" if args.pyinstrument else None

    def forwarded() -> dict[str, str]:
        n = next(counter)
        return {"X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}

    def sign(i: int) -> None:
        body = {
            **form.fields,
            "email": f"p{i}-{secrets.token_hex(4)}@{data.EMPLOYER_DOMAIN}",
            "name": "Pat Example",
            "affiliation": "current",
            "display": "counted",
        }
        response = client.post(f"/p/{letter.slug}/sign", data=body, headers=forwarded())
        assert response.status_code == 200, response.status_code

    def confirm(_i: int) -> None:
        response = client.post(
            f"/c/{next(link_iter)}", data={"csrf_token": form.fields["csrf_token"]}
        )
        assert response.status_code == 200, response.status_code

    # wrk sends no cookies: every read is someone's first visit. `page-cookie` is a returning
    # visitor, with the session cookie the sign form gave them.
    reader: FlaskClient = app.test_client(use_cookies=False)

    def get(path: str, by: FlaskClient = reader) -> Callable[[int], None]:
        def call(_i: int) -> None:
            response = by.get(path, headers=forwarded())
            assert response.status_code == 200, (path, response.status_code)

        return call

    scenarios: dict[str, Callable[[int], None]] = {
        "hello": lambda _i: hello.get("/"),
        "healthz": get("/healthz"),
        "page": get(f"/p/{letter.slug}"),
        "page-cookie": get(f"/p/{letter.slug}", client),
        "api": get(f"/api/v1/petitions/{letter.slug}"),
        "badge": get(f"/p/{letter.slug}/badge.svg"),
        "widget": get(f"/p/{letter.slug}/widget"),
        "chart": get(f"/p/{letter.slug}/chart.svg"),
        "sign": sign,
        "confirm": confirm,
    }
    for name, call in scenarios.items():
        if args.only and name not in {args.only, "hello"}:
            continue
        micros = _timed(name, args.n, call, profiler if name == args.only else None)
        print(f"{name:10s} {micros:9.0f} us/request")


if __name__ == "__main__":
    main()
