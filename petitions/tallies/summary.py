"""A letter's numbers as the public sees them: per company, per employer domain, over time.

Several domains may belong to one company (`github.com` and `microsoft.com` both as
Microsoft): pages and the chart add them up per company; the API and the CSV keep them
per domain, with the company named.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from petitions.models import CountSnapshot, Petition
from petitions.tallies.counts import Counts

AFFILIATIONS = ("current", "former", "contractor")


@dataclass
class CompanyTally:
    """Verified employees of one company (or of one of its domains)."""

    company: str
    domains: list[str] = field(default_factory=list)
    current: int = 0
    former: int = 0
    contractor: int = 0

    @property
    def total(self) -> int:
        """Everyone verified at the company, whatever their affiliation."""
        return self.current + self.former + self.contractor


def by_domain(petition: Petition, counts: Counts) -> list[CompanyTally]:
    """One tally per employer domain, in the letter's order (alphabetical by domain)."""
    tallies = []
    for employer in petition.domains:
        count = counts.employer(employer.id)
        tallies.append(
            CompanyTally(
                employer.company_name,
                [employer.domain],
                count.current,
                count.former,
                count.contractor,
            )
        )
    return tallies


def recorded_by_domain(petition: Petition, row: CountSnapshot) -> list[CompanyTally]:
    """One tally per employer domain, as a history row recorded them."""
    tallies = []
    for employer in petition.domains:
        split = row.employees.get(employer.domain) or {}
        tallies.append(
            CompanyTally(
                employer.company_name,
                [employer.domain],
                *(int(split.get(affiliation, 0)) for affiliation in AFFILIATIONS),
            )
        )
    return tallies


def by_company(petition: Petition, counts: Counts) -> list[CompanyTally]:
    """One tally per company name, its domains added up, in order of first listing."""
    companies: dict[str, CompanyTally] = {}
    for tally in by_domain(petition, counts):
        company = companies.setdefault(tally.company, CompanyTally(tally.company))
        company.domains += tally.domains
        company.current += tally.current
        company.former += tally.former
        company.contractor += tally.contractor
    return list(companies.values())


def companies(petition: Petition) -> dict[str, list[str]]:
    """Each company name with its domains."""
    names: dict[str, list[str]] = {}
    for employer in petition.domains:
        names.setdefault(employer.company_name, []).append(employer.domain)
    return names


@dataclass
class HistoryLine:
    """One recorded row, with employees added up per company."""

    snapshot: CountSnapshot
    #: verified employees per company, in the order of `companies()`
    per_company: list[int]


def history_lines(petition: Petition, rows: list[CountSnapshot]) -> list[HistoryLine]:
    """History rows with their per-company totals, in the order given."""
    names = companies(petition)
    return [
        HistoryLine(
            row,
            [sum(row.employee_total(domain) for domain in domains) for domains in names.values()],
        )
        for row in rows
    ]


def history_csv(petition: Petition, rows: list[CountSnapshot]) -> str:
    """History rows as CSV: when, why, the totals, then four columns per employer domain."""
    domains = [employer.domain for employer in petition.domains]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = ["recorded_at", "kind", "milestone", "total", "supporters"]
    for domain in domains:
        header += [f"{domain} {part}" for part in ("total", *AFFILIATIONS)]
    writer.writerow(header)
    for row in rows:
        line: list[object] = [
            row.recorded_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            row.kind,
            row.milestone or "",
            row.total,
            row.supporters,
        ]
        for domain in domains:
            split = row.employees.get(domain) or {}
            line += [row.employee_total(domain), *(int(split.get(a, 0)) for a in AFFILIATIONS)]
        writer.writerow(line)
    return out.getvalue()
