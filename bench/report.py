"""The results page: issue 21's targets met or missed, every scenario, machine and settings."""

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

from bench.load import WrkResult
from bench.scenarios import Mixed, Paired, Row


@dataclass
class MailRun:
    """One `flask --app wsgi worker --drain` over the sign scenario's mail."""

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
    #: hello world's rates by database and route ("gunicorn", "nginx"), before and after
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


def _line(scenario: str, target: str, measured: list[tuple[str, bool]]) -> list[str]:
    """A row of the targets table from (what was measured, whether it met the target)."""
    verdict = "not measured" if not measured else "**missed**"
    if measured and all(ok for _, ok in measured):
        verdict = "met"
    return [scenario, target, "; ".join(text for text, _ in measured) or "-", verdict]


def targets(r: Results) -> list[list[str]]:
    """[scenario, target, measured, verdict] for each line of issue 21's targets table."""

    def ratios(rows: list[Row], floor: float, p99: float = math.inf) -> list[tuple[str, bool]]:
        return [
            (
                f"{x.scenario.split()[0]} {x.database} {r.ratio(x):.2f}"
                + (f", p99 {x.result.p99_ms:.0f} ms" if p99 < math.inf else ""),
                r.ratio(x) >= floor and x.result.p99_ms <= p99 and not x.problems,
            )
            for x in rows
        ]

    mixed = [
        (
            f"{db}: {m.signers.rate:,.0f}/s accepted, {m.signers.errors + m.readers.errors}"
            f" errors, reader p99 {m.readers.p99_ms:.0f} ms, signer p99"
            f" {m.signers.p99_ms:.0f} ms, outbox "
            + (f"empty after {m.queue_empty_after:.0f} s" if m.drained else "not empty"),
            m.kept_pace
            and m.signers.errors + m.readers.errors == 0
            and m.readers.p99_ms <= 50
            and m.signers.p99_ms <= 250
            and m.drained,
        )
        for db, m in r.mixed.items()
    ]
    pairs = [(db, p) for db, found in r.paired.items() for p in found]
    rss = {db: max(m.worker_rss_mb) for db, m in r.mixed.items() if m.worker_rss_mb}
    return [
        _line(
            "sign POST",
            "≥ 0.15 of hello world on SQLite and on PostgreSQL, p99 ≤ 100 ms at 32 connections",
            ratios(r.find("sign POST"), 0.15, 100),
        ),
        _line(
            "confirm POST",
            "≥ 0.15 on both, counts exact afterwards",
            ratios(r.find("confirm POST"), 0.15),
        ),
        _line(
            "letter page and API GET through nginx",
            "≥ 2.0 of hello world",
            ratios(r.find("letter page GET") + r.find("API count GET"), 2.0),
        ),
        _line(
            "letter page GET straight from gunicorn (cache cold)",
            "≥ 0.40",
            ratios(r.find("letter page GET", "gunicorn"), 0.40),
        ),
        _line(
            "mixed, 60 s, through nginx",
            "500 signatures/s offered all accepted, 0 errors, reader p99 ≤ 50 ms, signer p99"
            " ≤ 250 ms, outbox empty within 60 s after",
            mixed,
        ),
        _line(
            "1,000,000 signatures vs 100 (straight from gunicorn)",
            "every read within 10 %",
            [
                (f"{p.scenario.split()[0]} {db} {_change(p.change)}", abs(p.change) <= 0.1)
                for db, p in pairs
            ],
        ),
        _line(
            "mail worker on smtplib",
            "≥ 500 messages/s into a local SMTP server",
            [(f"{db} {m.rate:,.0f}/s", m.rate >= 500) for db, m in r.mail.items()],
        ),
        _line(
            "memory",
            "every gunicorn worker ≤ 100 MB RSS after the mixed run",
            [(f"{db} {most:.0f} MB at most", most <= 100) for db, most in rss.items()],
        ),
    ]


def _change(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.1%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def _wrk(w: WrkResult) -> list[str]:
    return [f"{w.rate:,.0f}", f"{w.p50_ms:.1f}", f"{w.p99_ms:.1f}", f"{w.errors:,}"]


def _scenarios(r: Results) -> list[list[str]]:
    rows = []
    for x in r.rows:
        rate, *latencies = _wrk(x.result)
        notes = "; ".join(x.notes + x.problems)
        name = f"{x.scenario} ({x.route})"
        rows.append([name, x.database, rate, f"{r.ratio(x):.2f}", *latencies, notes])
    for db, m in r.mixed.items():
        rss = f"RSS after: {', '.join(f'{x:.0f}' for x in m.worker_rss_mb)} MB"
        for part, w in (("signers", m.signers), ("readers", m.readers)):
            rate, *latencies = _wrk(w)
            rows.append([f"mixed: {part}", db, rate, "", *latencies, rss])
    for db, pairs in r.paired.items():
        for p in pairs:
            small, large = statistics.median(p.small_rates), statistics.median(p.large_rates)
            rates = f"{small:,.0f} / {large:,.0f}"
            note = "per round, large/small: " + " ".join(f"{x:.2f}" for x in p.ratios)
            rows.append([f"{p.scenario}, 100 / large", db, rates, "", "", "", f"{p.errors}", note])
    for db, w in r.mail.items():
        note = f"`worker --drain`, {w.seconds:.1f} s with start-up"
        rows.append(["mail worker", db, f"{w.rate:,.0f}", "", "", "", "", note])
    for db, routes in r.hello.items():
        for route, rates in routes.items():
            shown = " / ".join(f"{x:,.0f}" for x in rates)
            rows.append([f"hello world ({route})", db, shown, "1", "", "", "", ""])
    return rows


def render(results: Results) -> str:
    """The whole results page."""
    mode = "smoke (the numbers prove only that it runs)" if results.smoke else "full"
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {
        "machine": f"{os.cpu_count()} cores, {cpu.group(1) if cpu else '?'}, {memory:.0f} GiB",
        "python": platform.python_version(),
        **{name: metadata.version(name) for name in ("gunicorn", "flask", "sqlalchemy")},
        **results.versions,
        "load average (1 min) before, after": ", ".join(f"{x:.2f}" for x in results.load_average),
    }
    head = ["scenario", "DB", "req/s", "of hello", "p50 ms", "p99 ms", "errors", "notes"]
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
        "Rates count successful answers; errors are 4xx/5xx answers and socket errors. *of"
        " hello* is the rate over hello world's on the same route and database (the mean of"
        " its runs, listed last).",
        "",
        *_table(head, _scenarios(results)),
        "",
        "## Checks",
        "",
        *(f"- recount: {line}" for line in results.recounts),
        *(f"- **problem**: {p}" for p in results.problems),
        *([] if results.problems else ["- no problem: every scenario ran, every check held"]),
        "",
        "## Machine and settings",
        "",
        *_table(["", ""], [[k, v] for k, v in versions.items()]),
        "",
        *(f"- {line}" for line in results.settings),
    ]
    return "\n".join(out) + "\n"
