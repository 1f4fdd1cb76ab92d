"""Verified counts: add to a shard on confirm and withdraw, read by summing a few rows."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from petitions.models import Display, Petition, PetitionCounter, Signature, SignatureState

TOTAL = "total"
SUPPORTERS = "supporters"


def buckets_for(signature: Signature) -> list[str]:
    """Every count a confirmed signature is part of."""
    return bucket_names(signature.employer_id, signature.affiliation, signature.display)


def bucket_names(employer_id: int | None, affiliation: str, display: str) -> list[str]:
    """Every count a confirmed signature with these facts is part of."""
    found = [TOTAL]
    if employer_id is None:
        found.append(SUPPORTERS)
    else:
        found.append(f"employer:{employer_id}:{affiliation}")
        if display == Display.THRESHOLD:
            found.append(f"threshold:{employer_id}")
    return found


def add(session: Session, petition_id: int, buckets: list[str], delta: int) -> None:
    """Add `delta` to each bucket, on one random shard, with one atomic multi-row upsert."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    shard = random.randrange(current_app.config["COUNTER_SHARDS"])
    # Sorted, so two transactions touching the same rows lock them in the same order.
    statement = insert(PetitionCounter).values(
        [
            {"petition_id": petition_id, "bucket": bucket, "shard": shard, "value": delta}
            for bucket in sorted(buckets)
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["petition_id", "bucket", "shard"],
            set_={"value": PetitionCounter.value + statement.excluded.value},
        )
    )


@dataclass
class EmployerCount:
    """Verified employees of one company on one letter."""

    current: int = 0
    former: int = 0
    contractor: int = 0
    threshold: int = 0

    @property
    def total(self) -> int:
        """All verified employees, whatever their affiliation."""
        return self.current + self.former + self.contractor


@dataclass
class Counts:
    """Everything a letter's page shows about its numbers."""

    total: int = 0
    supporters: int = 0
    employers: dict[int, EmployerCount] = field(default_factory=lambda: defaultdict(EmployerCount))

    def employer(self, employer_id: int) -> EmployerCount:
        """The count of one company, zero when no one signed from it."""
        return self.employers[employer_id]


def _parse(sums: dict[str, int]) -> Counts:
    counts = Counts(total=sums.get(TOTAL, 0), supporters=sums.get(SUPPORTERS, 0))
    for bucket, value in sums.items():
        kind, _, rest = bucket.partition(":")
        if kind == "employer":
            employer_id, _, affiliation = rest.partition(":")
            setattr(counts.employers[int(employer_id)], affiliation, value)
        elif kind == "threshold":
            counts.employers[int(rest)].threshold = value
    return counts


def read(session: Session, petition_id: int) -> Counts:
    """The letter's counts, from its counter rows: cost independent of the number of signatures."""
    rows = session.execute(
        select(PetitionCounter.bucket, func.sum(PetitionCounter.value))
        .where(PetitionCounter.petition_id == petition_id)
        .group_by(PetitionCounter.bucket)
    )
    return _parse({bucket: int(total) for bucket, total in rows})


def read_totals(session: Session, petition_ids: list[int]) -> dict[int, int]:
    """The verified total of several letters at once."""
    if not petition_ids:
        return {}
    rows = session.execute(
        select(PetitionCounter.petition_id, func.sum(PetitionCounter.value))
        .where(PetitionCounter.petition_id.in_(petition_ids), PetitionCounter.bucket == TOTAL)
        .group_by(PetitionCounter.petition_id)
    )
    return {petition_id: int(total) for petition_id, total in rows}


def expected_sums(session: Session, petition_id: int) -> dict[str, int]:
    """What every bucket should hold, counted from the signature rows (slow; for recount)."""
    sums: dict[str, int] = defaultdict(int)
    rows = session.execute(
        select(Signature.employer_id, Signature.affiliation, Signature.display, func.count())
        .where(Signature.petition_id == petition_id, Signature.state == SignatureState.CONFIRMED)
        .group_by(Signature.employer_id, Signature.affiliation, Signature.display)
    )
    for employer_id, affiliation, display, number in rows:
        for bucket in bucket_names(employer_id, affiliation, display):
            sums[bucket] += number
    return dict(sums)


def recount(session: Session) -> list[str]:
    """Check every letter's counts against its signatures, repair drift, and say what was fixed."""
    fixes: list[str] = []
    if session.get_bind().dialect.name == "postgresql":
        # Confirmations wait while we compare and rewrite; SQLite's writer lock does the same.
        session.execute(text("LOCK TABLE petition_counters IN EXCLUSIVE MODE"))
    for petition in session.scalars(select(Petition).order_by(Petition.id)):
        stored = {
            bucket: int(total)
            for bucket, total in session.execute(
                select(PetitionCounter.bucket, func.sum(PetitionCounter.value))
                .where(PetitionCounter.petition_id == petition.id)
                .group_by(PetitionCounter.bucket)
            )
        }
        expected = expected_sums(session, petition.id)
        drift = {
            bucket: (stored.get(bucket, 0), expected.get(bucket, 0))
            for bucket in sorted(set(stored) | set(expected))
            if stored.get(bucket, 0) != expected.get(bucket, 0)
        }
        if not drift:
            continue
        for bucket, (was, now) in drift.items():
            fixes.append(f"letter {petition.id} ({petition.title!r}) {bucket}: {was} -> {now}")
        session.execute(delete(PetitionCounter).where(PetitionCounter.petition_id == petition.id))
        session.add_all(
            PetitionCounter(petition_id=petition.id, bucket=bucket, shard=0, value=value)
            for bucket, value in expected.items()
        )
        session.flush()
    return fixes
