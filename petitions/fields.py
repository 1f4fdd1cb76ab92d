"""Validators and field helpers shared by the forms."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from disposable_email_domains import blocklist as disposable_blocklist
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from wtforms import (
    EmailField,
    PasswordField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
    Optional,
    ValidationError,
)

from petitions.accounts import passwords

#: the C0 control characters but tab, line feed and carriage return
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def has_control_chars(text: str) -> bool:
    """Whether `text` holds control characters other than line breaks and tabs."""
    return _CONTROL_CHARS.search(text) is not None


def no_control_chars(_form: Any, field: Any) -> None:
    if field.data and has_control_chars(field.data):
        raise ValidationError("Please remove the invisible control characters.")


def strip_text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def normalized_address(text: str) -> str:
    """The normalized form of an address whose syntax is right (no DNS lookups); ValueError,
    with the message shown to the person, when it is not."""
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"That email address does not look right: {exc}") from None


def is_disposable(address: str) -> bool:
    """Whether the address is at a throwaway-mail domain (or a subdomain of one)."""
    parts = address.rpartition("@")[2].casefold().split(".")
    return any(".".join(parts[start:]) in disposable_blocklist for start in range(len(parts) - 1))


class RealEmail:
    """Validate an address's syntax (no DNS lookups) and store its normalized form."""

    def __call__(self, _form: Any, field: Any) -> None:
        if not field.data:
            return
        try:
            field.data = normalized_address(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class NotDisposable:
    """Refuse addresses at throwaway-mail domains (and their subdomains)."""

    def __call__(self, _form: Any, field: Any) -> None:
        domain = (field.data or "").rpartition("@")[2].casefold()
        if is_disposable(domain):
            raise ValidationError(
                f"Addresses at {domain} are disposable, so they prove nothing. Please use your"
                " work address (or your own personal address, to sign as a supporter)."
            )


def email_field(label: str, required: bool = True, disposable_ok: bool = True) -> EmailField:
    checks = [DataRequired()] if required else [Optional()]
    extra = [] if disposable_ok else [NotDisposable()]
    return EmailField(
        label,
        filters=[strip_text],
        validators=[*checks, Length(max=254), no_control_chars, RealEmail(), *extra],
    )


def _stamps() -> URLSafeTimedSerializer:
    """The signer of the sign form's "shown at" stamps."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="sign-form")


def form_started() -> str:
    """The signed "form shown at" stamp."""
    return _stamps().dumps(1)


def bot_problem(website: str | None, started: str | None) -> str | None:
    """Why a sign form looks sent by a bot (honeypot filled, stamp forged or old, sent back
    faster than anyone reads), or None."""
    if website:
        return "This form could not be accepted."
    try:
        _, shown_at = _stamps().loads(started or "", return_timestamp=True)
    except BadData:
        return "This form is out of date. Please reload the page."
    elapsed = (datetime.now(UTC) - shown_at).total_seconds()
    if elapsed < current_app.config["SIGN_MIN_SECONDS"]:
        return (
            "That was faster than anyone can read the letter. Please check the form and"
            " press Sign again."
        )
    return None


class FilledByAPerson:
    """Bots fill the hidden honeypot field, or send the form back faster than anyone reads it."""

    def __call__(self, form: Any, field: Any) -> None:
        problem = bot_problem(form.website.data, field.data)
        if problem:
            raise ValidationError(problem)


_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def parse_employers(text: str) -> dict[str, str]:
    """Parse "domain Company name" lines into {domain: name}; ValueError says what is wrong."""
    employers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        domain, _, name = line.replace("=", " ").partition(" ")
        domain = domain.strip().lstrip("@").rstrip(".").lower()
        name = name.strip()
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"Line {number}: {domain!r} is not a domain.") from None
        if not _DOMAIN.match(domain):
            raise ValueError(f"Line {number}: {domain!r} is not a domain like microsoft.com.")
        if not name or len(name) > 100:
            raise ValueError(f"Line {number}: give the company's name after the domain.")
        if domain in employers:
            raise ValueError(f"Line {number}: {domain} is listed twice.")
        employers[domain] = name
    if len(employers) > 50:
        raise ValueError("List at most 50 companies.")
    return employers


def format_employers(employers: dict[str, str]) -> str:
    """The textarea form of an employer list."""
    return "\n".join(f"{domain} {name}" for domain, name in employers.items())


class StrongPassword:
    """A new password: long enough, not common, not the address."""

    def __call__(self, form: Any, field: Any) -> None:
        email_field = getattr(form, "email", None)
        problem = passwords.problem_with(
            field.data or "", email=email_field.data if email_field else None
        )
        if problem:
            raise ValidationError(problem)


def new_password_fields() -> tuple[PasswordField, PasswordField]:
    return (
        PasswordField("New password", validators=[DataRequired(), StrongPassword()]),
        PasswordField(
            "Repeat the new password",
            validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
        ),
    )
