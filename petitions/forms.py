"""Flask-WTF forms. Every state change goes through one of these, so every POST checks CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from disposable_email_domains import blocklist as disposable_blocklist
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from petitions import passwords
from petitions.models import Affiliation, Display, ReportKind


def _no_control_chars(_form: Any, field: Any) -> None:
    if field.data and any(ord(ch) < 32 and ch not in "\n\r\t" for ch in field.data):
        raise ValidationError("Please remove the invisible control characters.")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class RealEmail:
    """Validate an address's syntax (no DNS lookups) and store its normalized form."""

    def __call__(self, _form: Any, field: Any) -> None:
        if not field.data:
            return
        try:
            result = validate_email(field.data, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValidationError(f"That email address does not look right: {exc}") from None
        field.data = result.normalized


class NotDisposable:
    """Refuse addresses at throwaway-mail domains (and their subdomains)."""

    def __call__(self, _form: Any, field: Any) -> None:
        domain = (field.data or "").rpartition("@")[2].casefold()
        parts = domain.split(".")
        for start in range(len(parts) - 1):
            if ".".join(parts[start:]) in disposable_blocklist:
                raise ValidationError(
                    f"Addresses at {domain} are disposable, so they prove nothing. Please use your"
                    " work address (or your own personal address, to sign as a supporter)."
                )


def _email_field(label: str, required: bool = True, disposable_ok: bool = True) -> EmailField:
    checks = [DataRequired()] if required else [Optional()]
    extra = [] if disposable_ok else [NotDisposable()]
    return EmailField(
        label,
        filters=[_strip],
        validators=[*checks, Length(max=254), _no_control_chars, RealEmail(), *extra],
    )


def _form_started() -> str:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="sign-form").dumps(1)


class FilledByAPerson:
    """Bots fill the hidden honeypot field, or send the form back faster than anyone reads it."""

    def __call__(self, form: Any, field: Any) -> None:
        if form.website.data:
            raise ValidationError("This form could not be accepted.")
        serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="sign-form")
        try:
            _, shown_at = serializer.loads(field.data or "", return_timestamp=True)
        except BadData:
            raise ValidationError("This form is out of date. Please reload the page.") from None
        elapsed = (datetime.now(UTC) - shown_at).total_seconds()
        if elapsed < current_app.config["SIGN_MIN_SECONDS"]:
            raise ValidationError(
                "That was faster than anyone can read the letter. Please check the form and"
                " press Sign again."
            )


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


def _new_password_fields() -> tuple[PasswordField, PasswordField]:
    return (
        PasswordField("New password", validators=[DataRequired(), StrongPassword()]),
        PasswordField(
            "Repeat the new password",
            validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
        ),
    )


class EmptyForm(FlaskForm):
    """A one-button form: its only job is the CSRF token."""

    submit = SubmitField("Submit")


class RegisterForm(FlaskForm):
    """Organizer sign-up."""

    display_name = StringField(
        "Display name",
        filters=[_strip],
        validators=[DataRequired(), Length(max=80), _no_control_chars],
    )
    email = _email_field("Email", disposable_ok=False)
    password = PasswordField("Password", validators=[DataRequired(), StrongPassword()])
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")]
    )
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    """Organizer log-in."""

    email = _email_field("Email")
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me logged in on this device")
    submit = SubmitField("Log in")


class ResendAccountForm(FlaskForm):
    """Ask for a fresh account-confirmation link."""

    email = _email_field("Email")
    submit = SubmitField("Send a new link")


class ResetRequestForm(FlaskForm):
    """Ask for a password-reset link."""

    email = _email_field("Email")
    submit = SubmitField("Send me a reset link")


class ResetPasswordForm(FlaskForm):
    """Choose a new password through a reset link."""

    password, confirm = _new_password_fields()
    submit = SubmitField("Set the new password")


class ChangePasswordForm(FlaskForm):
    """Change the password; the current one is needed."""

    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)]
    )
    password, confirm = _new_password_fields()
    submit = SubmitField("Change password")


class ChangeEmailForm(FlaskForm):
    """Change the login address; the current password is needed, and the new address proven."""

    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)]
    )
    new_email = _email_field("New email address")
    submit = SubmitField("Send a confirmation link to the new address")


class LetterForm(FlaskForm):
    """Draft or edit a letter."""

    title = StringField(
        "Title", filters=[_strip], validators=[DataRequired(), Length(max=200), _no_control_chars]
    )
    addressed_to = StringField(
        "Addressed to",
        filters=[_strip],
        description='For example "Satya Nadella, CEO, Microsoft".',
        validators=[DataRequired(), Length(max=200), _no_control_chars],
    )
    body_markdown = TextAreaField(
        "Letter",
        description="Markdown: *emphasis*, **strong**, lists, links and headings.",
        validators=[DataRequired(), Length(max=50_000), _no_control_chars],
    )
    goal = IntegerField(
        "Signature goal (optional)",
        validators=[Optional(), NumberRange(min=1, max=100_000_000)],
    )
    employers = TextAreaField(
        "Employer domains",
        description=(
            "One company per line: its email domain, then its name, e.g. "
            '"microsoft.com Microsoft". Subdomains count too. Fixed once published.'
        ),
        validators=[Optional(), Length(max=5_000), _no_control_chars],
    )
    allow_supporters = BooleanField(
        "Anyone else may sign as a supporter (counted and shown apart from employees)",
        default=True,
    )
    reveal_threshold = IntegerField(
        'Colleagues needed before "named once enough colleagues are" signers are shown',
        default=10,
        validators=[InputRequired(), NumberRange(min=2, max=1_000_000)],
    )
    preview = SubmitField("Preview")
    submit = SubmitField("Save draft")

    def validate_employers(self, field: Any) -> None:
        """Each line must be a domain and a company name."""
        try:
            parse_employers(field.data or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class SignForm(FlaskForm):
    """The public sign form."""

    name = StringField(
        "Your name",
        filters=[_strip],
        description="Stored and shown only if you choose to be named.",
        validators=[Optional(), Length(max=100), _no_control_chars],
    )
    email = _email_field("Email address to verify", disposable_ok=False)
    job_title = StringField(
        "Job title (optional)",
        filters=[_strip],
        validators=[Optional(), Length(max=100), _no_control_chars],
    )
    team = StringField(
        "Team (optional)",
        filters=[_strip],
        validators=[Optional(), Length(max=100), _no_control_chars],
    )
    affiliation = RadioField(
        "You are",
        choices=[
            SelectChoice(Affiliation.CURRENT.value, "A current employee"),
            SelectChoice(Affiliation.FORMER.value, "A former employee"),
            SelectChoice(Affiliation.CONTRACTOR.value, "A contractor"),
        ],
        default=Affiliation.CURRENT.value,
        validators=[InputRequired()],
    )
    display = RadioField(
        "How you appear",
        choices=[
            SelectChoice(Display.COUNTED.value, "Counted only: nothing about me is shown anywhere"),
            SelectChoice(
                Display.ANONYMOUS.value,
                'Verified, anonymous: shown only as "Verified employee at …"',
            ),
            SelectChoice(
                Display.THRESHOLD.value,
                "Named once enough colleagues are: anonymous until then",
            ),
            SelectChoice(Display.NAMED.value, "Named: my name, job title and team are public"),
        ],
        default=Display.COUNTED.value,
        validators=[InputRequired()],
    )
    wants_updates = BooleanField("Send me updates about this letter at a personal address")
    updates_email = _email_field("Personal address for updates", required=False)
    #: honeypot: hidden from people by CSS, left empty; bots fill it
    website = StringField("Leave this field empty", validators=[Optional(), Length(max=200)])
    started = HiddenField(default=_form_started, validators=[FilledByAPerson()])
    submit = SubmitField("Sign")

    def validate(self, extra_validators: Any = None) -> bool:
        """Check the fields; a name is needed only for choices that show one, and a personal
        address only when updates are wanted."""
        valid = super().validate(extra_validators)
        if (
            self.display.data in {Display.NAMED.value, Display.THRESHOLD.value}
            and not self.name.data
        ):
            self.name.errors = [
                *self.name.errors,
                "Give the name to show, or choose another option.",
            ]
            valid = False
        if self.wants_updates.data and not self.updates_email.data:
            self.updates_email.errors = [
                *self.updates_email.errors,
                "Give a personal address, or untick updates.",
            ]
            return False
        return valid


class CodeForm(FlaskForm):
    """Type the emailed code instead of clicking the link."""

    handle = HiddenField(validators=[DataRequired(), Length(max=64)])
    code = StringField(
        "Code from the email",
        filters=[_strip],
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"},
    )
    submit = SubmitField("Confirm my signature")


class ResendForm(FlaskForm):
    """Ask for a fresh confirmation email for the pending signature behind a code form."""

    handle = HiddenField(validators=[DataRequired(), Length(max=64)])
    submit = SubmitField("Send me a fresh email")


class WithdrawCodeForm(FlaskForm):
    """Withdraw a signature with the code shown when it was confirmed."""

    code = StringField(
        "Withdrawal code",
        filters=[_strip],
        validators=[DataRequired(), Length(max=64)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    submit = SubmitField("Withdraw my signature")


class ReportForm(FlaskForm):
    """Tell the organizer and the site admins that something is wrong."""

    kind = RadioField(
        "What is wrong?",
        choices=[
            SelectChoice(
                ReportKind.NOT_ME.value, "My name is on this letter, but I did not sign it"
            ),
            SelectChoice(ReportKind.ABUSIVE.value, "This letter is abusive or breaks the law"),
        ],
        validators=[InputRequired()],
    )
    message = TextAreaField(
        "Details",
        description="Which name, or what is abusive. Do not include your work address.",
        filters=[_strip],
        validators=[DataRequired(), Length(max=2000), _no_control_chars],
    )
    submit = SubmitField("Send the report")
