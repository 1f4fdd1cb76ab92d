"""The scenarios driven against a running site, and the checks made after each."""

from __future__ import annotations

import html
import math
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask

from bench import data
from bench.load import Load, WrkResult, wrk
from bench.procs import BenchError, http_get

SIGN_FORM = re.compile(r'<form[^>]*action="[^"]*/sign"[^>]*>(.*?)</form>', re.S)
INPUT = re.compile(r"<input[^>]*>")


def hidden_fields(form: str) -> dict[str, str]:
    """The hidden inputs of a form's HTML, by name."""
    fields = {}
    for tag in INPUT.findall(form):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if 'type="hidden"' in tag and name:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


@dataclass
class Site:
    """The running app (gunicorn, nginx in front) and what the scenarios need of it."""

    database: str
    app: Flask
    app_port: int
    edge_port: int
    small: data.Letter
    large: data.Letter
    work_dir: Path
    cookie: str = ""
    #: the sign form's hidden fields, URL-encoded, to begin a POST body with
    sign_fields: str = ""
    #: the CSRF token alone, for one-button forms
    csrf_field: str = ""

    def url(self, path: str, direct: bool = False) -> str:
        """`path` on nginx, or `direct` on gunicorn."""
        return f"http://127.0.0.1:{self.app_port if direct else self.edge_port}{path}"

    def open_sign_form(self) -> None:
        """Open the sign page once, as a browser would: a session cookie and the form's
        hidden fields, which every request of the run reuses (the CSRF token has no time
        limit; SIGN_MIN_SECONDS is 0 for the bench)."""
        status, headers, body = http_get(self.edge_port, f"/p/{self.large.slug}/sign")
        form = SIGN_FORM.search(body)
        fields = hidden_fields(form.group(1) if form else "")
        if "csrf_token" not in fields or "set-cookie" not in headers:
            raise BenchError(f"the sign page gave {status} without a session and CSRF token")
        self.cookie = headers["set-cookie"].split(";", 1)[0]
        self.sign_fields = urlencode(fields)
        self.csrf_field = urlencode({"csrf_token": fields["csrf_token"]})

    def settle(self) -> None:
        """Let what the last run left queued be answered before the next starts."""
        for _ in range(2):
            http_get(self.app_port, "/healthz", timeout=120)


@dataclass
class Row:
    """One measured scenario; `route` is "nginx" or "gunicorn" (straight)."""

    scenario: str
    database: str
    route: str
    result: WrkResult
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def measured(
    site: Site, script: str, load: Load, path: str, args: object = None, direct: bool = False
) -> tuple[WrkResult | None, WrkResult]:
    """A warm-up run (none when `load.warmup` is 0), then the measured one;
    `args(phase)` gives each its script arguments."""
    results: list[WrkResult | None] = []
    for phase, seconds in (("warm", load.warmup), ("measure", load.duration)):
        if seconds <= 0:
            results.append(None)
            continue
        results.append(
            wrk(
                site.url(path, direct),
                script,
                seconds=seconds,
                connections=load.connections,
                threads=load.threads,
                args=args(phase) if callable(args) else [],
                direct=direct,
            )
        )
        site.settle()
    return results[0], results[1]  # type: ignore[return-value]


def read(site: Site, load: Load, name: str, path: str, direct: bool) -> Row:
    """GET one page as fast as the connections allow."""
    status, _, _ = http_get(site.app_port if direct else site.edge_port, path)
    if status != 200:
        raise BenchError(f"{name}: GET {path} answered {status}")
    _, result = measured(site, "get.lua", load, path, direct=direct)
    return Row(name, site.database, "gunicorn" if direct else "nginx", result)


def sign(site: Site, load: Load) -> Row:
    """POST the sign form through nginx, a new address each time; then count the rows."""
    tag = f"s-{site.database}"

    def args(phase: str) -> list[str]:
        return [site.cookie, site.sign_fields, site.large.slug, f"{tag}{phase[0]}"]

    warm, result = measured(site, "sign.lua", load, f"/p/{site.large.slug}/sign", args)
    row = Row("sign POST", site.database, "nginx", result)
    stored = data.pending_signatures(site.app, f"{tag}%")
    answered = result.successes + (warm.successes if warm else 0)
    row.notes.append(f"{stored:,} pending signatures stored for {answered:,} answers")
    if stored < answered:
        row.problems.append(f"sign: {answered} answered 'check your email' but {stored} stored")
    return row


def confirm(site: Site, load: Load, sign_rate: float) -> Row:
    """Confirm pre-made pending signatures through nginx, each link once; then check the
    counts. Links are made for three times the sign rate; running out shows as errors."""
    per_second, margin = max(3 * sign_rate, 50.0), 4 * load.connections
    sizes = {
        phase: int(per_second * seconds) + margin
        for phase, seconds in (("warm", load.warmup), ("measure", load.duration))
        if seconds > 0
    }
    links = data.make_pending(site.app, site.large, sum(sizes.values()), site.database)
    files = {}
    for phase, size in sizes.items():
        files[phase] = site.work_dir / f"links-{site.database}-{phase}.txt"
        files[phase].write_text("\n".join(links[:size]) + "\n")
        links = links[size:]
    before = data.tally(site.app, site.large)

    def args(phase: str) -> list[str]:
        return [site.cookie, site.csrf_field, str(files[phase]), str(load.threads)]

    warm, result = measured(site, "confirm.lua", load, "/c/", args)
    row = Row("confirm POST", site.database, "nginx", result)
    after = data.tally(site.app, site.large)
    confirmed = after.confirmed_rows - before.confirmed_rows
    answered = result.successes + (warm.successes if warm else 0)
    row.notes.append(
        f"{answered:,} answered confirmed, {confirmed:,} signatures confirmed,"
        f" counter {after.counter_total:,} = rows {after.confirmed_rows:,}"
    )
    if result.exhausted or (warm and warm.exhausted):
        row.notes.append("the links ran out")
    if not answered <= confirmed <= answered + 2 * load.connections:
        row.problems.append(f"confirm: {answered} answers but {confirmed} confirmations")
    if after.counter_total != after.confirmed_rows:
        row.problems.append(f"confirm: counter {after.counter_total}, rows {after.confirmed_rows}")
    if after.used_confirm_tokens - before.used_confirm_tokens != confirmed:
        row.problems.append("confirm: spent links and confirmed signatures differ")
    return row


#: the reads compared between the large letter and the small one, straight from gunicorn
PAIRED_READS = (
    ("letter page GET", "/p/{slug}"),
    ("API count GET", "/api/v1/petitions/{slug}"),
    ("badge GET", "/p/{slug}/badge.svg"),
)


@dataclass
class Paired:
    """One read on both letters, in short runs that take turns; rates kept round by round."""

    scenario: str
    small_rates: list[float] = field(default_factory=list)
    large_rates: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def ratios(self) -> list[float]:
        """The large letter's rate over the small one's, one per round."""
        pairs = zip(self.small_rates, self.large_rates, strict=True)
        return [large / small for small, large in pairs if small]

    @property
    def change(self) -> float:
        """The median round's ratio, minus one."""
        return statistics.median(self.ratios) - 1 if self.ratios else math.nan


def paired_reads(site: Site, load: Load, rounds: int) -> list[Paired]:
    """Each read on the small and the large letter straight from gunicorn (where the cache
    hides nothing), in rounds of a 1 s run each; the order swaps every round, so a drift of
    the machine's speed lowers as many ratios as it raises."""
    found = []
    for scenario, path in PAIRED_READS:
        pair = Paired(scenario)
        both = [
            (path.format(slug=site.small.slug), pair.small_rates),
            (path.format(slug=site.large.slug), pair.large_rates),
        ]
        for number in range(rounds):
            for url, rates in both if number % 2 == 0 else both[::-1]:
                result = wrk(
                    site.url(url, direct=True),
                    "get.lua",
                    seconds=1,
                    connections=load.connections,
                    threads=load.threads,
                    direct=True,
                )
                site.settle()
                rates.append(result.rate)
                pair.errors += result.errors
        found.append(pair)
    return found


#: what the mixed run's readers fetch in turn: the letter, and the count as the press reads it
MIXED_READS = ("/p/{slug}", "/api/v1/petitions/{slug}")
SIGNER_CONNECTIONS = 128


@dataclass
class Mixed:
    """Signatures at a fixed rate while readers fetch the letter page and API count flat out."""

    rate: float
    signers: WrkResult
    readers: WrkResult
    queue_empty_after: float | None = None
    queue_left: int = 0
    worker_rss_mb: list[float] = field(default_factory=list)

    @property
    def drained(self) -> bool:
        """The outbox was empty within 60 s after the run."""
        return self.queue_empty_after is not None and self.queue_empty_after <= 60

    @property
    def kept_pace(self) -> bool:
        """Every scheduled arrival was answered, or was in flight at the cut-off."""
        scheduled = math.floor(self.rate * self.signers.seconds)
        return scheduled - self.signers.successes <= SIGNER_CONNECTIONS


def mixed(site: Site, load: Load, seconds: float, rate: float) -> Mixed:
    """Two wrk processes at once through nginx: signers paced at `rate` and readers of a
    letter already in the cache, as a popular one would be."""
    slug = site.large.slug
    for path in MIXED_READS:
        http_get(site.edge_port, path.format(slug=slug))
    with ThreadPoolExecutor(2) as pool:
        signers = pool.submit(
            wrk,
            site.url(f"/p/{slug}/sign"),
            "sign.lua",
            seconds=seconds,
            connections=SIGNER_CONNECTIONS,
            threads=1,
            args=[site.cookie, site.sign_fields, slug, f"m-{site.database}"],
            env={"BENCH_INTERVAL": str(1 / rate)},
        )
        readers = pool.submit(
            wrk,
            site.url(f"/p/{slug}"),
            "get.lua",
            seconds=seconds,
            connections=load.connections,
            threads=1,
            args=[path.format(slug=slug) for path in MIXED_READS],
        )
        result = Mixed(rate, signers.result(), readers.result())
    site.settle()
    return result


def wait_for_empty_outbox(app: Flask, limit: float) -> tuple[float | None, int]:
    """Seconds until nothing is queued (None: not within `limit`), and what is left."""
    start = time.monotonic()
    while True:
        left, waited = data.queued_mail(app), time.monotonic() - start
        if left == 0:
            return waited, 0
        if waited >= limit:
            return None, left
        time.sleep(0.5)
