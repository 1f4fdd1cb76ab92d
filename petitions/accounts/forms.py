"""Organizer account forms: register, log in, reset, change password or address."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    StringField,
    SubmitField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
)

from petitions.fields import (
    StrongPassword,
    email_field,
    new_password_fields,
    no_control_chars,
    strip_text,
)


class EmptyForm(FlaskForm):
    """A one-button form: its only job is the CSRF token."""

    submit = SubmitField("Submit")


class RegisterForm(FlaskForm):
    """Organizer sign-up."""

    display_name = StringField(
        "Display name",
        filters=[strip_text],
        validators=[DataRequired(), Length(max=80), no_control_chars],
    )
    email = email_field("Email", disposable_ok=False)
    password = PasswordField("Password", validators=[DataRequired(), StrongPassword()])
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")]
    )
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    """Organizer log-in."""

    email = email_field("Email")
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me logged in on this device")
    submit = SubmitField("Log in")


class ResendAccountForm(FlaskForm):
    """Ask for a fresh account-confirmation link."""

    email = email_field("Email")
    submit = SubmitField("Send a new link")


class ResetRequestForm(FlaskForm):
    """Ask for a password-reset link."""

    email = email_field("Email")
    submit = SubmitField("Send me a reset link")


class ResetPasswordForm(FlaskForm):
    """Choose a new password through a reset link."""

    password, confirm = new_password_fields()
    submit = SubmitField("Set the new password")


class ChangePasswordForm(FlaskForm):
    """Change the password; the current one is needed."""

    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)]
    )
    password, confirm = new_password_fields()
    submit = SubmitField("Change password")


class ChangeEmailForm(FlaskForm):
    """Change the login address; the current password is needed, and the new address proven."""

    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)]
    )
    new_email = email_field("New email address")
    submit = SubmitField("Send a confirmation link to the new address")
