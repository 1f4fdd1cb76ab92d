"""Organizer accounts: register, confirm the address, log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from petitions import login_manager
from petitions.accounts import service as accounts
from petitions.accounts.forms import (
    ChangeEmailForm,
    ChangePasswordForm,
    EmptyForm,
    LoginForm,
    RegisterForm,
    ResendAccountForm,
    ResetPasswordForm,
    ResetRequestForm,
)
from petitions.db import get_session, utcnow
from petitions.models import User
from petitions.security import LOGIN_LIMIT, REGISTER_LIMIT, RESET_LIMIT, limiter
from petitions.tokens import TokenExpired, TokenInvalid, TokenUsed

bp = Blueprint("auth", __name__)


@bp.after_request
def no_store(response):  # type: ignore[no-untyped-def]
    """Account pages and links carrying tokens are never cached, and their URLs never leave the
    site through Referer (within it, Flask-WTF's HTTPS check needs the Referer)."""
    response.headers["Cache-Control"] = "no-store"
    if request.endpoint in {"auth.confirm_page", "auth.reset_page", "auth.email_page"}:
        response.headers["Referrer-Policy"] = "same-origin"
    return response


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The organizer for a session id of the form "<id>:<session_version>"."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    if user is None or user.session_version != int(version) or not user.is_confirmed:
        return None
    return user


def safe_next(target: str | None) -> str | None:
    """A `next` target only if it is a path on this site (no scheme, no //host, no backslash)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.get("/register")
def register_form():  # type: ignore[no-untyped-def]
    """The sign-up page."""
    return render_template("auth/register.html", form=RegisterForm())


@bp.post("/register")
@limiter.limit(REGISTER_LIMIT)
def register():  # type: ignore[no-untyped-def]
    """Create an account (or quietly note the existing one) and mail a confirmation link."""
    form = RegisterForm()
    if not form.validate():
        return render_template("auth/register.html", form=form), 400
    session = get_session()
    accounts.register(
        session,
        email=form.email.data,
        display_name=form.display_name.data,
        password=form.password.data,
        now=utcnow(),
    )
    session.commit()
    return render_template("auth/check_email.html", email=form.email.data)


@bp.get("/account/confirm/<token>")
def confirm_page(token: str):  # type: ignore[no-untyped-def]
    """Landing page of the emailed link; only its button confirms."""
    return render_template("auth/confirm.html", form=EmptyForm(), token=token)


@bp.post("/account/confirm/<token>")
def confirm(token: str):  # type: ignore[no-untyped-def]
    """Use the confirmation link: the account can log in."""
    form = EmptyForm()
    if not form.validate():
        return render_template("auth/confirm.html", form=form, token=token), 400
    session = get_session()
    try:
        accounts.confirm_account(session, token, utcnow())
    except TokenUsed:
        flash("Your address is already confirmed. Please log in.", "info")
        return redirect(url_for("auth.login"))
    except (TokenInvalid, TokenExpired) as exc:
        return render_template(
            "auth/link_problem.html", message=str(exc), form=ResendAccountForm()
        ), 400
    session.commit()
    flash("Your address is confirmed. Welcome! Please log in.", "success")
    return redirect(url_for("auth.login"))


@bp.post("/account/resend")
@limiter.limit(RESET_LIMIT)
def resend():  # type: ignore[no-untyped-def]
    """Mail a fresh confirmation link; the answer is the same whether or not the account exists."""
    form = ResendAccountForm()
    if not form.validate():
        return render_template("auth/link_problem.html", message=None, form=form), 400
    session = get_session()
    accounts.resend_confirmation(session, form.email.data, utcnow())
    session.commit()
    return render_template("auth/check_email.html", email=form.email.data)


@bp.get("/login")
def login_form():  # type: ignore[no-untyped-def]
    """The log-in page."""
    if current_user.is_authenticated:
        return redirect(url_for("organizer.dashboard"))
    return render_template("auth/login.html", form=LoginForm())


@bp.post("/login")
@limiter.limit(LOGIN_LIMIT)
def login():  # type: ignore[no-untyped-def]
    """Check the credentials and start a session."""
    form = LoginForm()
    if not form.validate():
        return render_template("auth/login.html", form=form), 400
    session = get_session()
    user = accounts.authenticate(session, form.email.data, form.password.data)
    if user is None:
        form.password.errors.append("That email and password do not match an account.")
        return render_template("auth/login.html", form=form), 400
    if not user.is_confirmed:
        return render_template(
            "auth/link_problem.html",
            message="Please confirm your address first: follow the link we emailed you.",
            form=ResendAccountForm(email=user.email),
        ), 403
    session.commit()
    login_user(user, remember=form.remember.data)
    return redirect(safe_next(request.args.get("next")) or url_for("organizer.dashboard"))


@bp.post("/logout")
@login_required
def logout():  # type: ignore[no-untyped-def]
    """End the session (a POST, so no link or image can log anyone out)."""
    if not EmptyForm().validate():
        return redirect(url_for("organizer.dashboard"))
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("public.index"))


@bp.get("/account/reset")
def reset_request_form():  # type: ignore[no-untyped-def]
    """Ask for a password-reset link."""
    return render_template("auth/reset_request.html", form=ResetRequestForm())


@bp.post("/account/reset")
@limiter.limit(RESET_LIMIT)
def reset_request():  # type: ignore[no-untyped-def]
    """Mail a reset link if there is an account; the answer is the same either way."""
    form = ResetRequestForm()
    if not form.validate():
        return render_template("auth/reset_request.html", form=form), 400
    session = get_session()
    accounts.request_password_reset(session, form.email.data, utcnow())
    session.commit()
    return render_template("auth/check_email.html", email=form.email.data)


@bp.get("/account/reset/<token>")
def reset_page(token: str):  # type: ignore[no-untyped-def]
    """The choose-a-new-password page behind a reset link."""
    try:
        accounts.check_reset_link(get_session(), token, utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return _reset_problem(exc)
    return render_template("auth/reset.html", form=ResetPasswordForm(), token=token)


@bp.post("/account/reset/<token>")
@limiter.limit(RESET_LIMIT)
def reset(token: str):  # type: ignore[no-untyped-def]
    """Set the new password; every session of the account ends."""
    form = ResetPasswordForm()
    if not form.validate():
        return render_template("auth/reset.html", form=form, token=token), 400
    session = get_session()
    try:
        accounts.reset_password(session, token, form.password.data, utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return _reset_problem(exc)
    session.commit()
    logout_user()
    flash("Your password is changed. Please log in with it.", "success")
    return redirect(url_for("auth.login"))


def _reset_problem(exc: Exception):  # type: ignore[no-untyped-def]
    message = "This reset link was already used." if isinstance(exc, TokenUsed) else str(exc)
    return render_template("auth/reset_request.html", form=ResetRequestForm(), problem=message), 400


@bp.get("/account")
@login_required
def settings():  # type: ignore[no-untyped-def]
    """Account settings: password, login address, sessions."""
    return _settings_page()


def _settings_page(status: int = 200, **forms: object):  # type: ignore[no-untyped-def]
    context = {
        "password_form": ChangePasswordForm(),
        "email_form": ChangeEmailForm(),
        "logout_form": EmptyForm(),
        **forms,
    }
    return render_template("auth/settings.html", **context), status


@bp.post("/account/password")
@login_required
@limiter.limit(LOGIN_LIMIT)
def change_password():  # type: ignore[no-untyped-def]
    """Change the password (the current one is needed); other sessions end."""
    form = ChangePasswordForm()
    if not form.validate():
        return _settings_page(400, password_form=form)
    session = get_session()
    try:
        accounts.change_password(
            session, current_user, form.current_password.data, form.password.data
        )
    except accounts.WrongPassword as exc:
        form.current_password.errors.append(str(exc))
        return _settings_page(400, password_form=form)
    session.commit()
    login_user(current_user._get_current_object())  # this session goes on under the new version
    flash("Password changed. Every other session has been logged out.", "success")
    return redirect(url_for("auth.settings"))


@bp.post("/account/email")
@login_required
@limiter.limit(LOGIN_LIMIT)
def change_email():  # type: ignore[no-untyped-def]
    """Start changing the login address: a link goes to the new one."""
    form = ChangeEmailForm()
    if not form.validate():
        return _settings_page(400, email_form=form)
    session = get_session()
    try:
        accounts.request_email_change(
            session, current_user, form.current_password.data, form.new_email.data, utcnow()
        )
    except accounts.WrongPassword as exc:
        form.current_password.errors.append(str(exc))
        return _settings_page(400, email_form=form)
    session.commit()
    flash(
        f"We sent a link to {form.new_email.data}. Your address changes when you open it.", "info"
    )
    return redirect(url_for("auth.settings"))


@bp.get("/account/email/<token>")
def email_page(token: str):  # type: ignore[no-untyped-def]
    """Landing page of the new-address link; only its button acts."""
    return render_template(
        "auth/confirm.html", form=EmptyForm(), action=url_for("auth.email_confirm", token=token)
    )


@bp.post("/account/email/<token>")
def email_confirm(token: str):  # type: ignore[no-untyped-def]
    """Make the new address the login address; every session ends."""
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        accounts.confirm_email_change(session, token, utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as exc:
        return render_template(
            "auth/link_problem.html", message=str(exc), form=ResendAccountForm()
        ), 400
    session.commit()
    logout_user()
    flash("Your login address is changed. Please log in with it.", "success")
    return redirect(url_for("auth.login"))


@bp.post("/account/logout-everywhere")
@login_required
def logout_everywhere():  # type: ignore[no-untyped-def]
    """End every session and remember-me cookie of this account, this one included."""
    if not EmptyForm().validate():
        abort(400)
    current_user.end_all_sessions()
    get_session().commit()
    logout_user()
    flash("You are logged out everywhere.", "info")
    return redirect(url_for("auth.login"))
