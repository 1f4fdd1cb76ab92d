"""One-time codes: drawn from the whole alphabet, evenly."""

from __future__ import annotations

from collections import Counter

from petitions import hashing


def test_codes_use_the_whole_alphabet_evenly():
    letters = Counter("".join(hashing.new_code() for _ in range(4000)))
    assert set(letters) == set(hashing.CODE_ALPHABET)
    expected = 4000 * hashing.CODE_LENGTH / len(hashing.CODE_ALPHABET)
    assert all(abs(seen - expected) < 0.2 * expected for seen in letters.values())
    assert len(hashing.new_code(hashing.LONG_CODE_LENGTH)) == 16
