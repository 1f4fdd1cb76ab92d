"""The scenarios: what is driven against a running site, and what is checked afterwards."""

from __future__ import annotations

import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask
from sqlalchemy import Engine, text

from bench import data, smtp_sink
from bench.load import Load, WrkResult, wrk
from bench.procs import BenchError, http_get


class SignFormFields(HTMLParser):
    """The hidden inputs of the sign form on a letter page (CSRF token, and any others)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_sign_form = False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect `<input type="hidden">` inside the form that posts to .../sign."""
        attributes = dict(attrs)
        if tag == "form":
            self.in_sign_form = (attributes.get("action") or "").split("#")[0].endswith("/sign")
        elif tag == "input" and self.in_sign_form and attributes.get("type") == "hidden":
            self.fields[attributes.get("name") or ""] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        """A form ends."""
        if tag == "form":
            self.in_sign_form = False


@dataclass
class Site:
    """A running app under test and what the scenarios need to talk to it."""

    database: str
    port: int
    letter: data.Letter
    engine: Engine
    app: Flask
    sink_log: Path
    work_dir: Path
    tag: str
    cookie: str = ""
    #: the sign form's hidden fields, URL-encoded, ready to prefix a POST body
    sign_fields: str = ""
    #: just the CSRF token as a form field, for one-button forms
    csrf_field: str = ""
    page_loaded_at: float = 0.0

    @property
    def base(self) -> str:
        """The site's address."""
        return f"http://127.0.0.1:{self.port}"

    def open_letter(self) -> None:
        """Open the letter once, as a browser would: a session cookie and the form's fields.

        Flask-WTF ties the CSRF token to the session, and this app gives it no time limit, so
        every request of the run reuses them.
        """
        status, headers, body = http_get(self.port, f"/p/{self.letter.slug}")
        form = SignFormFields()
        form.feed(body)
        if status != 200 or "csrf_token" not in form.fields or "set-cookie" not in headers:
            raise BenchError(f"the letter page gave {status} without a session and CSRF token")
        self.page_loaded_at = time.monotonic()
        self.cookie = headers["set-cookie"].split(";", 1)[0]
        self.sign_fields = urlencode(form.fields)
        self.csrf_field = urlencode({"csrf_token": form.fields["csrf_token"]})

    def settle(self) -> None:
        """Let the requests wrk left queued be answered before the next run starts.

        Health checks queue behind them (gunicorn's workers take connections in order), so
        when two have been answered, what the last run left behind has been taken up.
        """
        for _ in range(2):
            http_get(self.port, "/healthz", timeout=120)

    def wait_as_a_person_would(self) -> None:
        """Let SIGN_MIN_SECONDS pass since the page was shown, or the form counts as a bot's."""
        minimum = float(self.app.config.get("SIGN_MIN_SECONDS", 0) or 0)
        time.sleep(max(0.0, self.page_loaded_at + minimum + 0.5 - time.monotonic()))


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    database: str
    signatures: int
    result: WrkResult | None = None
    hello_rate: float | None = None
    skipped: str = ""
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Rate as a fraction of the hello-world rate."""
        if self.result is None or not self.hello_rate:
            return None
        return self.result.rate / self.hello_rate


def measured(
    site: Site, script: str, load: Load, path: str, args_for: object = None
) -> tuple[WrkResult, WrkResult]:
    """A warm-up run, then the measured run; `args_for(phase)` gives each its script args."""
    results = []
    for phase, seconds in (("warm", load.warmup), ("measure", load.duration)):
        args = args_for(phase) if callable(args_for) else []
        results.append(
            wrk(
                site.base + path,
                script,
                seconds=seconds,
                connections=load.connections,
                threads=load.threads,
                args=args,
            )
        )
        site.settle()
    return results[0], results[1]


def read(site: Site, load: Load, name: str, path: str, hello: float) -> Row:
    """GET one page as fast as the connections allow; skipped while the endpoint is missing."""
    row = Row(name, site.database, site.letter.seeded, hello_rate=hello)
    status, _, _ = http_get(site.port, path)
    if status == 404:
        row.skipped = "endpoint missing (404)"
        return row
    if status != 200:
        row.problems.append(f"{name}: GET {path} answered {status}")
        return row
    _, row.result = measured(site, "get.lua", load, path)
    return row


#: what the mixed run's readers fetch, in turn: the letter, and the count as the press reads it
MIXED_READS = ("/p/{slug}", "/api/v1/petitions/{slug}")

#: the reads compared between the large letter and a small one
READS = (
    ("letter page GET", "/p/{slug}"),
    ("API count GET", "/api/v1/petitions/{slug}"),
    ("badge GET", "/p/{slug}/badge.svg"),
)


@dataclass
class Paired:
    """One read measured on two letters of one database, in short runs that take turns.

    The rates are kept round by round: `small_rates[i]` and `large_rates[i]` were measured
    seconds apart, so their ratio sees the letters and not how busy the machine was.
    """

    scenario: str
    small: int
    large: int
    small_rates: list[float] = field(default_factory=list)
    large_rates: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def ratios(self) -> list[float]:
        """The large letter's rate over the small one's, one per round (none where small was 0)."""
        pairs = zip(self.small_rates, self.large_rates, strict=True)
        return [large / small for small, large in pairs if small]

    @property
    def change(self) -> float:
        """The median of the rounds' ratios, minus one; NaN without a round."""
        return statistics.median(self.ratios) - 1 if self.ratios else math.nan


def paired_reads(
    site: Site, small: data.Letter, load: Load, rounds: int, seconds: int
) -> list[Paired]:
    """Each read on the small and the large letter, in `rounds` rounds of one short run each.

    Both letters live in the same database behind the same server. The machine's speed drifts
    by tens of percent between runs seconds apart, so every round measures the two letters
    straight after each other and yields one ratio; the order swaps every round, so a steady
    drift lowers as many ratios as it raises. Each URL is warmed up once, before the first
    round, and every run's queued requests are answered before the next run starts.
    """
    found = []
    common = {"connections": load.connections, "threads": load.threads}
    for scenario, path in READS:
        pair = Paired(scenario, small.seeded, site.letter.seeded)
        both = [
            (site.base + path.format(slug=small.slug), pair.small_rates),
            (site.base + path.format(slug=site.letter.slug), pair.large_rates),
        ]
        for url, _ in both:
            wrk(url, "get.lua", seconds=load.warmup, **common)
            site.settle()
        for number in range(rounds):
            for url, rates in both if number % 2 == 0 else both[::-1]:
                result = wrk(url, "get.lua", seconds=seconds, **common)
                site.settle()
                rates.append(result.rate)
                pair.errors += result.errors
        found.append(pair)
    return found


def sign(site: Site, load: Load, hello: float) -> Row:
    """POST the sign form, each request a new address; then check the rows really exist."""
    row = Row("sign POST", site.database, site.letter.seeded, hello_rate=hello)
    path = f"/p/{site.letter.slug}/sign"

    def args_for(phase: str) -> list[str]:
        return [site.cookie, site.sign_fields, site.letter.slug, f"s{phase[0]}-{site.tag}"]

    site.wait_as_a_person_would()
    warm, row.result = measured(site, "sign.lua", load, path, args_for)
    with site.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT count(*) FROM signatures WHERE state = 'pending' AND email LIKE :tag"),
            {"tag": f"s_-{site.tag}-%"},
        ).scalar_one()
    answered = warm.successes + row.result.successes
    row.notes.append(f"{stored:,} pending signatures stored for {answered:,} answers")
    if stored < answered:
        row.problems.append(f"sign: {answered} answered 'check your email' but {stored} stored")
    return row


def confirm(site: Site, load: Load, hello: float, expected_rate: float) -> Row:
    """Confirm pre-made pending signatures through their links, each once; then check counts.

    Links are made for three times the sign rate (a confirmation is about as much work as a
    signature); if they run out, the rest of the requests fail and are reported as errors.
    """
    row = Row("confirm POST", site.database, site.letter.seeded, hello_rate=hello)
    per_second = max(3 * expected_rate, 50.0)
    margin = 4 * load.connections
    sizes = {
        "warm": int(per_second * load.warmup) + margin,
        "measure": int(per_second * load.duration) + margin,
    }
    links = data.make_pending(site.app, site.letter, sum(sizes.values()), site.tag)
    files = {}
    for phase, size in sizes.items():
        files[phase] = site.work_dir / f"links-{site.tag}-{phase}.txt"
        files[phase].write_text("\n".join(links[:size]) + "\n")
        links = links[size:]
    before = data.tally(site.engine, site.letter)

    def args_for(phase: str) -> list[str]:
        return [site.cookie, site.csrf_field, str(files[phase]), str(load.threads)]

    warm, row.result = measured(site, "confirm.lua", load, "/c/", args_for)
    after = data.tally(site.engine, site.letter)
    confirmed = after.confirmed_rows - before.confirmed_rows
    answered = warm.successes + row.result.successes
    in_flight = 2 * load.connections
    row.notes.append(
        f"{answered:,} confirmed answers, {confirmed:,} signatures confirmed,"
        f" counter {after.counter_total:,} = rows {after.confirmed_rows:,}"
    )
    if warm.exhausted or row.result.exhausted:
        row.notes.append(
            f"links ran out: {warm.exhausted} requests in the warm-up,"
            f" {row.result.exhausted} measured"
        )
    if not (answered <= confirmed <= answered + in_flight):
        row.problems.append(f"confirm: {answered} answers but {confirmed} confirmations")
    if after.counter_total != after.confirmed_rows:
        row.problems.append(
            f"confirm: counter says {after.counter_total}, rows say {after.confirmed_rows}"
        )
    if after.used_confirm_tokens - before.used_confirm_tokens != confirmed:
        row.problems.append("confirm: spent links and confirmed signatures differ")
    return row


@dataclass
class Mixed:
    """Signatures arriving at a fixed rate while readers fetch the letter page and its API
    count flat out."""

    rate: float
    seconds: float
    signer_connections: int
    signers: WrkResult
    readers: WrkResult
    hello_rate: float
    scheduled: int = 0
    queue_empty_after: float | None = None
    queue_left: int = 0
    worker_rss_mb: list[float] = field(default_factory=list)

    @property
    def kept_pace(self) -> bool:
        """Every scheduled arrival was answered, or was still in flight at the cut-off."""
        return self.scheduled - self.signers.successes <= self.signer_connections


def mixed(site: Site, load: Load, seconds: float, rate: float, hello: float) -> Mixed:
    """Two wrk processes at once: paced signers (one thread) and readers (one thread) of the
    letter page and its API count, in turn."""
    signer_connections = 128
    with ThreadPoolExecutor(2) as pool:
        signers = pool.submit(
            wrk,
            f"{site.base}/p/{site.letter.slug}/sign",
            "sign_paced.lua",
            seconds=seconds,
            connections=signer_connections,
            threads=1,
            args=[
                site.cookie,
                site.sign_fields,
                site.letter.slug,
                f"m-{site.tag}",
                str(rate),
                "1",
                "",
            ],
        )
        readers = pool.submit(
            wrk,
            f"{site.base}/p/{site.letter.slug}",
            "get.lua",
            seconds=seconds,
            connections=load.connections,
            threads=1,
            args=[path.format(slug=site.letter.slug) for path in MIXED_READS],
        )
        result = Mixed(rate, seconds, signer_connections, signers.result(), readers.result(), hello)
    site.settle()
    result.scheduled = math.floor(rate * result.signers.seconds)
    return result


def wait_for_empty_outbox(engine: Engine, limit: float) -> tuple[float | None, int]:
    """Seconds until the outbox has nothing queued (None: not within `limit`), and what is left."""
    start = time.monotonic()
    while True:
        left = data.queued_mail(engine)
        waited = time.monotonic() - start
        if left == 0:
            return waited, 0
        if waited >= limit:
            return None, left
        time.sleep(0.5)


@dataclass
class EmailLatency:
    """Seconds from a signature's request to its confirmation email reaching the sink."""

    rate: float
    seconds: float
    signatures: int
    delivered: int
    p50: float
    p99: float
    worst: float


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; infinity stands for a message that never arrived."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def email_latency(site: Site, seconds: float, rate: float, wait_limit: float = 60) -> EmailLatency:
    """Sign at `rate`, log each address's send time, and match it to its arrival at the sink."""
    prefix = site.work_dir / f"sent-{site.tag}"
    tag = f"e-{site.tag}"
    wrk(
        f"{site.base}/p/{site.letter.slug}/sign",
        "sign_paced.lua",
        seconds=seconds,
        connections=8,
        threads=1,
        args=[site.cookie, site.sign_fields, site.letter.slug, tag, str(rate), "1", str(prefix)],
    )
    logged: dict[str, float] = {}
    for log in site.work_dir.glob(f"{prefix.name}-*.log"):
        for line in log.read_text().splitlines():
            stamp, _, address = line.partition(" ")
            logged[address] = float(stamp)
    # A request still unsent or unanswered when wrk stopped made no signature; count only
    # those the app stored (the address is kept while a signature is pending).
    with site.engine.connect() as connection:
        stored = set(
            connection.scalars(
                text("SELECT email FROM signatures WHERE email LIKE :tag"), {"tag": f"{tag}-%"}
            )
        )
    sent = {address: stamp for address, stamp in logged.items() if address in stored}
    deadline = time.monotonic() + wait_limit
    arrived = smtp_sink.arrivals(site.sink_log, tag)
    while len(arrived) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.5)
        arrived = smtp_sink.arrivals(site.sink_log, tag)
    delays = [arrived.get(address, math.inf) - stamp for address, stamp in sent.items()]
    return EmailLatency(
        rate=rate,
        seconds=seconds,
        signatures=len(sent),
        delivered=sum(1 for d in delays if d != math.inf),
        p50=percentile(delays, 50),
        p99=percentile(delays, 99),
        worst=max(delays, default=math.nan),
    )
