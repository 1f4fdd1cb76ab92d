"""Password rules (OWASP ASVS 5): length, not a common password, no composition rules."""

from __future__ import annotations

from functools import cache

MIN_LENGTH = 8
MAX_LENGTH = 256


@cache
def _common() -> frozenset[str]:
    # zxcvbn ships the 30,000 most common passwords from public breach corpora.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def problem_with(password: str, *, email: str | None = None) -> str | None:
    """Why this password may not be used, or None when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters. A few random words make a good passphrase."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if password.casefold() in _common():
        return "That password is on lists of the most common passwords. Please choose another."
    if email and password.casefold() in {email.casefold(), email.split("@")[0].casefold()}:
        return "Your password must not be your email address."
    return None
