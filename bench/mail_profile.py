"""Time the mail worker alone: queue emails, then one `worker --drain` into an SMTP sink.

    .venv/bin/python -m bench.mail_profile [--db sqlite|postgres|both] [--count 10000]
        [--pg-url URL] [--repeat N] [--cprofile]

For each database: a fresh schema (a new SQLite file under a temporary folder, or the
PostgreSQL database of `--pg-url` dropped and created again; never use `test` or `bench`),
`--count` confirmation emails queued with the app's own `queue_email` (bench/data.py
`queue_mail`), then `flask --app wsgi worker --drain` run as its own process against the
SMTP sink of bench/smtp_sink.py in another process, as bench/suite.py `mail_worker` does.
The rate is messages per second over the whole command, start-up included, as in the full
benchmark's table; the rate without start-up and the worker's CPU seconds are printed beside
it, with the sink's (the machine may be busy with other work, so compare runs side by side).
`--cprofile` drains in this process under cProfile instead and prints where the time went.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench import data, smtp_sink
from bench.procs import BIN, Children, flask_command, free_port, run_command
from bench.suite import app_env, wait_for_port

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_mail"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, sink: tuple[int, int, Path], count: int, tag: str, profile: bool) -> str:
    """Queue `count` emails in a fresh database at `url` and drain them; one line of results."""
    sink_pid, sink_port, sink_log = sink
    data.recreate_database(url)
    env = app_env(url, free_port(), sink_port, workers=1)
    run_command(flask_command("db", "upgrade"), env, timeout=120)
    app = data.in_process_app(env)
    started = time.monotonic()
    data.queue_mail(app, count, tag)
    queued = time.monotonic() - started
    sink_cpu = cpu_seconds(sink_pid)
    if profile:
        from petitions.services import delivery

        profiler = cProfile.Profile()
        started = time.monotonic()
        profiler.enable()
        report = delivery.drain(app)
        profiler.disable()
        seconds = time.monotonic() - started
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        sent, startup, cpu = report.sent, 0.0, 0.0
    else:
        started = time.monotonic()
        run_command(flask_command("routes"), env, timeout=60)
        startup = time.monotonic() - started
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = run_command(flask_command("worker", "--drain"), env, timeout=900)
        seconds = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        found = re.search(r"(\d+) sent", done.stdout)
        sent = int(found.group(1)) if found else 0
    prefix, deadline = f"w-{tag}-", time.monotonic() + 15
    while smtp_sink.count(sink_log, prefix) < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered = smtp_sink.count(sink_log, prefix)
    sink_cpu = cpu_seconds(sink_pid) - sink_cpu
    data.bench_engine(url).dispose()
    return (
        f"{make_kind(url)}: queued {count:,} in {queued:.1f} s ({count / queued:,.0f}/s); "
        f"drain sent {sent:,} in {seconds:.2f} s = {sent / seconds:,.0f} messages/s "
        f"(start-up {startup:.2f} s; {sent / max(seconds - startup, 1e-9):,.0f}/s without; "
        f"worker CPU {cpu:.2f} s, sink CPU {sink_cpu:.2f} s); "
        f"{delivered:,} reached the sink"
    )


def make_kind(url: str) -> str:
    """`sqlite` or `postgres`, for the report line."""
    return "sqlite" if url.startswith("sqlite") else "postgres"


def main(argv: list[str] | None = None) -> None:
    """Run the measurement on the chosen databases and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args(argv)
    if make_url_name(args.pg_url) in {"test", "bench"}:
        sys.exit("refusing to use the shared `test` or `bench` database")
    with tempfile.TemporaryDirectory(prefix="mail-profile-") as folder:
        work = Path(folder)
        children = Children(work)
        sink_port, sink_log = free_port(), work / "sink.log"
        try:
            sink = children.start(
                "sink",
                [str(BIN / "python"), "bench/smtp_sink.py", str(sink_port), str(sink_log)],
                dict(os.environ),
            )
            wait_for_port(sink_port)
            urls = []
            if args.db in {"sqlite", "both"}:
                urls.append(f"sqlite:///{work / 'mail.sqlite3'}")
            if args.db in {"postgres", "both"}:
                urls.append(args.pg_url)
            for run in range(args.repeat):
                for url in urls:
                    tag = f"{make_kind(url)[:2]}{run}"
                    where = (sink.pid, sink_port, sink_log)
                    print(measure(url, where, args.count, tag, args.cprofile), flush=True)
        finally:
            children.stop_all()


def make_url_name(url: str) -> str:
    """The database name in a URL."""
    return url.rpartition("/")[2].partition("?")[0]


if __name__ == "__main__":
    main()
