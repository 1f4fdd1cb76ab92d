"""For other sites: a count badge, an embeddable widget, and the Atom feed.

The widget is the one page any site may frame: it sets its own Content-Security-Policy
(`frame-ancestors *`), which the site-wide header hook leaves alone, and carries no form,
no cookie and no script.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, make_response, render_template, url_for

from petitions.caching import conditional
from petitions.db import get_session
from petitions.delivery import timeline
from petitions.models import Petition
from petitions.public.views import published
from petitions.security import EMBEDDABLE_POLICY
from petitions.tallies import counts, feed

bp = Blueprint("embed", __name__)

#: what XML 1.0 cannot carry at all, even escaped
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: shown as the feed's date while it has no entries
FEED_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BADGE_FONT = "Verdana, DejaVu Sans, Geneva, sans-serif"


@bp.app_template_filter("xml_safe")
def xml_safe(text: object) -> str:
    """Drop the characters XML cannot carry (letters may hold pasted control characters)."""
    return _NOT_XML.sub("", str(text))


@bp.app_template_filter("atom_time")
def atom_time(moment: datetime) -> str:
    """An RFC 3339 UTC timestamp, as Atom wants."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _absolute(endpoint: str, **values: object) -> str:
    return current_app.config["PUBLIC_URL"] + url_for(endpoint, **values)


def _signatures(total: int) -> str:
    return f"{total:,} verified {'signature' if total == 1 else 'signatures'}"


def badge_svg(label: str, value: str) -> str:
    """A two-part badge, "Undersigned | 1,234 verified signatures", as standalone SVG."""
    left, right = 12 + 7 * len(label), 12 + 7 * len(value)
    width, height = left + right, 20
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(width),
            "height": str(height),
            "viewBox": f"0 0 {width} {height}",
            "role": "img",
            "aria-label": f"{label}: {value}",
        },
    )
    ET.SubElement(svg, "title").text = f"{label}: {value}"
    ET.SubElement(svg, "rect", width=str(left), height=str(height), rx="3", fill="#1f2933")
    ET.SubElement(svg, "rect", x=str(left), width=str(right), height=str(height), fill="#3538cd")
    ET.SubElement(svg, "rect", x=str(left - 3), width="6", height=str(height), fill="#3538cd")
    ET.SubElement(
        svg, "rect", x=str(width - 6), width="6", height=str(height), rx="3", fill="#3538cd"
    )
    text = ET.SubElement(
        svg,
        "g",
        {
            "fill": "#ffffff",
            "font-family": BADGE_FONT,
            "font-size": "11",
            "text-anchor": "middle",
        },
    )
    ET.SubElement(text, "text", x=str(left / 2), y="14").text = label
    ET.SubElement(text, "text", x=str(left + right / 2), y="14").text = value
    return ET.tostring(svg, encoding="unicode")


@bp.get("/p/<slug>/badge.svg")
def badge(slug: str) -> Response:
    """The letter's live count as an SVG badge, for READMEs and web pages."""
    petition = published(slug)
    total = counts.read_totals(get_session(), [petition.id]).get(petition.id, 0)
    svg = badge_svg(str(current_app.jinja_env.globals["site_name"]), _signatures(total))
    return conditional(Response(svg, mimetype="image/svg+xml"))


@bp.get("/p/<slug>/widget")
def widget(slug: str) -> Response:
    """A small page with the count, the progress and a link to sign; any site may frame it."""
    petition: Petition = published(slug)
    total = counts.read_totals(get_session(), [petition.id]).get(petition.id, 0)
    html = render_template(
        "embed/widget.html",
        petition=petition,
        total=total,
        letter_url=_absolute("public.letter", slug=petition.slug),
    )
    response = make_response(html)
    response.headers["Content-Security-Policy"] = EMBEDDABLE_POLICY
    return conditional(response)


@bp.get("/feed.atom", endpoint="feed")
def feed_atom() -> Response:
    """An Atom feed of newly published letters and of milestones passed."""
    session = get_session()
    entries: list = [*feed.entries(session), *timeline.recent(session)]
    entries.sort(key=lambda entry: entry.updated, reverse=True)
    entries = entries[:50]
    public_url = current_app.config["PUBLIC_URL"]
    xml = render_template(
        "embed/feed.xml",
        entries=entries,
        updated=entries[0].updated if entries else FEED_EPOCH,
        feed_url=public_url + url_for("embed.feed"),
        home_url=public_url + url_for("public.index"),
        tag_authority=urlsplit(public_url).hostname or "undersigned",
        public_url=public_url,
    )
    return conditional(Response(xml, mimetype="application/atom+xml"))


@bp.get("/p/<slug>/timeline.atom")
def timeline_feed(slug: str) -> Response:
    """The letter's public timeline as Atom: the same entries as the page and the API."""
    petition = published(slug)
    events = timeline.events(get_session(), petition)
    public_url = current_app.config["PUBLIC_URL"]
    xml = render_template(
        "delivery/timeline.xml",
        petition=petition,
        events=events,
        updated=max((event.at for event in events), default=FEED_EPOCH),
        feed_url=public_url + url_for("embed.timeline_feed", slug=petition.slug),
        letter_url=public_url + url_for("public.letter", slug=petition.slug),
        home_url=public_url + url_for("public.index"),
        tag_authority=urlsplit(public_url).hostname or "undersigned",
    )
    return conditional(Response(xml, mimetype="application/atom+xml"))
