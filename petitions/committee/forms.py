"""The committee's forms: invite, change a role, appear on the letter, the two-person rule."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectField, SubmitField

from petitions.fields import email_field
from petitions.models import Role

ROLE_CHOICES = [
    (str(Role.ORGANIZER), "Organizer: edits drafts, publishes, closes, writes updates"),
    (str(Role.VIEWER), "Viewer: sees the organizer pages, changes nothing"),
    (str(Role.OWNER), "Owner: everything, including the committee"),
]


class InviteForm(FlaskForm):
    """Invite an address to the committee."""

    email = email_field("Their email address")
    role = RadioField("Role", choices=ROLE_CHOICES, default=str(Role.ORGANIZER))
    submit = SubmitField("Send invitation")


class RoleForm(FlaskForm):
    """Give a member another role (one per member on a page, told apart by `prefix`)."""

    role = SelectField("Role", choices=[(value, value.capitalize()) for value, _ in ROLE_CHOICES])
    submit = SubmitField("Change role")


class ShownForm(FlaskForm):
    """A member's choice to appear on the public letter."""

    shown = BooleanField("Show my display name on the public letter as an organizer")
    submit = SubmitField("Save")


class RuleForm(FlaskForm):
    """Turn the two-person rule on or off."""

    enabled = BooleanField(
        "Two-person rule: publishing, closing, amending, recording the outcome and sending an"
        " update wait for a second member's approval"
    )
    submit = SubmitField("Save")
