"""The bench: issue 21's targets through the production topology, on SQLite and PostgreSQL.

Usage: `.venv/bin/python bench/run.py [--smoke] [--db sqlite|postgres|both]`; bench/README.md
says what it does. Writes bench/results/latest.md (a smoke run: bench/results/tmp/).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench import data, nginx, procs, scenarios, smtp_sink
from bench.load import WRK, Load, WrkFailed, wrk
from bench.report import MailRun, Results, render

RESULTS = procs.ROOT / "bench" / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
LOG_TROUBLE = re.compile(r"Traceback|WORKER TIMEOUT|SIGKILL|out of memory|\[emerg\]|\[alert\]")
MIXED_RATE, OUTBOX_WAIT = 500, 60  # signatures a second offered; seconds for the outbox
SECRET, ADDRESS_KEY = secrets.token_urlsafe(32), secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Settings:
    """What a run does, from the command line."""

    smoke: bool
    databases: list[str]
    sizes: tuple[int, int]
    load: Load
    paired_rounds: int
    mixed_seconds: float
    pg_url: str


def parse(argv: list[str] | None) -> Settings:
    """Settings from the command line; --smoke shrinks everything to prove only that it works."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for CI")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--duration", type=float, help="measured seconds a scenario (10)")
    parser.add_argument("--mixed-duration", type=float, help="seconds of the mixed run (60)")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG))
    args = parser.parse_args(argv)
    smoke = args.smoke
    return Settings(
        smoke=smoke,
        databases=["sqlite", "postgres"] if args.db == "both" else [args.db],
        sizes=(100, 1_000 if smoke else 1_000_000),
        load=Load(
            connections=32,
            threads=min(os.cpu_count() or 1, 2),
            warmup=0 if smoke else 3,
            duration=args.duration or (1 if smoke else 10),
        ),
        paired_rounds=1 if smoke else 10,
        mixed_seconds=args.mixed_duration or (2 if smoke else 60),
        pg_url=args.pg_url,
    )


def app_env(database_url: str, port: int, sink_port: int, workers: int) -> dict[str, str]:
    """Production settings for the app's processes, behind nginx and one proxy before it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "BIND"))}
    env.update(
        UNDERSIGNED_ENV="production",
        SECRET_KEY=SECRET,
        ADDRESS_HASH_KEY=ADDRESS_KEY,
        UPDATES_KEY=ADDRESS_KEY + "-updates",
        DATABASE_URL=database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(sink_port),
        PUBLIC_URL="http://127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        # wrk stands for a load balancer in front of nginx: each request from its own address.
        TRUSTED_PROXIES="2",
        # The bench posts the form as soon as it has it; people take longer.
        SIGN_MIN_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Run:
    """What every part of a run shares."""

    settings: Settings
    results: Results
    children: procs.Children
    work_dir: Path
    sink_port: int

    @property
    def sink_log(self) -> Path:
        """Where the SMTP sink logs each arrival."""
        return self.work_dir / "sink.log"

    def serve(self, name: str, app_spec: str, env: dict[str, str], health: str) -> tuple[int, int]:
        """gunicorn serving `app_spec` and nginx in front; returns both ports."""
        port = int(env["PORT"])
        self.children.start(f"{name}-gunicorn", procs.gunicorn_command(app_spec), env)
        procs.wait_for_http(port, health)
        edge = procs.free_port()
        command = nginx.command(self.work_dir / f"{name}-nginx", edge, f"127.0.0.1:{port}")
        self.children.start(f"{name}-nginx", command, env)
        procs.wait_for_http(edge, health)
        return port, edge

    def stop(self, name: str) -> None:
        """Stop a pair started by `serve`."""
        self.children.stop(f"{name}-nginx")
        self.children.stop(f"{name}-gunicorn")


def say(what: str) -> None:
    """Progress on stdout."""
    print(f"{datetime.now(UTC):%H:%M:%S} bench: {what}", flush=True)


def measure_hello(run: Run, kind: str, workers: int) -> None:
    """Hello world under the same gunicorn settings, straight and through nginx."""
    load = run.settings.load
    env = app_env("sqlite://", procs.free_port(), run.sink_port, workers)
    port, edge = run.serve("hello", "bench.hello:app", env, "/")
    try:
        for route, target, direct in (("gunicorn", port, True), ("nginx", edge, False)):
            url = f"http://127.0.0.1:{target}/"
            common = {"connections": load.connections, "threads": load.threads, "direct": direct}
            if load.warmup:
                wrk(url, "get.lua", seconds=load.warmup, **common)
            result = wrk(url, "get.lua", seconds=load.duration, **common)
            run.results.hello.setdefault(kind, {}).setdefault(route, []).append(result.rate)
            if result.errors:
                run.results.problems.append(f"hello world {route} on {kind}: errors")
    finally:
        run.stop("hello")


def check(row: scenarios.Row, results: Results) -> scenarios.Row:
    """Keep a row; a scenario with more than 1 % error answers, or no success, is a problem."""
    results.rows.append(row)
    results.problems += row.problems
    bad = row.result.status_errors - row.result.exhausted
    if row.result.successes == 0 or bad > 0.01 * max(row.result.requests, 1):
        results.problems.append(f"{row.scenario} on {row.database}: {bad:,} error answers")
    return row


def flask(app: Flask, *args: str) -> str:
    """`flask --app wsgi ARGS`, run in this process through Flask's CLI runner."""
    result = app.test_cli_runner().invoke(args=list(args))
    if result.exit_code != 0:
        raise procs.BenchError(f"flask {' '.join(args)} failed: {result.output}{result.exception}")
    return result.output.strip()


def drain_mail(run: Run, kind: str, app: Flask) -> None:
    """Time one `worker --drain` over the mail the sign scenario queued."""
    started = time.monotonic()
    flask(app, "worker", "--drain")
    seconds = time.monotonic() - started
    time.sleep(0.5)
    times = sorted(smtp_sink.arrivals(run.sink_log, f"s-{kind}").values())
    run.results.mail[kind] = MailRun(seconds, times)


def run_database(kind: str, url: str, run: Run) -> None:
    """Every scenario on one fresh database holding a small and a large letter."""
    s, results = run.settings, run.results
    workers = procs.production_workers(url)
    say(f"{kind}: hello world")
    measure_hello(run, kind, workers)
    say(f"{kind}: database")
    data.recreate_database(url)
    env = app_env(url, procs.free_port(), run.sink_port, workers)
    app = data.in_process_app(env)
    flask(app, "db", "upgrade")
    started = time.monotonic()
    small = data.seed_letter(app, "bench-small", s.sizes[0])
    large = data.seed_letter(app, "bench-large", s.sizes[1])
    results.settings.append(
        f"{kind}: {workers} gunicorn workers; seeded {s.sizes[1]:,} + {s.sizes[0]:,} verified"
        f" signatures in {time.monotonic() - started:.0f} s"
    )
    name, worker = f"{kind}-app", f"{kind}-worker"
    try:
        port, edge = run.serve(name, "wsgi:app", env, "/healthz")
        site = scenarios.Site(kind, app, port, edge, small, large, run.work_dir)
        site.open_sign_form()
        say(f"{kind}: reads")
        page, api = f"/p/{small.slug}", f"/api/v1/petitions/{small.slug}"
        for title, path in (("letter page GET", page), ("API count GET", api)):
            check(scenarios.read(site, s.load, title, path, direct=False), results)
        check(scenarios.read(site, s.load, "letter page GET", page, direct=True), results)
        say(f"{kind}: reads of both letters")
        results.paired[kind] = scenarios.paired_reads(site, s.load, s.paired_rounds)
        say(f"{kind}: sign, mail, confirm")
        sign = check(scenarios.sign(site, s.load), results)
        drain_mail(run, kind, app)
        run.children.start(worker, procs.flask_command("worker"), env)
        check(scenarios.confirm(site, s.load, sign.result.rate), results)
        scenarios.wait_for_empty_outbox(app, OUTBOX_WAIT)
        say(f"{kind}: mixed")
        m = scenarios.mixed(site, s.load, s.mixed_seconds, MIXED_RATE)
        gunicorn = run.children.running[f"{name}-gunicorn"]
        m.worker_rss_mb = [x for pid in procs.children_of(gunicorn.pid) if (x := procs.rss_mb(pid))]
        m.queue_empty_after, m.queue_left = scenarios.wait_for_empty_outbox(app, OUTBOX_WAIT)
        results.mixed[kind] = m
        if not (m.signers.successes and m.readers.successes):
            results.problems.append(f"mixed on {kind}: signers or readers got no answer")
        run.children.check_alive()
    finally:
        run.stop(name)
        run.children.stop(worker)
    say(f"{kind}: recount")
    recount = flask(app, "recount")
    app.extensions["db_engine"].dispose()
    results.recounts.append(f"{kind}: {recount}")
    if "Nothing to repair" not in recount:
        results.problems.append(f"recount repaired counts on {kind}: {recount}")
    if not s.smoke:
        measure_hello(run, kind, workers)
    for log in run.work_dir.glob(f"*{kind}*.log"):
        trouble = [line for line in log.read_text(errors="replace").splitlines()]
        trouble = [line for line in trouble if LOG_TROUBLE.search(line)]
        if trouble:
            results.problems.append(f"{log.name}: {len(trouble)} lines like {trouble[0][:200]!r}")


def describe(s: Settings) -> list[str]:
    """The settings, as the results page states them (bench/README.md says the rest)."""
    return [
        "wrk -> nginx (deploy/nginx.conf) -> `gunicorn -c gunicorn.conf.py wsgi:app`, all on"
        " this machine; UNDERSIGNED_ENV=production, rate limits on, TRUSTED_PROXIES=2 (wrk"
        " plays a load balancer, every request from its own address), SIGN_MIN_SECONDS=0",
        f"wrk: {s.load.threads} threads, {s.load.connections} connections, {s.load.warmup:g} s"
        f" warm-up, {s.load.duration:g} s measured; mixed {s.mixed_seconds:g} s; letters of"
        f" {s.sizes[0]:,} and {s.sizes[1]:,} signatures",
    ]


def git_revision() -> str:
    """The commit measured, and whether the app's files differ from it."""
    try:
        head, changed = (
            subprocess.run(["git", *args], cwd=procs.ROOT, capture_output=True, text=True).stdout
            for args in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", ":!bench"])
        )
    except OSError:
        return "unknown"
    return head.strip() + (" with uncommitted changes" if changed.strip() else "")


def main(argv: list[str] | None = None) -> int:
    """Run the bench, write the results, and say whether everything ran cleanly."""
    settings = parse(argv)
    started = datetime.now(UTC)
    work_dir = RESULTS / "tmp" / f"{started:%Y%m%d-%H%M%S}"
    work_dir.mkdir(parents=True, exist_ok=True)
    command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = Results(settings.smoke, started, command.strip(), describe(settings))
    results.versions["app (git)"] = git_revision()
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    results.versions["wrk"] = (wrk_version.stdout or "?").split(" [")[0].removeprefix("wrk ")
    nginx_version = subprocess.run([nginx.NGINX, "-v"], capture_output=True, text=True)
    results.versions["nginx"] = nginx_version.stderr.strip().rpartition("/")[2]
    run = Run(settings, results, procs.Children(work_dir), work_dir, procs.free_port())
    results.load_average.append(os.getloadavg()[0])
    try:
        sink = [str(procs.BIN / "python"), str(procs.ROOT / "bench" / "smtp_sink.py")]
        run.children.start("smtp-sink", [*sink, str(run.sink_port), str(run.sink_log)], {})
        for kind in settings.databases:
            url = f"sqlite:///{work_dir / 'bench.sqlite3'}" if kind == "sqlite" else settings.pg_url
            if kind == "postgres" and (why := data.postgres_reachable(url)):
                results.problems.append(f"PostgreSQL not reachable at {url}: {why}")
                continue
            run_database(kind, url, run)
    except (procs.BenchError, WrkFailed, OSError, subprocess.SubprocessError) as exc:
        results.problems.append(f"run stopped: {type(exc).__name__}: {exc}")
    except Exception as exc:  # the app's own errors too: the page still says what ran
        traceback.print_exc()
        results.problems.append(f"run stopped: {type(exc).__name__}: {str(exc)[:300]}")
    except KeyboardInterrupt:
        results.problems.append("run interrupted")
    finally:
        run.children.stop_all()
        for database_file in work_dir.glob("bench.sqlite3*"):
            database_file.unlink()
    results.load_average.append(os.getloadavg()[0])
    page = render(results)
    path = work_dir / "results.md" if settings.smoke else RESULTS / "latest.md"
    path.write_text(page)
    print(page)
    print(f"written to {path.relative_to(procs.ROOT)}")
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
