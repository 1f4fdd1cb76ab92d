"""The benchmark run: for each database, a fresh letter of each size, every scenario, the checks.

Order of a run: the SMTP sink; the hello-world yardstick; then per database and per letter size
(100, then 1,000,000 signatures) a fresh database, seeding, the mail worker and gunicorn, the
read scenarios, sign, confirm, and on the large letter also the mixed run, email latency and
the mail worker's throughput; `flask --app wsgi recount` after each. Children are stopped in a
`finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import data, smtp_sink
from bench.load import WRK, Load, WrkFailed, wrk
from bench.procs import (
    BIN,
    GUNICORN_CONF,
    ROOT,
    BenchError,
    Children,
    children_of,
    flask_command,
    free_port,
    gunicorn_command,
    production_workers,
    rss_mb,
    run_command,
    wait_for_http,
)
from bench.report import MailWorker, Results, render
from bench.scenarios import (
    READS,
    Row,
    Site,
    confirm,
    email_latency,
    mixed,
    paired_reads,
    read,
    sign,
)
from bench.scenarios import wait_for_empty_outbox as wait_outbox

RESULTS = ROOT / "bench" / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
LOG_TROUBLE = re.compile(r"Traceback|WORKER TIMEOUT|unhandled|SIGKILL|out of memory")


@dataclass(frozen=True)
class Settings:
    """What a run does, from the command line."""

    smoke: bool
    databases: list[str]
    sizes: tuple[int, ...]
    partial: bool
    load: Load
    #: the reads compared on both letters: the small letter's size, rounds, seconds a run
    paired_small: int
    paired_rounds: int
    paired_seconds: int
    mixed_seconds: float
    mixed_rate: float
    email_rate: float
    email_seconds: float
    mail_messages: int
    #: gunicorn workers for each database, as production would start them (hello world too)
    workers: dict[str, int]
    pg_url: str
    drain_limit: float


def parse(argv: list[str] | None) -> Settings:
    """Settings from the command line; --smoke shrinks everything to prove only that it works."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="1 s per scenario, tiny letters")
    parser.add_argument("--duration", type=float, help="measured seconds per scenario (10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per scenario (3)")
    parser.add_argument("--mixed-duration", type=float, help="seconds of the mixed run (60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--letters",
        choices=["both", "small", "large"],
        default="both",
        help="only the 100-signature or only the large letter (a partial run, kept in results/tmp)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG),
        help="a PostgreSQL database that the run drops and creates (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    cores = os.cpu_count() or 1
    sizes = (100, 1_000) if smoke else (100, 1_000_000)
    return Settings(
        smoke=smoke,
        databases=["sqlite", "postgres"] if args.db == "both" else [args.db],
        sizes=_sizes(sizes, args.letters),
        partial=args.letters != "both",
        load=Load(
            connections=args.connections,
            threads=min(cores, 2),
            warmup=args.warmup or (1 if smoke else 3),
            duration=args.duration or (1 if smoke else 10),
        ),
        paired_small=sizes[0],
        paired_rounds=1 if smoke else 18,
        paired_seconds=1,
        mixed_seconds=args.mixed_duration or (3 if smoke else 60),
        mixed_rate=1000,
        email_rate=33,
        email_seconds=3 if smoke else 30,
        mail_messages=200 if smoke else 10_000,
        workers={
            "sqlite": production_workers("sqlite://"),
            "postgres": production_workers(args.pg_url),
        },
        pg_url=args.pg_url,
        drain_limit=60 if smoke else 150,
    )


def _sizes(sizes: tuple[int, int], letters: str) -> tuple[int, ...]:
    return {"small": sizes[:1], "large": sizes[1:]}.get(letters, sizes)


def app_env(database_url: str, port: int, sink_port: int, workers: int) -> dict[str, str]:
    """The production environment for the app's processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "BIND"))}
    env.update(
        UNDERSIGNED_ENV="production",
        SECRET_KEY=BENCH_SECRET,
        ADDRESS_HASH_KEY=BENCH_ADDRESS_KEY,
        DATABASE_URL=database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(sink_port),
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        # As behind the reverse proxy of a deployment: the rate limiter keys on X-Forwarded-For,
        # which wrk sets to a different address for every request, as a crowd of people would.
        TRUSTED_PROXIES="1",
        PYTHONUNBUFFERED="1",
    )
    return env


BENCH_SECRET = secrets.token_urlsafe(32)
BENCH_ADDRESS_KEY = secrets.token_urlsafe(32)


def wait_for_port(port: int, timeout: float = 15) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def check_row(row: Row, results: Results) -> None:
    """Record a scenario that errored badly: more than 1 % error answers, or no success at all."""
    results.problems += row.problems
    r = row.result
    if r is None:
        return
    bad_answers = r.status_errors - r.exhausted
    if r.successes == 0 or bad_answers > 0.01 * max(r.requests, 1):
        results.problems.append(
            f"{row.scenario} on {row.database} ({row.signatures:,}): {bad_answers:,} error"
            f" answers, {r.successes:,} successes"
        )


def measure_hello(settings: Settings, children: Children, database: str, size: int) -> Row:
    """The hello-world app under the same gunicorn settings: the yardstick for every ratio.

    Measured again before every letter, so that each ratio compares numbers taken minutes
    apart, not a quarter of an hour apart on a machine whose other load comes and goes.
    """
    port = free_port()
    workers = settings.workers[database]
    env = app_env("sqlite://", port, 25, workers)
    children.start("hello-gunicorn", gunicorn_command("bench.hello:app", port, workers), env)
    try:
        wait_for_http(port, "/")
        load = settings.load
        url = f"http://127.0.0.1:{port}/"
        wrk(url, "get.lua", seconds=load.warmup, connections=load.connections, threads=load.threads)
        result = wrk(
            url,
            "get.lua",
            seconds=load.duration,
            connections=load.connections,
            threads=load.threads,
        )
    finally:
        children.stop("hello-gunicorn")
    row = Row("hello world GET", database, size, result=result)
    row.hello_rate = result.rate
    return row


def mail_worker(
    site: Site, children: Children, worker: str, env: dict[str, str], count: int
) -> MailWorker:
    """Stop the running worker, queue `count` emails, and time one `worker --drain` over them."""
    children.stop(worker)
    started = time.monotonic()
    run_command(flask_command("routes"), env, timeout=60)
    startup = time.monotonic() - started
    data.queue_mail(site.app, count, site.tag)
    started = time.monotonic()
    done = run_command(flask_command("worker", "--drain"), env, timeout=900)
    seconds = time.monotonic() - started
    sent = re.search(r"(\d+) sent", done.stdout)
    prefix, deadline = f"w-{site.tag}-", time.monotonic() + 15
    while smtp_sink.count(site.sink_log, prefix) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return MailWorker(
        messages=int(sent.group(1)) if sent else 0,
        seconds=seconds,
        startup=startup,
        delivered=smtp_sink.count(site.sink_log, prefix),
    )


def run_letter(kind: str, url: str, size: int, large: bool, s: Settings, run: Run) -> None:
    """Everything measured on one fresh database with one letter of `size` signatures."""
    tag = f"{kind[:2]}{size}"
    run.results.rows.append(measure_hello(s, run.children, kind, size))
    hello = run.results.rows[-1].hello_rate or 0.0
    data.recreate_database(url)
    port = free_port()
    env = app_env(url, port, run.sink_port, s.workers[kind])
    run_command(flask_command("db", "upgrade"), env, timeout=120)
    engine = data.bench_engine(url)
    started = time.monotonic()
    letter = data.seed_letter(engine, size)
    # Beside the large letter, a small one, for reads compared in the same database and run.
    small = data.seed_letter(engine, s.paired_small, f"{data.SLUG}-small") if large else None
    run.results.settings.append(
        f"{kind}: seeded {size:,} verified signatures in {time.monotonic() - started:.1f} s"
    )
    run.results.versions[kind] = data.server_version(engine)
    app = data.in_process_app(env)
    worker, server = f"{tag}-worker", f"{tag}-gunicorn"
    results = run.results
    try:
        run.children.start(worker, flask_command("worker"), env)
        command = gunicorn_command("wsgi:app", port, s.workers[kind])
        gunicorn = run.children.start(server, command, env)
        wait_for_http(port, "/healthz", timeout=60)
        site = Site(kind, port, letter, engine, app, run.sink_log, run.work_dir, tag)
        site.open_letter()
        slug = letter.slug
        for name, path in READS:
            results.rows.append(read(site, s.load, name, path.format(slug=slug), hello))
            check_row(results.rows[-1], results)
        if small is not None:
            results.paired[kind] = paired_reads(
                site, small, s.load, s.paired_rounds, s.paired_seconds
            )
            for pair in results.paired[kind]:
                if pair.errors:
                    results.problems.append(f"{pair.scenario} paired on {kind}: errors")
        results.rows.append(sign(site, s.load, hello))
        check_row(results.rows[-1], results)
        sign_rate = results.rows[-1].result.rate if results.rows[-1].result else 0
        results.rows.append(confirm(site, s.load, hello, sign_rate))
        check_row(results.rows[-1], results)
        run.children.check_alive()
        if large:
            wait_outbox(engine, s.drain_limit)  # the sign scenario's mail, before a clean start
            m = mixed(site, s.load, s.mixed_seconds, s.mixed_rate, hello)
            m.worker_rss_mb = [x for p in children_of(gunicorn.pid) if (x := rss_mb(p))]
            m.queue_empty_after, m.queue_left = wait_outbox(engine, s.drain_limit)
            results.mixed[kind] = m
            for part, r in (("signers", m.signers), ("readers", m.readers)):
                check_row(Row(f"mixed {part}", kind, size, result=r), results)
            results.email[kind] = email_latency(site, s.email_seconds, s.email_rate)
            results.mail[kind] = mail_worker(site, run.children, worker, env, s.mail_messages)
        run.children.check_alive()
    finally:
        run.children.stop(server)
        run.children.stop(worker)
        app.extensions["db_engine"].dispose()
        engine.dispose()
    recount = run_command(flask_command("recount"), env, timeout=600).stdout.strip()
    results.recounts.append((f"{kind}, {size:,} signatures", recount.replace("\n", "; ")))
    if "Nothing to repair" not in recount:
        results.problems.append(f"recount repaired counts on {kind} ({size:,}): {recount}")
    for name in (worker, server):
        log = (run.work_dir / f"{name}.log").read_text(errors="replace")
        trouble = [line for line in log.splitlines() if LOG_TROUBLE.search(line)]
        if trouble:
            results.problems.append(f"{name}.log: {len(trouble)} lines like {trouble[0][:200]!r}")


@dataclass
class Run:
    """What every part of a run shares."""

    results: Results
    children: Children
    work_dir: Path
    sink_port: int
    sink_log: Path


def describe(s: Settings) -> list[str]:
    """The settings, as the results page states them."""
    workers = ", ".join(f"{count} on {kind}" for kind, count in s.workers.items())
    server = (
        "`gunicorn -c gunicorn.conf.py wsgi:app`"
        if GUNICORN_CONF.exists()
        else "gunicorn with flags equal to the production settings (gunicorn.conf.py missing)"
    )
    return [
        f"app: {server}, sync workers, WEB_CONCURRENCY={workers} (gunicorn.conf.py's default"
        " for each database: nproc + 1 on SQLite, 2 * nproc + 1 otherwise), on 127.0.0.1;"
        " UNDERSIGNED_ENV=production, TRUSTED_PROXIES=1; hello world (bench/hello.py) served"
        " the same way, with the same number of workers, and measured again before every letter",
        "mail: one `flask --app wsgi worker` (default 0.5 s poll) into a lean SMTP sink"
        " (bench/smtp_sink.py, PIPELINING offered) running in its own process on 127.0.0.1",
        f"load: wrk, {s.load.threads} threads, {s.load.connections} connections,"
        f" {s.load.warmup:g} s warm-up then {s.load.duration:g} s measured, 30 s timeout;"
        " gunicorn's sync workers close every connection, so each request is a new connection",
        f"paired reads: each read on the large letter and a {s.paired_small:,}-signature letter in"
        f" the same database: a {s.load.warmup:g} s warm-up each, then {s.paired_rounds}"
        f" round{'s' if s.paired_rounds != 1 else ''} of a {s.paired_seconds} s run on each"
        " letter, order swapped every round; judged on the median of the rounds' large/small"
        " ratios",
        f"letters: each size on a fresh database: SQLite file (WAL) or PostgreSQL {s.pg_url}"
        " dropped and created; signatures seeded with SQL, counters set to match",
        f"mixed: two wrk processes at once for {s.mixed_seconds:g} s: signers paced at"
        f" {s.mixed_rate:,.0f}/s by bench/lua/sign_paced.lua (a schedule per thread from the"
        " LuaJIT clock, 128 connections; behind schedule, they send at once to catch up) and"
        " readers of the letter page and the API count in turn,"
        f" {s.load.connections} connections, as fast as they can",
        f"email latency: signing paced at {s.email_rate:g}/s for {s.email_seconds:g} s, each"
        " address's send time logged by wrk and matched to its arrival at the sink",
        f"mail worker: {s.mail_messages:,} emails queued with the app's `queue_email`, then one"
        " `flask --app wsgi worker --drain` timed from start to exit",
        "everything shares this machine: load generator, app, database and SMTP sink",
    ]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def app_revision() -> str:
    """The commit the measured code is at, and whether the working tree differs from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", ".", ":!bench")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes" if changed else "")


def main(argv: list[str] | None = None) -> int:
    """Run the suite, write the results, and say whether everything ran cleanly."""
    settings = parse(argv)
    started = datetime.now(UTC)
    work_dir = RESULTS / "tmp" / f"{started:%Y%m%d-%H%M%S}"
    work_dir.mkdir(parents=True, exist_ok=True)
    command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = Results(settings.smoke, started, command.strip(), describe(settings))
    results.load_average.append(os.getloadavg()[0])
    children = Children(work_dir)
    sink_port = free_port()
    run = Run(results, children, work_dir, sink_port, work_dir / "sink.log")
    results.versions["app (git)"] = app_revision()
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    results.versions["wrk"] = (wrk_version.stdout or "?").split(" [")[0].removeprefix("wrk ")
    try:
        children.start(
            "smtp-sink",
            [
                str(BIN / "python"),
                str(ROOT / "bench" / "smtp_sink.py"),
                str(sink_port),
                str(run.sink_log),
            ],
            dict(os.environ),
        )
        wait_for_port(sink_port)
        for kind in settings.databases:
            url = f"sqlite:///{work_dir / 'bench.sqlite3'}" if kind == "sqlite" else settings.pg_url
            if kind == "postgres" and (why := data.postgres_reachable(url)):
                results.problems.append(f"PostgreSQL not reachable at {url}: {why}")
                continue
            for size in settings.sizes:
                print(f"{kind}: letter with {size:,} signatures ...", flush=True)
                run_letter(kind, url, size, size > 100, settings, run)
    except (BenchError, WrkFailed, OSError, subprocess.SubprocessError) as exc:
        results.problems.append(f"run stopped: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        results.problems.append("run interrupted")
    finally:
        children.stop_all()
        for database_file in work_dir.glob("bench.sqlite3*"):
            database_file.unlink()  # hundreds of MB at a million signatures; logs are kept
    results.load_average.append(os.getloadavg()[0])
    page = render(results)
    if settings.smoke or settings.partial:
        paths = [work_dir / "results.md"]
    else:
        paths = [RESULTS / f"{started:%Y-%m-%d-%H%M}.md", RESULTS / "latest.md"]
    for path in paths:
        path.write_text(page)
    print(page)
    print("written to " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
    return 1 if results.problems else 0
