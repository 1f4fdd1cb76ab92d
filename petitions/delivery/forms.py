"""Forms of delivery: targets, a delivery, its deadline, responses, the outcome, corrections,
and the recipient's response."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, Length, Optional, Regexp

from petitions.fields import email_field, no_control_chars, strip_text
from petitions.models import Channel, Outcome


def _text(label: str, max_length: int, required: bool = False, **kw: object) -> StringField:
    checks = [DataRequired()] if required else [Optional()]
    return StringField(
        label,
        filters=[strip_text],
        validators=[*checks, Length(max=max_length), no_control_chars],
        **kw,
    )


def _link() -> URLField:
    return URLField(
        "Link (optional)",
        filters=[strip_text],
        description="Where the response was published, e.g. a blog post.",
        validators=[
            Optional(),
            Length(max=500),
            Regexp(r"^https?://", message="Give a web address starting with https://."),
            URL(require_tld=False),
            no_control_chars,
        ],
    )


class TargetForm(FlaskForm):
    """Name someone the letter is for."""

    name = _text("Name", 120, required=True, description='A person, a role or a body: "the board".')
    role = _text("Role (optional)", 120)
    organisation = _text("Organisation (optional)", 120)
    email = email_field("Address to send the delivery to (optional, never shown)", required=False)
    submit = SubmitField("Add target")


class DeliveryForm(FlaskForm):
    """Record that the letter was handed over."""

    target = SelectField("Delivered to", coerce=int, validators=[DataRequired()])
    delivered_on = DateField("Date of delivery", validators=[DataRequired()])
    channel = RadioField(
        "How",
        choices=[SelectChoice(c.value, c.label.capitalize()) for c in Channel],
        default=Channel.EMAIL.value,
        validators=[DataRequired()],
    )
    note = TextAreaField(
        "Note (optional, shown on the public timeline)",
        filters=[strip_text],
        validators=[Optional(), Length(max=1000), no_control_chars],
    )
    response_requested_by = DateField("Response requested by (optional)", validators=[Optional()])
    with_link = BooleanField("Make a private link for the recipient", default=True)
    send_email = BooleanField("Email the link to the target's address now")
    submit = SubmitField("Record delivery and freeze the pack")


class DeadlineForm(FlaskForm):
    """Set or clear "response requested by"."""

    response_requested_by = DateField("Response requested by", validators=[Optional()])
    submit = SubmitField("Save date")


class ResponseForm(FlaskForm):
    """A response as the organizers record it."""

    delivery = SelectField("In answer to", coerce=int, validators=[DataRequired()])
    responder = _text("Who answered", 200, required=True)
    responded_on = DateField("Date of the response", validators=[DataRequired()])
    text = TextAreaField(
        "Response, or a summary of it",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=20_000), no_control_chars],
    )
    link = _link()
    submit = SubmitField("Record response")


class RecipientResponseForm(FlaskForm):
    """The recipient's own response, posted through the private link."""

    responder = _text("Your name and role (optional)", 200)
    text = TextAreaField(
        "Your response",
        filters=[strip_text],
        description="Published beside the letter, marked as posted by the recipient.",
        validators=[DataRequired(), Length(max=20_000), no_control_chars],
    )
    link = _link()
    submit = SubmitField("Publish response")


class OutcomeForm(FlaskForm):
    """Where the campaign stands."""

    outcome = RadioField(
        "Outcome",
        choices=[SelectChoice(o.value, o.label) for o in Outcome],
        validators=[DataRequired()],
    )
    note = _text("Short public note (optional)", 500)
    submit = SubmitField("Record outcome")


class CorrectionForm(FlaskForm):
    """A correction of a timeline entry; the entry itself stays."""

    entry = SelectField("Entry to correct", coerce=int, validators=[DataRequired()])
    text = TextAreaField(
        "Correction",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=2000), no_control_chars],
    )
    submit = SubmitField("Publish correction")
