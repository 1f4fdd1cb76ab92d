"""The committee page (members, invitations, the two-person rule, each member's choice to
appear on the letter), its log, and the invitation link an invitee opens and accepts."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from petitions.accounts.forms import EmptyForm
from petitions.committee import actions
from petitions.committee import service as committee
from petitions.committee.access import member_or_abort
from petitions.committee.forms import InviteForm, RoleForm, RuleForm, ShownForm
from petitions.db import get_session, utcnow
from petitions.models import Petition, Role
from petitions.models.committee import InvitationProblem
from petitions.models.errors import DomainError
from petitions.security import limiter

bp = Blueprint("committee", __name__)

#: invitations send email to any address an owner types: as many as a sign-up may
INVITE_LIMIT = "10 per minute; 50 per hour"


@bp.after_request
def no_store(response):  # type: ignore[no-untyped-def]
    """Committee pages and invitations are private."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(petition_id: int):  # type: ignore[no-untyped-def]
    return redirect(url_for("committee.members", petition_id=petition_id))


def _role_form(member_id: int) -> RoleForm:
    return RoleForm(prefix=f"member-{member_id}")


@bp.get("/letters/<int:petition_id>/committee")
@login_required
def members(petition_id: int, invite_form: InviteForm | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    """The committee: members and roles, pending invitations, settings."""
    petition, member = member_or_abort(petition_id)
    session = get_session()
    people = committee.members(session, petition.id)
    role_forms = {}
    for other, _ in people:
        form = _role_form(other.id)
        form.role.data = str(other.role)
        role_forms[other.id] = form
    html = render_template(
        "committee/members.html",
        petition=petition,
        member=member,
        people=people,
        invitations=committee.invitations(session, petition.id) if member.may(Role.OWNER) else [],
        now=utcnow(),
        form=EmptyForm(),
        invite_form=invite_form or InviteForm(),
        role_forms=role_forms,
        shown_form=ShownForm(shown=member.shown_on_letter),
        rule_form=RuleForm(enabled=petition.two_person_rule),
    )
    return html, status


@bp.get("/letters/<int:petition_id>/committee/log")
@login_required
def log(petition_id: int):  # type: ignore[no-untyped-def]
    """The committee's append-only log, newest first."""
    petition, member = member_or_abort(petition_id)
    entries = committee.log_entries(get_session(), petition.id)
    return render_template("committee/log.html", petition=petition, member=member, entries=entries)


def _change(petition_id: int, needs: Role, change, done: str, form=None):  # type: ignore[no-untyped-def]
    """Check the member and the form, make one change, commit, and go back to the page."""
    petition, member = member_or_abort(petition_id, needs)
    if not (form or EmptyForm()).validate():
        abort(400)
    session = get_session()
    try:
        message = change(session, petition, member) or done
    except committee.NotMember:
        abort(404)
    except DomainError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _page(petition.id)
    session.commit()
    flash(message, "success")
    return _page(petition.id)


@bp.post("/letters/<int:petition_id>/committee/invite")
@login_required
@limiter.limit(INVITE_LIMIT)
def invite(petition_id: int):  # type: ignore[no-untyped-def]
    """Email an invitation; the page says the same whether or not the address has an account."""
    petition, _ = member_or_abort(petition_id, Role.OWNER)
    form = InviteForm()
    if not form.validate():
        return members(petition_id, invite_form=form, status=400)
    session = get_session()
    try:
        committee.invite(
            session, petition, current_user, form.email.data, Role(form.role.data), utcnow()
        )
    except DomainError as exc:
        form.email.errors.append(str(exc))
        return members(petition_id, invite_form=form, status=409)
    session.commit()
    flash(f"Invitation sent to {form.email.data}. The link works once, for 7 days.", "success")
    return _page(petition.id)


@bp.post("/letters/<int:petition_id>/committee/invitations/<int:invitation_id>/resend")
@login_required
@limiter.limit(INVITE_LIMIT)
def resend(petition_id: int, invitation_id: int):  # type: ignore[no-untyped-def]
    """Send an invitation again; the earlier link stops working."""
    return _change(
        petition_id,
        Role.OWNER,
        lambda s, p, m: committee.resend(s, p, current_user, invitation_id, utcnow()) and None,
        "Sent again with a new link, valid for 7 days. The earlier link no longer works.",
    )


@bp.post("/letters/<int:petition_id>/committee/invitations/<int:invitation_id>/revoke")
@login_required
def revoke(petition_id: int, invitation_id: int):  # type: ignore[no-untyped-def]
    """Withdraw an invitation."""
    return _change(
        petition_id,
        Role.OWNER,
        lambda s, p, m: committee.revoke(s, p, current_user, invitation_id, utcnow()) and None,
        "Invitation withdrawn. Its link no longer works.",
    )


@bp.post("/letters/<int:petition_id>/committee/members/<int:member_id>/remove")
@login_required
def remove(petition_id: int, member_id: int):  # type: ignore[no-untyped-def]
    """An owner removes a member (themselves included, unless they are the last owner)."""
    _, member = member_or_abort(petition_id, Role.OWNER)
    if member.id == member_id:
        return leave(petition_id)
    return _change(
        petition_id,
        Role.OWNER,
        lambda s, p, m: committee.remove(s, p, current_user, member_id),
        "Removed from the committee.",
    )


@bp.post("/letters/<int:petition_id>/committee/members/<int:member_id>/role")
@login_required
def change_role(petition_id: int, member_id: int):  # type: ignore[no-untyped-def]
    """An owner changes a member's role."""
    form = _role_form(member_id)
    return _change(
        petition_id,
        Role.OWNER,
        lambda s, p, m: committee.change_role(s, p, current_user, member_id, Role(form.role.data)),
        "Role changed.",
        form,
    )


@bp.post("/letters/<int:petition_id>/committee/leave")
@login_required
def leave(petition_id: int):  # type: ignore[no-untyped-def]
    """Leave the committee; the last owner may not."""
    petition, member = member_or_abort(petition_id)
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        committee.leave(session, petition, member, current_user)
    except DomainError as exc:
        flash(str(exc), "error")
        return _page(petition.id)
    session.commit()
    flash(f"You left the committee of “{petition.title}”.", "success")
    return redirect(url_for("organizer.dashboard"))


@bp.post("/letters/<int:petition_id>/committee/shown")
@login_required
def shown(petition_id: int):  # type: ignore[no-untyped-def]
    """A member chooses whether their name appears on the public letter."""
    form = ShownForm()
    return _change(
        petition_id,
        Role.VIEWER,
        lambda s, p, m: committee.set_shown(s, p, m, current_user, bool(form.shown.data)),
        "Saved your choice.",
        form,
    )


@bp.post("/letters/<int:petition_id>/committee/rule")
@login_required
def rule(petition_id: int):  # type: ignore[no-untyped-def]
    """An owner turns the two-person rule on, or proposes turning it off."""
    form = RuleForm()

    def change(session, petition: Petition, _member):  # type: ignore[no-untyped-def]
        done = actions.set_rule(session, petition, current_user, bool(form.enabled.data), utcnow())
        if done:
            return "The two-person rule is now " + ("on." if petition.two_person_rule else "off.")
        return "Turning the rule off waits for another owner's approval on the letter's page."

    return _change(petition_id, Role.OWNER, change, "", form)


@bp.get("/account/invitations/<token>")
def invitation(token: str):  # type: ignore[no-untyped-def]
    """The invitation link: log in or register with the invited address, then accept.

    The page is the same whether or not an account has the address.
    """
    session = get_session()
    try:
        found = committee.invitation_for_link(session, token)
        found.check(utcnow())
    except InvitationProblem as exc:
        return render_template("committee/invitation.html", problem=str(exc)), 410
    petition = None
    if current_user.is_authenticated and current_user.email == found.email:
        petition = session.get(Petition, found.petition_id)
    return render_template(
        "committee/invitation.html",
        invitation=found,
        petition=petition,
        form=EmptyForm(),
        here=request.path,
    )


@bp.post("/account/invitations/<token>")
@login_required
def accept(token: str):  # type: ignore[no-untyped-def]
    """Accept the invitation as the account with the invited address."""
    if not EmptyForm().validate():
        abort(400)
    session = get_session()
    try:
        found = committee.invitation_for_link(session, token)
        committee.accept(session, found, current_user, utcnow())
    except InvitationProblem as exc:
        session.rollback()
        return render_template("committee/invitation.html", problem=str(exc)), 409
    session.commit()
    flash("Welcome to the committee.", "success")
    return redirect(url_for("organizer.show", petition_id=found.petition_id))
