"""Flask-WTF forms. Every state change goes through one of these, so every POST checks CSRF."""

from petitions.forms.accounts import (
    ChangeEmailForm,
    ChangePasswordForm,
    EmptyForm,
    LoginForm,
    RegisterForm,
    ResendAccountForm,
    ResetPasswordForm,
    ResetRequestForm,
)
from petitions.forms.fields import format_employers, parse_employers
from petitions.forms.letters import LetterForm
from petitions.forms.signing import (
    CodeForm,
    ReportForm,
    ResendForm,
    SignForm,
    WithdrawCodeForm,
)

__all__ = [
    "ChangeEmailForm",
    "ChangePasswordForm",
    "CodeForm",
    "EmptyForm",
    "LetterForm",
    "LoginForm",
    "RegisterForm",
    "ReportForm",
    "ResendAccountForm",
    "ResendForm",
    "ResetPasswordForm",
    "ResetRequestForm",
    "SignForm",
    "WithdrawCodeForm",
    "format_employers",
    "parse_employers",
]
