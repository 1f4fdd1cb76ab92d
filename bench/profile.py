"""Profile the benchmark's requests in one process, without gunicorn or wrk.

    .venv/bin/python -m bench.profile [--db sqlite|postgres] [--n 2000] [--only NAME]
                                      [--pyinstrument | --callgrind] [--read-cache SECONDS]

Seeds a letter as the benchmark does, then sends each scenario's request through Flask's test
client `--n` times and prints the mean time per request next to a Flask hello world sent the
same way. Reads carry no cookies, as wrk sends them (`page-cookie` is a returning visitor).
The numbers are for comparing one change with the next on the same machine, not targets.
`--read-cache 0` turns the per-process read cache off, to measure what a miss costs.

With `--callgrind` the process runs again under valgrind's callgrind, instrumented only while
the requests are sent, and prints instructions per request instead of microseconds (run
`--n 200` or so: valgrind is about fifty times slower). A count is the same from one run of
the same code to the next (within a fraction of a per cent) whatever else the machine is
doing, so it can tell a 2 % change on a machine whose timings wander by a quarter. It counts
this process's own instructions only: the database server's, the kernel's, and what waiting
and contention cost under load are not in it, which is what `bench.costs` is for.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import shutil
import subprocess
import sys
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

#: set in the environment of the process that runs under callgrind: where its counts go
_CALLGRIND_DIR = "BENCH_CALLGRIND_DIR"


def _env(database_url: str) -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ADDRESS_HASH_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "25",
    }


def _callgrind(*command: str) -> None:
    """Send callgrind a command for this process. Callgrind reads its commands only while the
    program runs, so this runs Python until the command has been answered."""
    control = subprocess.Popen(
        ["callgrind_control", *command, str(os.getpid())], stdout=subprocess.DEVNULL
    )
    while control.poll() is None:
        sum(range(100))


def _counted(n: int, call: Callable[[int], Any]) -> float:
    """Instructions per request of `n` calls, counted by the callgrind this process runs in."""
    _callgrind("--zero")
    _callgrind("--instr=on")
    for i in range(n):
        call(i)
    _callgrind("--instr=off")
    _callgrind("--dump")
    dumps = Path(os.environ[_CALLGRIND_DIR]).glob(f"cg.{os.getpid()}.*")
    newest = max(dumps, key=lambda path: path.stat().st_mtime_ns)
    totals = [line for line in newest.read_text().splitlines() if line.startswith("totals:")]
    if not totals:
        raise RuntimeError(f"no totals in {newest}")
    return int(totals[-1].split()[1]) / n


def _under_callgrind(argv: list[str]) -> None:
    """Run this command again under callgrind, instrumented only while requests are sent."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (Debian's valgrind package)")
    out = Path(tempfile.mkdtemp(prefix="undersigned-callgrind-"))
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}/cg.%p",
        sys.executable,
        "-m",
        "bench.profile",
        *argv,
    ]
    status = subprocess.run(
        command, env={**os.environ, _CALLGRIND_DIR: str(out)}, stderr=subprocess.DEVNULL
    )
    print(f"callgrind's files: {out}")
    raise SystemExit(status.returncode)


def _timed(name: str, n: int, call: Callable[[int], Any], profiler: str | None) -> float:
    warm_up = 20 if profiler == "callgrind" else 200  # calls that warm caches and pools
    for i in range(min(warm_up, n)):
        call(-1 - i)
    if profiler == "callgrind":
        return _counted(n, call)
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
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--read-cache", type=float, help="READ_CACHE_SECONDS (default: config)")
    args = parser.parse_args(argv)
    if args.callgrind and not os.environ.get(_CALLGRIND_DIR):
        _under_callgrind(sys.argv[1:] if argv is None else argv)

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
    profiler = "callgrind" if args.callgrind else "pyinstrument" if args.pyinstrument else None

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
        if profiler == "callgrind":
            count = _timed(name, args.n, call, profiler)
            print(f"{name:10s} {count:11,.0f} instructions/request", flush=True)
            continue
        micros = _timed(name, args.n, call, profiler if name == args.only else None)
        print(f"{name:10s} {micros:9.0f} us/request")


if __name__ == "__main__":
    main()
