"""Sharded counters: the verified counts, readable in constant time, writable without a hot row."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from petitions.db import Base


class PetitionCounter(Base):
    """One shard of one count of one letter.

    A count is the sum of its shards. Each confirmation adds to a random shard, so
    concurrent confirmations rarely wait on the same row; a page reads a few rows.
    Buckets: ``total``, ``supporters``, ``employer:<id>:<affiliation>``, ``threshold:<id>``.
    """

    __tablename__ = "petition_counters"

    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(40), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
