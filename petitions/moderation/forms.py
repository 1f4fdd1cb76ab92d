"""Site admins' forms: hide a letter for a reason from the fixed list, answer an appeal."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import RadioField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from petitions.fields import no_control_chars
from petitions.models.review import HIDE_REASON_LABELS


class HideForm(FlaskForm):
    """Hide a letter; the reason is emailed to its committee."""

    reason = RadioField(
        "Why is it hidden?",
        choices=[(str(reason), label) for reason, label in HIDE_REASON_LABELS.items()],
        validators=[InputRequired("Choose a reason.")],
    )
    submit = SubmitField("Hide the letter")


class AnswerForm(FlaskForm):
    """An admin's recorded answer to a committee's appeal."""

    answer = TextAreaField(
        "Your answer to the committee",
        validators=[DataRequired(), Length(max=5_000), no_control_chars],
    )
    outcome = RadioField(
        "Decision",
        choices=[("uphold", "Keep the letter hidden"), ("reinstate", "Show the letter again")],
        validators=[InputRequired("Choose a decision.")],
    )
    submit = SubmitField("Record the answer")
