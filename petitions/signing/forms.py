"""Signer-facing forms: sign, confirm by code, resend, withdraw, report."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    RadioField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
)

from petitions.fields import (
    FilledByAPerson,
    email_field,
    form_started,
    no_control_chars,
    strip_text,
)
from petitions.models import Affiliation, Display, Petition, ReportKind


class SignForm(FlaskForm):
    """The public sign form."""

    name = StringField(
        "Your name",
        filters=[strip_text],
        description="Stored and shown only if you choose to be named.",
        validators=[Optional(), Length(max=100), no_control_chars],
    )
    email = email_field("Email address to verify", disposable_ok=False)
    job_title = StringField(
        "Job title (optional)",
        filters=[strip_text],
        validators=[Optional(), Length(max=100), no_control_chars],
    )
    team = StringField(
        "Team (optional)",
        filters=[strip_text],
        validators=[Optional(), Length(max=100), no_control_chars],
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
    updates_email = email_field("Personal address for updates", required=False)
    #: honeypot: hidden from people by CSS, left empty; bots fill it
    website = StringField("Leave this field empty", validators=[Optional(), Length(max=200)])
    started = HiddenField(default=form_started, validators=[FilledByAPerson()])
    submit = SubmitField("Sign")

    def __init__(self, *args: Any, letter: Petition | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the letter signed, whose employer domains may not receive its updates
        self.letter = letter

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
        address = self.updates_email.data or ""
        if (
            self.wants_updates.data
            and self.letter is not None
            and self.letter.company_for(address.rpartition("@")[2].lower()) is not None
        ):
            self.updates_email.errors = [
                *self.updates_email.errors,
                "That is a work address of a company this letter names. Updates go only to a"
                " personal address your employer cannot read.",
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
        filters=[strip_text],
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
        filters=[strip_text],
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
        filters=[strip_text],
        validators=[DataRequired(), Length(max=2000), no_control_chars],
    )
    submit = SubmitField("Send the report")
