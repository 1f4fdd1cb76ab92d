"""The results page: machine, versions, settings, issue 21's targets met or missed, details."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench.scenarios import Mixed, Paired, Row


@dataclass
class MailRun:
    """One `flask --app wsgi worker --drain` over the sign scenario's mail."""

    messages: int
    seconds: float
    #: arrival time of each message at the sink
    arrivals: list[float]

    @property
    def rate(self) -> float:
        """Messages a second from the first arrival to the last (start-up left out)."""
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0
        return (len(self.arrivals) - 1) / span if span else math.nan


@dataclass
class Results:
    """Everything one run measured."""

    smoke: bool
    started: datetime
    command: str
    settings: list[str]
    #: hello world's rate by database and route ("gunicorn", "nginx"), before and after
    hello: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    paired: dict[str, list[Paired]] = field(default_factory=dict)
    mixed: dict[str, Mixed] = field(default_factory=dict)
    mail: dict[str, MailRun] = field(default_factory=dict)
    recounts: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ratio(self, row: Row) -> float:
        """A row's rate over hello world's on the same database and route."""
        hello = statistics.mean(self.hello.get(row.database, {}).get(row.route) or [math.nan])
        return row.result.rate / hello if hello else math.nan

    def find(self, scenario: str, route: str = "nginx") -> list[Row]:
        """The rows of one scenario and route."""
        return [r for r in self.rows if r.scenario == scenario and r.route == route]


def _verdict(oks: list[bool]) -> str:
    return "not measured" if not oks else "met" if all(oks) else "**missed**"


def _ratios(results: Results, rows: list[Row], floor: float, p99: float = math.inf) -> list[str]:
    """Measured column and verdict for rows judged on their ratio (and p99)."""
    parts = []
    for r in rows:
        latency = f", p99 {r.result.p99_ms:.0f} ms" if p99 != math.inf else ""
        parts.append(f"{r.scenario.split()[0]} {r.database}: {results.ratio(r):.2f}{latency}")
    oks = [results.ratio(r) >= floor and r.result.p99_ms <= p99 for r in rows]
    return ["; ".join(parts) or "-", _verdict(oks)]


def targets(results: Results) -> list[list[str]]:
    """[scenario, target, measured, verdict] for each line of issue 21's targets table."""
    lines = [
        ["sign POST", "≥ 0.15 of hello world, p99 ≤ 100 ms at 32 connections", "sign"],
        ["confirm POST", "≥ 0.15, counts exact afterwards", "confirm"],
        ["letter page and API GET through nginx", "≥ 2.0 of hello world", "reads"],
        ["letter page GET straight from gunicorn", "≥ 0.40", "direct"],
    ]
    sign, confirm = results.find("sign POST"), results.find("confirm POST")
    reads = results.find("letter page GET") + results.find("API count GET")
    direct = results.find("letter page GET", "gunicorn")
    lines[0][2:] = _ratios(results, sign, 0.15, 100)
    measured, verdict = _ratios(results, confirm, 0.15)
    exact = all(not r.problems for r in confirm)
    lines[1][2:] = [f"{measured}; counts {'exact' if exact else 'NOT exact'}", verdict]
    if not exact:
        lines[1][3] = "**missed**"
    lines[2][2:] = _ratios(results, reads, 2.0)
    lines[3][2:] = _ratios(results, direct, 0.40)
    lines.append(_mixed(results))
    pairs = [(db, p) for db, found in results.paired.items() for p in found]
    lines.append(
        [
            "1,000,000 signatures vs 100 (straight from gunicorn)",
            "every read within 10 %",
            "; ".join(f"{p.scenario.split(' GET')[0]} {db}: {_change(p.change)}" for db, p in pairs)
            or "-",
            _verdict([abs(p.change) <= 0.10 for _, p in pairs]),
        ]
    )
    mail = results.mail.items()
    lines.append(
        [
            "mail worker on smtplib",
            "≥ 500 messages/s into a local SMTP server",
            "; ".join(f"{db}: {m.rate:,.0f}/s" for db, m in mail) or "-",
            _verdict([m.rate >= 500 for _, m in mail]),
        ]
    )
    rss = {db: m.worker_rss_mb for db, m in results.mixed.items() if m.worker_rss_mb}
    lines.append(
        [
            "memory",
            "every gunicorn worker ≤ 100 MB RSS after the mixed run",
            "; ".join(f"{db}: {max(v):.0f} MB at most" for db, v in rss.items()) or "-",
            _verdict([max(v) <= 100 for v in rss.values()]),
        ]
    )
    return lines


def _mixed(results: Results) -> list[str]:
    parts, oks = [], []
    for db, m in results.mixed.items():
        s, r = m.signers, m.readers
        drained = m.queue_empty_after is not None and m.queue_empty_after <= 60
        parts.append(
            f"{db}: {s.rate:,.0f}/s accepted of {m.rate:,.0f}, {s.errors + r.errors} errors,"
            f" reader p99 {r.p99_ms:.0f} ms, signer p99 {s.p99_ms:.0f} ms, outbox "
            + (f"empty after {m.queue_empty_after:.0f} s" if drained else f"{m.queue_left} left")
        )
        oks.append(
            m.kept_pace
            and s.errors + r.errors == 0
            and r.p99_ms <= 50
            and s.p99_ms <= 250
            and drained
        )
    return [
        "mixed, through nginx",
        "500 signatures/s offered all accepted, 0 errors, reader p99 ≤ 50 ms, signer p99"
        " ≤ 250 ms, outbox empty within 60 s after",
        "; ".join(parts) or "-",
        _verdict(oks),
    ]


def _change(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.1%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def machine() -> list[list[str]]:
    """This machine and the versions the numbers depend on."""
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        ["machine", f"{os.cpu_count()} cores, {cpu.group(1) if cpu else '?'}, {memory:.0f} GiB"],
        ["kernel, python", f"{platform.release()}, {platform.python_version()}"],
        *([name, metadata.version(name)] for name in ("gunicorn", "flask", "sqlalchemy")),
    ]


def render(results: Results) -> str:
    """The whole results page."""
    mode = "smoke (the numbers prove only that it runs)" if results.smoke else "full"
    loads = ", ".join(f"{x:.2f}" for x in results.load_average)
    out = [
        f"# Bench results, {results.started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Mode: {mode}. Command: `{results.command}`. Targets: issue 21.",
        "",
        "## Targets",
        "",
        *_table(["scenario", "target", "measured", "result"], targets(results)),
        "",
        "## Scenarios",
        "",
        "Rates count successful answers; errors are 4xx/5xx answers and socket errors."
        " *of hello* is the rate over hello world's on the same route and database.",
        "",
    ]
    rows = [
        [
            f"{r.scenario} ({r.route})",
            r.database,
            f"{r.result.rate:,.0f}",
            f"{results.ratio(r):.2f}",
            f"{r.result.p50_ms:.1f}",
            f"{r.result.p99_ms:.1f}",
            f"{r.result.errors:,}",
            "; ".join(r.notes + r.problems),
        ]
        for r in results.rows
    ]
    for db, routes in results.hello.items():
        for route, rates in routes.items():
            shown = ", ".join(f"{x:,.0f}" for x in rates)
            rows.append([f"hello world ({route})", db, shown, "1", "", "", "", ""])
    head = ["scenario", "DB", "req/s", "of hello", "p50 ms", "p99 ms", "errors", "notes"]
    out += [*_table(head, rows), ""]
    out += _details(results)
    out += ["## Machine and settings", "", *_table(["", ""], machine())]
    out += [f"| {k} | {v} |" for k, v in results.versions.items()]
    out += [f"| load average (1 min) before, after | {loads} |", ""]
    out += [f"- {line}" for line in results.settings]
    return "\n".join(out) + "\n"


def _details(results: Results) -> list[str]:
    out = []
    for db, pairs in results.paired.items():
        out += [f"### Reads of both letters straight from gunicorn, {db}", ""]
        rows = [
            [
                p.scenario,
                ", ".join(f"{x:,.0f}" for x in p.small_rates),
                ", ".join(f"{x:,.0f}" for x in p.large_rates),
                _change(p.change),
                f"{p.errors:,}",
            ]
            for p in pairs
        ]
        head = ["read", "100 sig. req/s", "large req/s", "median change", "errors"]
        out += [*_table(head, rows), ""]
    for db, m in results.mixed.items():
        s, r = m.signers, m.readers
        out += [
            f"### Mixed run, {db}",
            "",
            f"- signers: {s.successes:,} accepted in {s.seconds:.0f} s ({s.rate:,.0f}/s of"
            f" {m.rate:,.0f} offered), {s.errors:,} errors, p50 {s.p50_ms:.1f} ms, p99"
            f" {s.p99_ms:.1f} ms, max {s.max_ms:.0f} ms",
            f"- readers: {r.rate:,.0f}/s, {r.errors:,} errors, p50 {r.p50_ms:.1f} ms,"
            f" p99 {r.p99_ms:.1f} ms, max {r.max_ms:.0f} ms",
            "- gunicorn workers' RSS after: " + ", ".join(f"{x:.0f} MB" for x in m.worker_rss_mb),
            "",
        ]
    for db, w in results.mail.items():
        out += [
            f"- mail worker, {db}: `worker --drain` delivered {w.messages:,} messages in"
            f" {w.seconds:.1f} s with start-up; {w.rate:,.0f}/s from first to last arrival",
        ]
    out += ["", "### `flask --app wsgi recount` after each database", ""]
    out += [f"- {line}" for line in results.recounts] or ["- (none ran)"]
    out += ["", "### Problems", ""]
    out += [f"- {p}" for p in results.problems] or ["None: every scenario ran, every check held."]
    return [*out, ""]
