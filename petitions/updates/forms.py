"""Forms for updates: subscribing with a personal address, and writing an update."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from petitions.fields import email_field, no_control_chars, strip_text
from petitions.updates.service import BODY_MAX, SUBJECT_MAX


class SubscribeForm(FlaskForm):
    """A personal address for a letter's updates; it confirms before anything else is sent."""

    email = email_field("Your personal address")
    submit = SubmitField("Send me a confirmation email")


class UpdateForm(FlaskForm):
    """An update's subject and Markdown body; preview first, then send."""

    subject = StringField(
        "Subject",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=SUBJECT_MAX), no_control_chars],
    )
    body = TextAreaField(
        "Update (Markdown)",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=BODY_MAX)],
        render_kw={"rows": 12},
    )
    preview = SubmitField("Preview")
    send = SubmitField("Send to subscribers")
