"""Address checks and one-time codes: the quick paths give what the slow ones give."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from email_validator import EmailNotValidError, validate_email

from petitions import hashing as tokens
from petitions.fields import normalized_address

PREFIX = "That email address does not look right: "

TRICKY = [
    "jo@example.com",
    "Jo.Smith@Example.COM",
    "jo+tag@sub.example.co.uk",
    "o'neil@example.ie",
    "a!#$%&'*+/=?^_`{|}~-z@example.com",
    ".jo@example.com",
    "jo.@example.com",
    "jo..smith@example.com",
    "jo@example..com",
    "jo@-example.com",
    "jo@example-.com",
    "jo@example.com.",
    "jo@.example.com",
    "jo@localhost",
    "jo@example",
    "jo@example.test",
    "jo@example.invalid",
    "jo@123.123.123.123",
    "jo@[123.123.123.123]",
    "jo@xn--bcher-kva.example",
    "jo@xn--.example",
    "jo@e_xample.com",
    '"jo smith"@example.com',
    "jörg@example.com",
    "jo@bücher.example",
    "jo@@example.com",
    "@example.com",
    "jo@",
    "jo",
    "",
    "jo@example.c",
    "jo@example.123",
    "jo@" + "a" * 63 + ".com",
    "jo@" + "a" * 64 + ".com",
    "j" * 64 + "@example.com",
    "j" * 65 + "@example.com",
    "j" * 60 + "@" + ".".join(["a" * 60] * 3) + ".com",
    "j" * 10 + "@" + ".".join(["a" * 60] * 4) + ".com",
    "jo@EXAMPLE.com",
    "jo@Example.Com",
]


def _slow(text: str) -> str:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        return f"refused: {exc}"


def _quick(text: str) -> str:
    try:
        return normalized_address(text)
    except ValueError as exc:
        return f"refused: {str(exc).removeprefix(PREFIX)}"


def _fuzzed(count: int) -> list[str]:
    usual = ["jo", "a", "Z9", "smith", "-", ".", "_", "+x"]
    odd = ["..", "@", "ü", " ", "'", '"', "xn--", "(", "\\", "é"]
    rng = random.Random(20261126)

    def part() -> str:
        return "".join(
            rng.choice(odd if rng.random() < 0.08 else usual) for _ in range(rng.randint(0, 5))
        )

    return [
        f"{part()}@{part()}.{rng.choice(['com', 'org', 'test', 'c0', 'uk', 'Com'])}"
        for _ in range(count)
    ]


@pytest.mark.parametrize("text", TRICKY)
def test_an_address_is_judged_as_email_validator_judges_it(text):
    assert _quick(text) == _slow(text)
    assert _quick(text) == _slow(text)  # again, now that its domain's verdict is kept


def test_fuzzed_addresses_are_judged_as_email_validator_judges_them():
    corpus = _fuzzed(3000)
    verdicts = [(_quick(text), _slow(text)) for text in corpus]
    assert [quick for quick, _ in verdicts] == [slow for _, slow in verdicts]
    # The corpus holds both kinds, or it would prove little.
    accepted = sum(not slow.startswith("refused") for _, slow in verdicts)
    assert 100 < accepted < len(corpus) - 100


def test_codes_use_the_whole_alphabet_evenly():
    letters = Counter("".join(tokens.new_code() for _ in range(4000)))
    assert set(letters) == set(tokens.CODE_ALPHABET)
    expected = 4000 * tokens.CODE_LENGTH / len(tokens.CODE_ALPHABET)
    assert all(abs(seen - expected) < 0.2 * expected for seen in letters.values())
    assert len(tokens.new_code(tokens.LONG_CODE_LENGTH)) == 16
