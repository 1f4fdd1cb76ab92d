"""The organizer's letter form."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from petitions.fields import no_control_chars, parse_employers, strip_text


class LetterForm(FlaskForm):
    """Draft or edit a letter."""

    title = StringField(
        "Title",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=200), no_control_chars],
    )
    addressed_to = StringField(
        "Addressed to",
        filters=[strip_text],
        description='For example "Satya Nadella, CEO, Microsoft".',
        validators=[DataRequired(), Length(max=200), no_control_chars],
    )
    body_markdown = TextAreaField(
        "Letter",
        description="Markdown: *emphasis*, **strong**, lists, links and headings.",
        validators=[DataRequired(), Length(max=50_000), no_control_chars],
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
        validators=[Optional(), Length(max=5_000), no_control_chars],
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


class AppealForm(FlaskForm):
    """The committee's one appeal against an admin hiding its letter."""

    message = TextAreaField(
        "Your appeal",
        description="Say why the letter should be shown again. An appeal is heard once.",
        validators=[DataRequired(), Length(max=5_000), no_control_chars],
    )
    submit = SubmitField("Send appeal")
