"""Organizer accounts: register, confirm the address, log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from petitions import login_manager
from petitions.db import get_session, utcnow
from petitions.forms import EmptyForm, LoginForm, RegisterForm, ResendAccountForm
from petitions.models import User
from petitions.services import accounts
from petitions.services.tokens import TokenExpired, TokenInvalid, TokenUsed

bp = Blueprint("auth", __name__)


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
def resend():  # type: ignore[no-untyped-def]
    """Mail a fresh confirmation link; the answer is the same whether or not the account exists."""
    form = ResendAccountForm()
    if not form.validate():
        return render_template("auth/link_problem.html", message=None, form=form), 400
    session = get_session()
    user = accounts.find_by_email(session, form.email.data)
    if user is not None and not user.is_confirmed:
        accounts.send_confirmation(session, user, utcnow())
        session.commit()
    return render_template("auth/check_email.html", email=form.email.data)


@bp.get("/login")
def login_form():  # type: ignore[no-untyped-def]
    """The log-in page."""
    if current_user.is_authenticated:
        return redirect(url_for("organizer.dashboard"))
    return render_template("auth/login.html", form=LoginForm())


@bp.post("/login")
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
