"""The delivery pack: a PDF to print and hand over, a CSV of the named signers and a
manifest.json, frozen when a delivery is recorded.

Only what the letter page already shows goes in: the text, the counts, and the signers shown
by name at that moment (no address, id, address hash or time of signing). The same snapshot
always gives the same CSV and manifest bytes, so the manifest's SHA-256 identifies a copy.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from operator import attrgetter

from flask import current_app, render_template, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from petitions.models import Display, Petition, Signature, SignatureState
from petitions.models.errors import DomainError
from petitions.tallies import counts, signers
from petitions.tallies import summary as tallies

FORMAT = "undersigned-delivery-pack/1"
#: a spreadsheet runs a cell that starts with one of these as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("name", "company", "affiliation", "job_title", "team")


@dataclass(frozen=True)
class NamedSigner:
    """One signer shown by name, with what the page shows beside the name."""

    name: str
    company: str
    affiliation: str
    job_title: str
    team: str


@dataclass(frozen=True)
class CompanyCount:
    """Verified employees of one company."""

    company: str
    current: int
    former: int
    contractor: int
    total: int


@dataclass(frozen=True)
class Snapshot:
    """Everything the pack holds, as it was when the delivery was recorded."""

    title: str
    addressed_to: str
    url: str
    text: str
    text_sha256: str
    delivered_to: str
    delivered_on: date
    total: int
    supporters: int
    companies: list[CompanyCount] = field(default_factory=list)
    signers: list[NamedSigner] = field(default_factory=list)


@dataclass(frozen=True)
class Pack:
    """The three files, the manifest's SHA-256, and the verified total they hold."""

    manifest_json: str
    signers_csv: str
    pdf: bytes
    sha256: str
    total: int


def text_sha256(petition: Petition) -> str:
    """The letter's version hash: SHA-256 of its title, addressee and text."""
    text = f"{petition.title}\n\n{petition.addressed_to}\n\n{petition.body_markdown}"
    return hashlib.sha256(text.encode()).hexdigest()


def named_signers(session: Session, petition: Petition, revealed: set[int]) -> list[NamedSigner]:
    """Signers shown by name now, sorted by company (supporters last), then name."""
    companies = {employer.id: employer.company_name for employer in petition.domains}
    rows = session.execute(
        select(
            Signature.name,
            Signature.employer_id,
            Signature.affiliation,
            Signature.job_title,
            Signature.team,
            Signature.display,
        ).where(
            Signature.petition_id == petition.id,
            Signature.state == SignatureState.CONFIRMED,
            Signature.display.in_([Display.NAMED, Display.THRESHOLD]),
            Signature.name.is_not(None),
        )
    )
    found = [
        NamedSigner(
            name=row.name,
            company=companies.get(row.employer_id, "") if row.employer_id else "",
            affiliation=str(row.affiliation) if row.employer_id else "supporter",
            job_title=row.job_title or "",
            team=row.team or "",
        )
        for row in rows
        if row.display == Display.NAMED or row.employer_id in revealed
    ]
    return sorted(
        found,
        key=lambda s: (not s.company, s.company.casefold(), s.name.casefold(), asdict(s)),
    )


def take_snapshot(
    session: Session, petition: Petition, delivered_to: str, delivered_on: date
) -> Snapshot:
    """Read the letter's numbers and named signers as they are now."""
    now_counts = counts.read(session, petition.id)
    return Snapshot(
        title=petition.title,
        addressed_to=petition.addressed_to,
        url=current_app.config["PUBLIC_URL"] + url_for("public.letter", slug=petition.slug),
        text=petition.body_markdown,
        text_sha256=text_sha256(petition),
        delivered_to=delivered_to,
        delivered_on=delivered_on,
        total=now_counts.total,
        supporters=now_counts.supporters,
        companies=[
            CompanyCount(c.company, c.current, c.former, c.contractor, c.total)
            for c in tallies.by_company(petition, now_counts)
        ],
        signers=named_signers(session, petition, signers.revealed_employers(petition, now_counts)),
    )


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading '."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def signers_csv(snapshot: Snapshot) -> str:
    """The named signers as CSV, one row each, in the snapshot's order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for signer in snapshot.signers:
        writer.writerow([neutralise(getattr(signer, column)) for column in CSV_COLUMNS])
    return out.getvalue()


def manifest_json(snapshot: Snapshot, csv_text: str) -> str:
    """The manifest: the letter, the date, the counts, and the CSV's SHA-256; keys sorted."""
    manifest = {
        "format": FORMAT,
        "letter": {
            "title": snapshot.title,
            "addressed_to": snapshot.addressed_to,
            "url": snapshot.url,
            "text": snapshot.text,
            "text_sha256": snapshot.text_sha256,
        },
        "delivered_to": snapshot.delivered_to,
        "date": snapshot.delivered_on.isoformat(),
        "counts": {
            "total": snapshot.total,
            "supporters": snapshot.supporters,
            "companies": [asdict(company) for company in snapshot.companies],
        },
        "named_signers": len(snapshot.signers),
        "signers_csv_sha256": hashlib.sha256(csv_text.encode()).hexdigest(),
    }
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_pdf(snapshot: Snapshot, sha256: str) -> bytes:
    """The printable letter: text, counts and named signers (WeasyPrint fetches nothing)."""
    groups = [
        (company, list(group))
        for company, group in itertools.groupby(snapshot.signers, key=attrgetter("company"))
    ]
    html = render_template("delivery/pack.html", snapshot=snapshot, groups=groups, sha256=sha256)
    # Imported here: WeasyPrint and its libraries cost each web worker tens of megabytes, and
    # only recording a delivery needs them.
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    except OSError:  # Pango is missing on this server
        raise DomainError(
            "This server cannot make the printable PDF yet (its PDF libraries are missing)."
            " Nothing was recorded; please tell the site's operators."
        ) from None

    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=())).write_pdf()


def build(session: Session, petition: Petition, delivered_to: str, delivered_on: date) -> Pack:
    """Make the pack of a delivery being recorded."""
    snapshot = take_snapshot(session, petition, delivered_to, delivered_on)
    csv_text = signers_csv(snapshot)
    manifest = manifest_json(snapshot, csv_text)
    sha256 = hashlib.sha256(manifest.encode()).hexdigest()
    return Pack(manifest, csv_text, render_pdf(snapshot, sha256), sha256, snapshot.total)
