"""Where the CPU goes: one write scenario under load, with each process's CPU per request.

    .venv/bin/python -m bench.costs [--db sqlite|postgres] [--scenario sign|confirm|mixed]
                                    [--seconds 10] [--warmup 3] [--connections 32]
                                    [--signatures 100] [--pg-url URL] [--py-spy DIR]
                                    [--lock-log MS] [--rate 1000] [--workers N]

The full benchmark says how fast; this says what each request costs the two cores, which is
what decides how fast. It serves hello world and then the app exactly as `bench/run.py`
does (gunicorn with the production settings, the mail worker, the benchmark's SMTP sink, a
fresh letter of `--signatures` signatures), drives the scenario with wrk, and reads from
`/proc` the user and system CPU that each group of processes spent during the measured run,
divided by the requests answered:

* web: gunicorn's master and workers (for hello world too, as the yardstick);
* mail worker, SMTP sink;
* database: every process named `postgres` on this machine (PostgreSQL only; another
  database's work on the same server counts too);
* all: the whole machine (`/proc/stat`), which also holds wrk and the kernel's share.

To reach a ratio R of hello world, a request may cost about `hello's all / R`: the last line
says how far off that is. With `--py-spy DIR` (py-spy installed by hand: `.venv/bin/pip
install py-spy`) one web worker and the mail worker are sampled while they hold the GIL,
written as `DIR/web.txt` and `DIR/worker.txt` in py-spy's raw format (one stack a line). With
`--lock-log MS` (SQLite) each process logs the writer-lock holds longer than MS ms, with the
code that held them, and its average wait for the lock and hold of it; the summary follows
the table.

`--scenario mixed` is the full benchmark's mixed run (signers paced at `--rate` a second,
readers of the letter page and API count flat out) for `--seconds`, with what signers and
readers got; on a machine slower than the one the issue's 1,000 a second was set for, a
lower `--rate` shows the same share of the machine. `--workers` sets gunicorn's workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data
from bench.load import Load, WrkResult, wrk
from bench.procs import (
    ROOT,
    Children,
    children_of,
    flask_command,
    free_port,
    gunicorn_command,
    production_workers,
    run_command,
    wait_for_http,
)
from bench.scenarios import Mixed, Site, mixed
from bench.suite import DEFAULT_PG, app_env

#: clock ticks a second, for the CPU times in /proc
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    """User and system seconds."""

    user: float = 0.0
    system: float = 0.0

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.user + other.user, self.system + other.system)


def process_cpu(pids: list[int]) -> dict[int, Cpu]:
    """Each live process's CPU so far (a process that has ended is left out)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        found[pid] = Cpu(int(fields[11]) / TICKS, int(fields[12]) / TICKS)
    return found


def named(name: str) -> list[int]:
    """The processes whose command name starts with `name`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(name):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_cpu() -> tuple[float, float]:
    """The whole machine's busy and total CPU seconds so far."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / TICKS, sum(ticks) / TICKS


@dataclass
class Measured:
    """A measured run: requests answered and what each group of processes spent on them."""

    name: str
    rate: float
    p99_ms: float
    errors: int
    requests: int
    groups: dict[str, Cpu] = field(default_factory=dict)
    #: the whole machine's busy CPU seconds during the run, and its share of the time
    machine: float = 0.0
    busy: float = 0.0

    def per_request(self, seconds: float) -> float:
        """Microseconds a request."""
        return seconds * 1e6 / max(1, self.requests)


Pids = Callable[[], list[int]]


def measure(name: str, run: Callable[[], WrkResult], groups: dict[str, Pids]) -> Measured:
    """Run `run()` and take each group's CPU around it. Each group's pids are asked for
    before and after, so processes that start during the run (PostgreSQL backends) are
    counted from when they are seen; one that ends during it is left out."""
    pids = {group: find() for group, find in groups.items()}
    before = {group: process_cpu(found) for group, found in pids.items()}
    busy_before, total_before = machine_cpu()
    result = run()
    busy_after, total_after = machine_cpu()
    measured = Measured(name, result.rate, result.p99_ms, result.errors, result.successes)
    for group, find in groups.items():
        spent = Cpu()
        for pid, cpu in process_cpu(sorted(set(pids[group]) | set(find()))).items():
            spent = spent + (cpu - before[group].get(pid, Cpu()))
        measured.groups[group] = spent
    measured.machine = busy_after - busy_before
    measured.busy = measured.machine / max(1e-9, total_after - total_before)
    return measured


def py_spy(pid: int, seconds: int, path: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` while it holds the GIL for `seconds`, into `path` (py-spy's raw format)."""
    command = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    options = ["--rate", "250", "--format", "raw", "--nonblocking", "--gil", "-o", str(path)]
    return subprocess.Popen(
        [command, "record", "--pid", str(pid), "--duration", str(seconds), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ratio_to_hello(hello: Measured, app: Measured) -> float:
    """The scenario's rate over hello world's."""
    return app.rate / hello.rate if hello.rate else 0.0


def figures(hello: Measured, app: Measured) -> dict[str, Any]:
    """What `report` prints, as numbers: each run's rate, errors and µs of CPU a request (each
    group's and the whole machine's), and the scenario's ratio to hello world."""
    runs = {}
    for key, run in (("hello", hello), ("scenario", app)):
        runs[key] = {
            "rate": run.rate,
            "p99_ms": run.p99_ms,
            "errors": run.errors,
            "us": {
                **{
                    group: run.per_request(cpu.user + cpu.system)
                    for group, cpu in run.groups.items()
                },
                "all": run.per_request(run.machine),
            },
        }
    return {**runs, "ratio": ratio_to_hello(hello, app)}


def report(hello: Measured, app: Measured) -> str:
    """The table, and how far the scenario is from a ratio of 0.30."""
    lines = [f"{'':18} {'req/s':>7} {'p99 ms':>7} {'errors':>6}   µs of CPU a request"]
    for run in (hello, app):
        parts = []
        for group, cpu in run.groups.items():
            user, system = run.per_request(cpu.user), run.per_request(cpu.system)
            parts.append(f"{group} {user + system:,.0f} ({user:,.0f} user + {system:,.0f} sys)")
        parts.append(f"all {run.per_request(run.machine):,.0f} at {run.busy:.0%} busy")
        lines.append(
            f"{run.name:18} {run.rate:>7,.0f} {run.p99_ms:>7.1f} {run.errors:>6}   "
            + "; ".join(parts)
        )
    ratio = ratio_to_hello(hello, app)
    allowed = hello.per_request(hello.machine) / 0.30
    lines.append(
        f"ratio {ratio:.3f} of hello world; at 0.30 a request could cost the machine about"
        f" {allowed:,.0f} µs, and it costs {app.per_request(app.machine):,.0f}"
    )
    return "\n".join(lines)


def lock_summary(work: Path, threshold_ms: float) -> str:
    """What the processes' writer-lock logs say: each one's last totals, and how many holds
    passed the threshold (`petitions.db.WriterLockLog`)."""
    totals: dict[str, str] = {}
    long_holds = 0
    for name in ("gunicorn.log", "worker.log"):
        path = work / name
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if "writer lock held" in line:
                long_holds += 1
            elif "writer lock totals, pid" in line:
                totals[line.split("pid ")[1].split(":")[0]] = line.split("writer lock ")[1]
    lines = [f"writer lock: {long_holds} holds over {threshold_ms:g} ms (listed in the logs)"]
    lines += [f"  {text}" for _pid, text in sorted(totals.items())]
    return "\n".join(lines)


def _mixed(site: Site, args: argparse.Namespace, hello: Measured, groups: dict[str, Pids]) -> int:
    """The mixed run at `args.rate` signatures a second for `args.seconds`, with the web
    workers' CPU; prints what signers and readers got."""
    load = Load(args.connections, 1, args.warmup, args.seconds)
    spent: dict[str, Mixed] = {}

    def run() -> WrkResult:
        spent["mixed"] = mixed(site, load, args.seconds, args.rate, hello.rate)
        return spent["mixed"].signers

    measured = measure(f"mixed at {args.rate:g}/s", run, groups)
    m = spent["mixed"]
    for name, result in (("signers", m.signers), ("readers", m.readers)):
        print(
            f"{name}: {result.rate:,.0f}/s ({result.rate / hello.rate:.2f} of hello),"
            f" {result.errors} errors, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
        )
    print(f"signers kept pace: {'yes' if m.kept_pace else 'no'}; machine {measured.busy:.0%} busy")
    seconds = m.signers.seconds
    shares = ", ".join(
        f"{group} {(cpu.user + cpu.system) / seconds:.2f}" for group, cpu in measured.groups.items()
    )
    print(f"cores busy: {shares}; all {measured.machine / seconds:.2f}")
    return 0 if m.signers.errors + m.readers.errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Measure hello world, then the scenario, and print what each request cost."""
    parser = argparse.ArgumentParser(prog="bench/costs.py", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--scenario", choices=["sign", "confirm", "mixed"], default="sign")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000,
        help="mixed: signatures offered a second (the issue's 1,000 unless this machine is slower)",
    )
    parser.add_argument(
        "--workers", type=int, help="gunicorn workers (production's default for --db)"
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--signatures", type=int, default=100, help="the letter's size")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--py-spy", type=Path, help="write py-spy samples to this folder")
    parser.add_argument(
        "--json", type=Path, help="sign or confirm: also write the measured figures to this file"
    )
    parser.add_argument(
        "--lock-log",
        type=float,
        metavar="MS",
        help="SQLite: log writer-lock holds longer than MS ms, and each process's totals",
    )
    args = parser.parse_args(argv)
    if args.json is not None and args.scenario == "mixed":
        parser.error("--json is for sign and confirm; the mixed run prints what it measured")
    url = "sqlite://" if args.db == "sqlite" else args.pg_url
    workers = args.workers or production_workers(url)
    work = ROOT / "bench" / "results" / "tmp" / f"costs-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    children = Children(work)
    sink_port, sink_log = free_port(), work / "sink.log"
    load: dict[str, int] = {"connections": args.connections, "threads": 2}
    try:
        sink = children.start(
            "smtp-sink",
            [sys.executable, str(ROOT / "bench" / "smtp_sink.py"), str(sink_port), str(sink_log)],
            dict(os.environ),
        )
        port = free_port()
        hello_server = children.start(
            "hello-gunicorn",
            gunicorn_command("bench.hello:app", port, workers),
            app_env("sqlite://", port, 25, workers),
        )
        wait_for_http(port, "/")
        url = f"http://127.0.0.1:{port}/"
        wrk(url, "get.lua", seconds=args.warmup, **load)
        hello = measure(
            "hello world",
            lambda: wrk(url, "get.lua", seconds=args.seconds, **load),
            {"web": lambda: [hello_server.pid, *children_of(hello_server.pid)]},
        )
        children.stop("hello-gunicorn")

        database = f"sqlite:///{work / 'costs.sqlite3'}" if args.db == "sqlite" else args.pg_url
        data.recreate_database(database)
        port = free_port()
        env = app_env(database, port, sink_port, workers)
        run_command(flask_command("db", "upgrade"), env, timeout=120)
        if args.lock_log is not None:
            env["UNDERSIGNED_WRITER_LOCK_LOG"] = str(args.lock_log)
        engine = data.bench_engine(database)
        letter = data.seed_letter(engine, args.signatures)
        app = data.in_process_app(env)
        worker = children.start("worker", flask_command("worker"), env)
        server = children.start("gunicorn", gunicorn_command("wsgi:app", port, workers), env)
        wait_for_http(port, "/healthz", timeout=60)
        site = Site(args.db, port, letter, engine, app, sink_log, work, "costs")
        site.open_letter()
        site.wait_as_a_person_would()
        if args.scenario == "mixed":
            return _mixed(
                site,
                args,
                hello,
                {
                    "web": lambda: [server.pid, *children_of(server.pid)],
                    "mail worker": lambda: [worker.pid],
                    "sink": lambda: [sink.pid],
                },
            )
        if args.scenario == "sign":
            path, script = f"/p/{letter.slug}/sign", "sign.lua"

            def script_args(phase: str) -> list[str]:
                return [site.cookie, site.sign_fields, letter.slug, f"c{phase}-costs"]

        else:
            path, script = "/c/", "confirm.lua"
            # More links than the fastest confirmation rate seen here could spend (2,500 a
            # second ran out on a faster machine).
            per_second = 5000
            links = data.make_pending(app, letter, per_second * (args.warmup + args.seconds), "c")
            files = {}
            for phase, (start, end) in {
                "w": (0, per_second * args.warmup),
                "m": (per_second * args.warmup, len(links)),
            }.items():
                files[phase] = work / f"links-{phase}.txt"
                files[phase].write_text("\n".join(links[start:end]) + "\n")

            def script_args(phase: str) -> list[str]:
                return [site.cookie, site.csrf_field, str(files[phase]), "2"]

        target = site.base + path
        wrk(target, script, seconds=args.warmup, args=script_args("w"), **load)
        site.settle()
        groups: dict[str, Pids] = {
            "web": lambda: [server.pid, *children_of(server.pid)],
            "mail worker": lambda: [worker.pid],
            "sink": lambda: [sink.pid],
        }
        if args.db == "postgres":
            groups["database"] = lambda: named("postgres")
        spies = []
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            spies = [
                py_spy(children_of(server.pid)[0], args.seconds, args.py_spy / "web.txt"),
                py_spy(worker.pid, args.seconds, args.py_spy / "worker.txt"),
            ]
        measured = measure(
            f"{args.scenario} ({args.db})",
            lambda: wrk(target, script, seconds=args.seconds, args=script_args("m"), **load),
            groups,
        )
        for spying in spies:
            spying.wait()
        app.extensions["db_engine"].dispose()
        engine.dispose()
    finally:
        children.stop_all()
    print(report(hello, measured))
    if args.json is not None:
        args.json.write_text(json.dumps(figures(hello, measured), indent=1))
    if args.lock_log is not None:
        print(lock_summary(work, args.lock_log))
    print(f"logs in {work}")
    return 0 if measured.errors == 0 and measured.requests > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
