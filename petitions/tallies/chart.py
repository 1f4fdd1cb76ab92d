"""The growth chart: cumulative verified signatures over time, drawn as SVG on the server.

No JavaScript and no stylesheet: presentation attributes only, so the chart reads the same
as a standalone image, inside an <img>, and under a strict Content-Security-Policy. The
y axis takes round steps (1, 2 or 5 times a power of ten), so a letter with one signature
and one with 100,000 both get a handful of whole-number gridlines.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from petitions.models import CountSnapshot, Petition
from petitions.tallies import summary as tallies
from petitions.tallies.counts import Counts

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 56, 40
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
INK, MUTED, GRID = "#1f2933", "#52606d", "#e4e7eb"
TOTAL_COLOUR = "#3538cd"
#: colour and dash for each company line; dashes tell them apart without colour
COMPANY_STYLES = (
    ("#c4320a", "8 4"),
    ("#067647", "2 4"),
    ("#6927da", "12 4 2 4"),
    ("#b42318", "4 4"),
    ("#0e7090", "16 4"),
    ("#93370d", "2 2"),
)
MIN_SPAN = timedelta(hours=1)
#: (step, label format) for the time axis, smallest first
TIME_STEPS = (
    (timedelta(hours=1), "%H:%M"),
    (timedelta(hours=3), "%H:%M"),
    (timedelta(hours=6), "%H:%M"),
    (timedelta(hours=12), "%d %b %H:%M"),
    (timedelta(days=1), "%d %b"),
    (timedelta(days=2), "%d %b"),
    (timedelta(days=7), "%d %b"),
    (timedelta(days=14), "%d %b"),
)


@dataclass
class Line:
    """One series: the total, or one company's verified employees."""

    label: str
    points: list[tuple[datetime, int]] = field(default_factory=list)

    @property
    def last(self) -> int:
        """The latest value."""
        return self.points[-1][1] if self.points else 0


@dataclass
class Chart:
    """What the chart shows: the total and (with several companies) one line per company."""

    title: str
    start: datetime
    end: datetime
    total: Line
    companies: list[Line] = field(default_factory=list)
    #: companies left out to keep the chart legible
    hidden_companies: int = 0

    @property
    def summary(self) -> str:
        """The chart in one sentence, for alt text and <desc>."""
        total = self.total
        first = total.points[0][1] if total.points else 0
        text = (
            f"Verified signatures over time: {first:,} on {_day(self.start)},"
            f" {total.last:,} on {_moment(self.end)}."
        )
        if self.companies:
            parts = ", ".join(f"{line.label} {line.last:,}" for line in self.companies)
            text += f" By company: {parts}."
        if self.hidden_companies:
            text += f" {self.hidden_companies} smaller companies are not drawn."
        return text

    def svg(self) -> str:
        """The chart as a standalone SVG document."""
        return _draw(self)


MAX_COMPANY_LINES = len(COMPANY_STYLES)


def end_of(petition: Petition, now: datetime) -> datetime:
    """Where a letter's chart ends: when it closed, or now."""
    assert petition.published_at is not None
    end = petition.closed_at if petition.is_closed and petition.closed_at else now
    return max(end, petition.published_at)


def build(petition: Petition, rows: list[CountSnapshot], current: Counts, now: datetime) -> Chart:
    """The chart of a letter: 0 at publication, the recorded history, and the counts now.

    A closed letter's chart ends when it closed. Domains of one company share a line;
    company lines are drawn only when there are several companies, the largest first.
    """
    assert petition.published_at is not None
    start, end = petition.published_at, end_of(petition, now)
    domains_of = tallies.companies(petition)
    total = Line("All verified", [(start, 0)])
    lines = {name: Line(name, [(start, 0)]) for name in domains_of}
    for row in rows:
        moment = min(row.recorded_at, end)
        total.points.append((moment, row.total))
        for name, domains in domains_of.items():
            lines[name].points.append((moment, sum(row.employee_total(d) for d in domains)))
    total.points.append((end, current.total))
    for tally in tallies.by_company(petition, current):
        lines[tally.company].points.append((end, tally.total))

    companies = sorted(lines.values(), key=lambda line: (-line.last, line.label))
    if len(companies) < 2:
        companies = []
    return Chart(
        title=f"Verified signatures over time: {petition.title}",
        start=start,
        end=end,
        total=total,
        companies=companies[:MAX_COMPANY_LINES],
        hidden_companies=max(0, len(companies) - MAX_COMPANY_LINES),
    )


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d %b %Y").lstrip("0")


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d %b %Y %H:%M UTC").lstrip("0")


def compact(number: float) -> str:
    """A tick label: 950, 1.5k, 20k, 1.2M."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(number) >= size:
            value = number / size
            return f"{value:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{int(number):,}"


def value_ticks(highest: int) -> list[int]:
    """Whole-number gridlines from 0 up to at least `highest`: at most six, in 1-2-5 steps."""
    highest = max(highest, 1)
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if math.ceil(highest / step) <= 5:
                return list(range(0, math.ceil(highest / step) * step + 1, step))
        power *= 10


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Round moments between start and end, with their labels (UTC)."""
    span = end - start
    chosen = next(((step, fmt) for step, fmt in TIME_STEPS if span / step <= 6), None)
    if chosen is None:
        return _month_ticks(start, end)
    step, fmt = chosen
    moment = start.replace(hour=0, minute=0, second=0, microsecond=0)
    ticks = []
    while moment <= end:
        if moment >= start:
            label = moment.strftime(fmt)
            ticks.append((moment, label.lstrip("0") if fmt.startswith("%d") else label))
        moment += step
    return ticks


def _month_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    months = (end.year - start.year) * 12 + end.month - start.month
    every = next(n for n in (1, 2, 3, 6, 12, 24, 60) if months / n <= 6)
    year, month = start.year, start.month
    ticks = []
    while True:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        moment = datetime(year, month, 1, tzinfo=UTC)
        if moment > end:
            return ticks
        if (year * 12 + month - 1) % every == 0:
            label = "%Y" if every >= 12 else "%b %Y"
            ticks.append((moment, moment.strftime(label)))


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    element = ET.SubElement(
        parent, tag, {key.rstrip("_").replace("_", "-"): str(v) for key, v in attrs.items()}
    )
    if text is not None:
        element.text = text
    return element


def _legend(chart: Chart) -> list[tuple[Line, str, str | None, int, float, float]]:
    """Each line with its colour, dash, width and legend position, wrapping into rows."""
    styled = [(chart.total, TOTAL_COLOUR, None, 3)] + [
        (line, colour, dash, 2)
        for line, (colour, dash) in zip(chart.companies, COMPANY_STYLES, strict=False)
    ]
    placed = []
    left, row = LEFT, 0
    for line, colour, dash, width in styled:
        item_width = 40 + 7 * len(_legend_label(line))
        if left + item_width > WIDTH - RIGHT and left > LEFT:
            left, row = LEFT, row + 1
        placed.append((line, colour, dash, width, left, 20.0 + 18 * row))
        left += item_width
    return placed


def _legend_label(line: Line) -> str:
    label = line.label if len(line.label) <= 24 else line.label[:23] + "…"
    return f"{label} ({compact(line.last)})"


def _draw(chart: Chart) -> str:
    legend = _legend(chart)
    top_margin = legend[-1][5] + 22
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top_margin - BOTTOM
    start, end = chart.start, max(chart.end, chart.start + MIN_SPAN)
    seconds = (end - start).total_seconds()
    ticks = value_ticks(max((v for _, v in chart.total.points), default=0))
    top = ticks[-1]

    def x(moment: datetime) -> str:
        share = min(max((moment - start).total_seconds() / seconds, 0.0), 1.0)
        return f"{LEFT + plot_w * share:.1f}"

    def y(value: int) -> str:
        return f"{top_margin + plot_h * (1 - value / top):.1f}"

    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "role": "img",
            "aria-labelledby": "chart-title chart-desc",
            "font-family": FONT,
            "font-size": "12",
        },
    )
    _element(svg, "title", chart.title, id="chart-title")
    _element(svg, "desc", chart.summary, id="chart-desc")
    _element(svg, "rect", x=0, y=0, width=WIDTH, height=HEIGHT, fill="#ffffff")

    grid = _element(svg, "g", stroke=GRID, stroke_width=1)
    value_labels = _element(svg, "g", fill=MUTED, text_anchor="end")
    for value in ticks:
        _element(grid, "line", x1=LEFT, x2=WIDTH - RIGHT, y1=y(value), y2=y(value))
        _element(value_labels, "text", compact(value), x=LEFT - 8, y=f"{float(y(value)) + 4:.1f}")
    time_labels = _element(svg, "g", fill=MUTED, text_anchor="middle")
    for moment, label in time_ticks(start, end):
        _element(grid, "line", x1=x(moment), x2=x(moment), y1=top_margin, y2=top_margin + plot_h)
        _element(time_labels, "text", label, x=x(moment), y=HEIGHT - BOTTOM + 18)
    _element(svg, "text", "UTC", x=WIDTH - RIGHT, y=HEIGHT - 6, fill=MUTED, text_anchor="end")
    _element(svg, "line", x1=LEFT, x2=WIDTH - RIGHT, y1=y(0), y2=y(0), stroke=MUTED)

    keys = _element(svg, "g", fill=INK)
    # Companies first, so the total is drawn on top of them.
    for line, colour, dash, width, left, baseline in [*legend[1:], legend[0]]:
        stroke: dict[str, object] = {"stroke": colour, "stroke_width": width}
        if dash:
            stroke["stroke_dasharray"] = dash
        if line.points:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{x(moment)},{y(value)}"
                for i, (moment, value) in enumerate(line.points)
            )
            _element(svg, "path", d=path, fill="none", stroke_linejoin="round", **stroke)
        _element(keys, "line", x1=left, x2=left + 22, y1=baseline - 4, y2=baseline - 4, **stroke)
        _element(keys, "text", _legend_label(line), x=left + 28, y=baseline)
    return ET.tostring(svg, encoding="unicode")
